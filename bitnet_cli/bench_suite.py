"""A whole `bitnet bench` run: which model files (given or dummy), bandwidth, peers, plot.

Dummy models are generated once and cached under `$XDG_CACHE_HOME/bitnet-cli/dummy/`; sizes that
would not fit this machine's memory or disk are skipped with the reason on stderr.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bitnet_cli.bench import (
    BenchResult,
    ModelInfo,
    ModelRunner,
    Progress,
    describe_model,
    format_size,
    make_tests,
    run_tests,
)
from bitnet_cli.errors import UserError

MEM_HEADROOM = 1 << 30  # KV cache, activations, Python: leave 1 GiB besides the weights


@dataclass
class BenchOptions:
    """Everything `bitnet bench` was asked for (flags already parsed into lists)."""

    models: list[Path] = field(default_factory=list)
    model_sizes: list[str] = field(default_factory=list)
    quant_types: list[str] = field(default_factory=lambda: ["i2_s"])
    n_prompt: list[int] = field(default_factory=lambda: [512])
    n_gen: list[int] = field(default_factory=lambda: [128])
    pg: list[tuple[int, int]] = field(default_factory=list)
    depths: list[int] = field(default_factory=lambda: [0])
    threads: list[int] = field(default_factory=lambda: [os.cpu_count() or 1])
    repetitions: int = 5
    n_batch: int = 512
    warmup: bool = True
    delay: float = 0.0
    verbose: bool = False
    per_rep: bool = False
    compare: str | None = None
    compare_types: list[str] = field(default_factory=lambda: ["tq2_0"])


def cache_dir() -> Path:
    """`$BITNET_CACHE_DIR`, else `$XDG_CACHE_HOME/bitnet-cli`, else ~/.cache/bitnet-cli."""
    from bitnet_kernels import user_cache_dir

    return user_cache_dir()


def mem_available() -> int:
    """Bytes of memory available now (MemAvailable on Linux; total physical memory elsewhere)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def fit_problem(nbytes: int, directory: Path, on_disk: bool) -> str | None:
    """Why a model file of `nbytes` cannot be benchmarked here, or None when it can."""
    avail = mem_available()
    if nbytes + MEM_HEADROOM > avail:
        return f"needs {format_size(nbytes)} of weights in memory, {format_size(avail)} available"
    if not on_disk:
        directory.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(directory).free
        if nbytes + MEM_HEADROOM > free:
            return f"needs {format_size(nbytes)} on disk, {format_size(free)} free in {directory}"
    return None


def dummy_path(size: str, qtype: str) -> Path:
    return cache_dir() / "dummy" / f"dummy-{size}-{qtype}.gguf"


def resolve_dummies(sizes: Sequence[str], qtypes: Sequence[str], progress: Progress) -> list[Path]:
    """Dummy model files for every size × quant type, generated when not cached; skips what won't fit."""
    from bitnet_cli import dummy

    for qtype in qtypes:
        if qtype not in dummy.OUTTYPES:
            raise UserError(f"unknown quant type '{qtype}'", f"choose from {', '.join(dummy.OUTTYPES)}")
    paths = []
    for size in sizes:
        dummy.get_preset(size)  # a UserError listing the sizes when unknown
        for qtype in qtypes:
            path = dummy_path(size, qtype)
            nbytes = path.stat().st_size if path.exists() else dummy.dummy_model_nbytes(size, qtype)
            problem = fit_problem(nbytes, path.parent, path.exists())
            if problem:
                progress(f"skipping {size} {qtype}: {problem}")
                continue
            if not path.exists():
                progress(f"generating the dummy {size} {qtype} model ({format_size(nbytes)}): {path}")
                path.parent.mkdir(parents=True, exist_ok=True)
                dummy.write_dummy_model(path, size, qtype, 0)
            paths.append(path)
    return paths


