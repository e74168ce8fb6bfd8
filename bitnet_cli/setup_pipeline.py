"""`bitnet setup`: download → convert → tune/warm the kernels, each step logged and skippable.

Mirrors bitnet.cpp's setup_env.py (bitnet-cpp.md §2.1) without a compiler: the model goes to
`<model-dir>/<repo name>/ggml-model-<quant>.gguf`, each step writes `<log-dir>/<step>.log`,
and a step whose result is already there is skipped, so re-running is cheap.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bitnet_cli.errors import BitnetError, UserError

StatusFn = Callable[[str], None]


def quant_choices() -> list[str]:
    """The quant types this build's kernels run: I2_S everywhere, TL1/TL2 where their kernels exist.

    bitnet.cpp offers TL1 only on ARM and TL2 only on x86 because each is compiled for one ISA;
    our TL kernels have an AVX2 and a portable variant, so any CPU runs all three.
    """
    import importlib.util

    return ["i2_s"] + [q for q in ("tl1", "tl2") if importlib.util.find_spec(f"bitnet_kernels.{q}") is not None]


@dataclass
class SetupPlan:
    """What `bitnet setup` was asked to do."""

    hf_repo: str | None = None
    model_dir: Path = Path("models")
    model: Path | None = None  # an existing GGUF: only tune/warm
    quant_type: str = "i2_s"
    quant_embd: str | None = None
    use_pretuned: bool = False
    log_dir: Path = Path("logs")
    revision: str | None = None
    threads: int | None = None
    source: Path | None = field(default=None, init=False)  # the checkpoint folder, once known

    @property
    def target_dir(self) -> Path:
        if self.hf_repo:
            return self.model_dir / self.hf_repo.split("/")[-1]
        return self.model_dir

    @property
    def output(self) -> Path:
        return self.model if self.model else self.target_dir / f"ggml-model-{self.quant_type}.gguf"


@contextmanager
def _step_log(log_dir: Path, step: str) -> Iterator[logging.Logger]:
    """A logger writing `<log_dir>/<step>.log` (fresh each run); the traceback goes there on failure."""
    log_dir.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger(f"bitnet.setup.{step}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = logging.FileHandler(log_dir / f"{step}.log", mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    try:
        yield logger
    except BaseException as e:
        logger.error("FAILED: %s\n%s", e, traceback.format_exc())
        raise
    finally:
        logger.removeHandler(handler)
        handler.close()


def _valid_gguf(path: Path) -> bool:
    if not path.is_file() or path.stat().st_size == 0:
        return False
    try:
        from bitnet_cli.modelfile import open_model_file

        open_model_file(path)
        return True
    except BitnetError:
        return False


def step_download(plan: SetupPlan, log: logging.Logger) -> str:
    from bitnet_cli import hub

    info = hub.lookup(plan.hf_repo or "")
    if info is None:
        log.info("%s is not in the registry; trying it anyway", plan.hf_repo)
    elif info.kind == "embedding":
        raise UserError(f"{info.repo_id} is {info.note}", "pick a text-generation repo (`bitnet download --list`)")
    folder = hub.download(plan.hf_repo or "", revision=plan.revision)
    log.info("snapshot: %s", folder)
    prebuilt = (info is not None and info.kind == "gguf") or (
        not (folder / "config.json").exists() and hub.find_gguf(folder) is not None)
    if prebuilt:
        gguf = hub.find_gguf(folder, plan.quant_type)
        if gguf is None:
            raise UserError(f"no .gguf file in {plan.hf_repo}", "check the repo or convert a checkpoint repo instead")
        plan.source = gguf
    else:
        plan.source = folder
    return str(folder)


def step_convert(plan: SetupPlan, log: logging.Logger) -> str:
    out = plan.output
    src = plan.source
    if src is None:
        raise UserError("nothing to convert", "pass -hr REPO, or -md DIR with a HF checkpoint, or -m MODEL.gguf")
    out.parent.mkdir(parents=True, exist_ok=True)
    if src.suffix == ".gguf":
        # A prebuilt file: place it under the model dir (hard link when possible, else a copy).
        tmp = out.with_name(out.name + ".tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(src.resolve(), tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, out)
        log.info("linked %s -> %s", src, out)
        return str(out)
    from bitnet_cli.convert import convert_checkpoint

    def progress(done: int, total: int, name: str) -> None:
        log.info("%-40s %6.1f%%", name, 100.0 * done / max(total, 1))

    t0 = time.perf_counter()
    log.info("convert %s -> %s (outtype %s, embedding %s)", src, out, plan.quant_type, plan.quant_embd or "default")
    convert_checkpoint(src, out, plan.quant_type, plan.quant_embd, progress)
    log.info("done in %.1f s", time.perf_counter() - t0)
    return str(out)


def step_tune(plan: SetupPlan, log: logging.Logger) -> str:
    """Tune (or load the shipped presets) and warm the kernels, so the first run starts hot."""
    from bitnet_cli import load
    from bitnet_kernels import tune as kt

    threads = plan.threads or os.cpu_count() or 1

    def progress(done: int, total: int, label: str) -> None:
        log.info("%s (%d/%d)", label, done, total)

    # Loading prepares every weight the model runs (stacked Q/K/V and gate/up included):
    # `tune()` without shapes tunes exactly those, the head for one token.
    model = load(plan.output, n_ctx=16, threads=threads)
    if plan.use_pretuned:
        log.info("shipped presets: %d entries", kt.load_tuned(use_pretuned=True))
        detail = "shipped presets"
    else:
        t0 = time.perf_counter()
        result = kt.tune(threads=threads, progress=progress)
        log.info("tuned in %.1f s: %s", time.perf_counter() - t0, result.get("entries"))
        detail = f"tuned for {threads} threads"
    t0 = time.perf_counter()
    log.info("warm-up: %d kernel specializations in %.1f s", kt.warmup(progress), time.perf_counter() - t0)
    # One short forward compiles whatever the model itself needs beyond the generic warm-up.
    t0 = time.perf_counter()
    bos = model.tokenizer.bos_id
    model.logits([bos if bos is not None else 0] * 2)
    log.info("model forward warm-up: %.1f s", time.perf_counter() - t0)
    _write_stamp(plan, detail)
    return detail


def _stamp_path(plan: SetupPlan) -> Path:
    return plan.log_dir / "tune.done.json"


def _stamp(plan: SetupPlan) -> dict[str, Any]:
    st = plan.output.stat()
    return {"model": str(plan.output.resolve()), "size": st.st_size, "mtime": int(st.st_mtime),
            "cpu": platform.processor() or platform.machine(), "pretuned": plan.use_pretuned}


def _write_stamp(plan: SetupPlan, detail: str) -> None:
    _stamp_path(plan).write_text(json.dumps({**_stamp(plan), "detail": detail}, indent=1))


def _tuned(plan: SetupPlan) -> bool:
    try:
        saved = json.loads(_stamp_path(plan).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return plan.output.is_file() and all(saved.get(k) == v for k, v in _stamp(plan).items())


def run_setup(plan: SetupPlan, status: StatusFn) -> Path:
    """Run the pipeline, skipping finished steps; returns the model file."""
    if plan.quant_type not in ("i2_s", "tl1", "tl2"):
        raise UserError(f"unknown quant type '{plan.quant_type}'", "choose i2_s, tl1 or tl2")
    steps: list[tuple[str, Callable[[SetupPlan, logging.Logger], str], Callable[[], bool], str]] = []
    if plan.model is None:
        if plan.hf_repo:
            # Nothing to fetch when the converted model is already in place.
            steps.append(("download", step_download, lambda: _valid_gguf(plan.output), plan.hf_repo))
        else:
            plan.source = plan.model_dir
            if not (plan.model_dir / "config.json").is_file() and not _valid_gguf(plan.output):
                raise UserError(f"no HF checkpoint (config.json) in {plan.model_dir}",
                                "pass -hr REPO to download one, or -m MODEL.gguf for a converted model")
        steps.append(("convert", step_convert, lambda: _valid_gguf(plan.output), f"→ {plan.output}"))
    elif not plan.model.is_file():
        raise UserError(f"no model file at {plan.model}", "pass -m path/to/model.gguf")
    steps.append(("tune", step_tune, lambda: _tuned(plan), "kernels for this CPU"))
    for i, (name, fn, done, what) in enumerate(steps, 1):
        head = f"[{i}/{len(steps)}] {name:<8} {what}"
        if done():
            status(f"{head} … already done, skipped")
            continue
        t0 = time.perf_counter()
        try:
            with _step_log(plan.log_dir, name) as log:
                detail = fn(plan, log)
        except BitnetError as e:
            e.hint = f"{e.hint + '; ' if e.hint else ''}details in {plan.log_dir / (name + '.log')}"
            raise
        except Exception as e:  # noqa: BLE001 - a failed step names its log
            raise UserError(f"{name} failed: {type(e).__name__}: {e}",
                            f"details in {plan.log_dir / (name + '.log')}") from e
        status(f"{head} … done in {time.perf_counter() - t0:.1f} s ({detail})")
    return plan.output