def run_suite(opts: BenchOptions, progress: Progress) -> list[BenchResult]:
    """Benchmark every model at every thread count; with a peer, both run each test back to back."""
    import bitnet_cli

    models = list(opts.models)
    if opts.model_sizes:
        models += resolve_dummies(opts.model_sizes, opts.quant_types, progress)
    if not models:
        raise UserError("no model to benchmark", "pass -m MODEL.gguf or --model-size 125M,2B-4T")
    tests = make_tests(opts.n_prompt, opts.n_gen, opts.pg, opts.depths)
    if not tests:
        raise UserError("no test to run", "give -p, -n or -pg a value above 0")
    if opts.compare:
        from bitnet_cli.bench_llamacpp import PEER_TYPES, require_llama_cpp

        bad = [q for q in opts.compare_types if q not in PEER_TYPES]
        if bad:
            raise UserError(f"unknown --compare-type '{bad[0]}'", f"choose from {', '.join(PEER_TYPES)}")
        require_llama_cpp()  # fail before minutes of work, not after
    bandwidth = measure_bandwidth(opts.threads, progress) if opts.verbose else None
    n_ctx = max(t.n_depth + t.n_tokens for t in tests)
    results: list[BenchResult] = []
    for path in models:
        progress(f"loading {path}")
        model = bitnet_cli.load(path, n_ctx=n_ctx, threads=opts.threads[0])
        runners = [ModelRunner(model, describe_model(model), opts.n_batch)]
        if opts.compare:
            runners += _peer_runners(path, runners[0].info, opts, n_ctx, progress)
        results += run_tests(runners, tests, opts.threads, repetitions=opts.repetitions, warmup=opts.warmup,
                             delay=opts.delay, bandwidth=bandwidth, progress=progress, per_rep=opts.per_rep)
        del model, runners  # release the weights before the next model
    if bandwidth is not None:
        # Measured again at the end: a busy neighbour during one measurement would inflate "% of BW".
        after = measure_bandwidth(opts.threads, progress)
        for r in results:
            r.machine_bandwidth = max(bandwidth[r.n_threads], after[r.n_threads])
    return results


def _peer_runners(path: Path, source: ModelInfo, opts: BenchOptions, n_ctx: int, progress: Progress) -> list:
    """llama.cpp on copies of `path` in each --compare-type (written once, cached)."""
    from bitnet_cli.bench_llamacpp import LlamaCppRunner, peer_path, write_peer_model

    runners = []
    for qtype in opts.compare_types:
        dst = peer_path(path, qtype, cache_dir() / "peer")
        # Both copies stay loaded while the tests alternate between them.
        need = path.stat().st_size + (dst.stat().st_size if dst.exists() else path.stat().st_size * (8 if qtype == "f16" else 1))
        problem = fit_problem(need, dst.parent, dst.exists())
        if problem:
            progress(f"skipping llama.cpp {qtype} for {path.name}: {problem}")
            continue
        if not dst.exists():
            progress(f"writing the {qtype.upper()} copy for llama.cpp: {dst}")
            write_peer_model(path, dst, qtype)
        progress(f"loading {dst} in llama.cpp")
        runners.append(LlamaCppRunner(dst, qtype, source, n_ctx, opts.threads[0], opts.n_batch))
    return runners


def measure_bandwidth(threads: Sequence[int], progress: Progress) -> dict[int, float]:
    from bitnet_cli import membw

    bw = membw.measure(list(threads))
    for t, b in bw.items():
        progress(f"DRAM read bandwidth, {t} thread(s): {b / 1e9:.1f} GB/s")
    return bw


def effective_threads(requested: Sequence[int], progress: Progress) -> list[int]:
    """Thread counts clamped to this machine's cores (what the kernels really run), in order, once each."""
    cores = os.cpu_count() or 1
    out: list[int] = []
    for t in requested or [cores]:
        if t < 1:
            raise UserError(f"invalid thread count {t}", "pass -t 1 or more")
        if t > cores:
            progress(f"-t {t}: this machine has {cores} cores; running {cores} threads")
            t = cores
        if t not in out:
            out.append(t)
    return out


def plot(results: Sequence[BenchResult], out: Path) -> None:
    """tokens/s against model size, one line per backend/type/threads/test (like bitnet.cpp's README)."""
    try:
        import matplotlib
    except ImportError:
        raise UserError("--plot needs matplotlib", "pip install 'bitnet-cli[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    series: dict[str, list[tuple[int, float, float]]] = {}
    ticks: dict[float, str] = {}
    for r in results:
        _arch, label, qdesc = (r.model.model_type.split(" ", 2) + ["", ""])[:3]
        key = f"{r.model.backend} {qdesc.split(' ')[0]}, {r.n_threads}t, {r.test.name}"
        series.setdefault(key, []).append((r.model.n_params, r.avg_ts, r.stddev_ts))
        ticks[r.model.n_params / 1e9] = label
    fig, ax = plt.subplots(figsize=(8, 5))
    for key, pts in series.items():
        pts.sort()
        y = [p[1] for p in pts]
        low = [min(p[2], 0.9 * p[1]) for p in pts]  # a log axis cannot draw a bar below zero
        ax.errorbar([p[0] / 1e9 for p in pts], y, yerr=[low, [p[2] for p in pts]], marker="o", capsize=3,
                    label=key, linestyle="-" if key.startswith("Numba") else "--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(list(ticks), list(ticks.values()))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("model size (parameters)")
    ax.set_ylabel("tokens/s")
    ax.set_title("bitnet bench")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    tmp = out.with_name(out.name + ".tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, out)
