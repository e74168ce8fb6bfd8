"""llama-bench for bitnet-cli: the test matrix, timed forward passes, results and their formats.

Method (llama-bench's): synthetic, deterministic token ids; an untimed warm-up per test (JIT
compiles and page faults excluded); a fresh KV cache per repetition; pp<N> is one forward pass over
N tokens, tg<N> is N single-token passes from depth 0; tokenization and sampling are not timed.
"""
from __future__ import annotations

import csv
import io
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np

GiB = 1 << 30
MiB = 1 << 20
OUTPUT_FORMATS = ("md", "csv", "json", "jsonl")

# The fields of one llama-bench JSON record, in its order (plus bitnet-cli's own at the end).
RECORD_FIELDS = (
    "build_commit", "build_number", "cpu_info", "backends", "model_filename", "model_type",
    "model_size", "model_n_params", "n_batch", "n_threads", "type_k", "type_v", "use_mmap",
    "n_prompt", "n_gen", "n_depth", "test_time", "avg_ns", "stddev_ns", "avg_ts", "stddev_ts",
    "samples_ns", "samples_ts", "bytes_per_token", "bandwidth_gbs", "machine_bandwidth_gbs",
)


@dataclass(frozen=True)
class BenchTest:
    """One row of the matrix: `n_prompt` tokens processed and `n_gen` generated after `n_depth`."""

    n_prompt: int
    n_gen: int
    n_depth: int = 0

    @property
    def name(self) -> str:
        parts = ([f"pp{self.n_prompt}"] if self.n_prompt else []) + ([f"tg{self.n_gen}"] if self.n_gen else [])
        return "+".join(parts) + (f" @ d{self.n_depth}" if self.n_depth else "")

    @property
    def n_tokens(self) -> int:
        """Tokens a run processes, which t/s counts (llama-bench: n_prompt + n_gen)."""
        return self.n_prompt + self.n_gen


def make_tests(n_prompt: Sequence[int], n_gen: Sequence[int], pg: Sequence[tuple[int, int]] = (),
                depths: Sequence[int] = (0,)) -> list[BenchTest]:
    """llama-bench's order per depth: every pp test, then every tg test, then every pp+tg pair."""
    tests: list[BenchTest] = []
    for d in depths:
        tests += [BenchTest(p, 0, d) for p in n_prompt if p > 0]
        tests += [BenchTest(0, n, d) for n in n_gen if n > 0]
        tests += [BenchTest(p, n, d) for p, n in pg if p > 0 or n > 0]
    return tests


@dataclass
class ModelInfo:
    """What the table says about a model file."""

    filename: str
    model_type: str  # "<arch> <size label> <quant description>"
    size: int  # bytes of the file
    n_params: int
    bytes_per_token: int  # weight bytes one decode step reads (every matrix + the LM head)
    backend: str = "Numba"
    source: str | None = None  # for a peer's copy: the file it was made from (pairs rows for the ratio)


@dataclass
class BenchResult:
    """The timings of one test on one model at one thread count (a llama-bench record)."""

    model: ModelInfo
    test: BenchTest
    n_threads: int
    samples_ns: list[int]
    test_time: str = field(default_factory=lambda: datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    machine_bandwidth: float | None = None  # bytes/s streamed by this machine in the same run
    n_batch: int = 512

    @property
    def samples_ts(self) -> list[float]:
        return [self.test.n_tokens * 1e9 / ns for ns in self.samples_ns]

    @property
    def avg_ns(self) -> float:
        return float(np.mean(self.samples_ns))

    @property
    def stddev_ns(self) -> float:
        return _stdev(self.samples_ns)

    @property
    def avg_ts(self) -> float:
        return float(np.mean(self.samples_ts))

    @property
    def stddev_ts(self) -> float:
        return _stdev(self.samples_ts)

    @property
    def bandwidth(self) -> float | None:
        """Weight bytes read per second while generating (tg tests only; pp is compute-bound)."""
        if self.test.n_prompt or not self.test.n_gen:
            return None
        return self.model.bytes_per_token * self.avg_ts

    def record(self) -> dict[str, Any]:
        """The llama-bench JSON record (bandwidths in GB/s; None where not measured)."""
        bw, mbw = self.bandwidth, self.machine_bandwidth
        return {
            "build_commit": _build_commit(), "build_number": 0, "cpu_info": cpu_info(),
            "backends": self.model.backend, "model_filename": self.model.filename,
            "model_type": self.model.model_type, "model_size": self.model.size,
            "model_n_params": self.model.n_params, "n_batch": self.n_batch, "n_threads": self.n_threads,
            "type_k": "f32", "type_v": "f32", "use_mmap": True,
            "n_prompt": self.test.n_prompt, "n_gen": self.test.n_gen, "n_depth": self.test.n_depth,
            "test_time": self.test_time, "avg_ns": round(self.avg_ns), "stddev_ns": round(self.stddev_ns),
            "avg_ts": self.avg_ts, "stddev_ts": self.stddev_ts,
            "samples_ns": list(self.samples_ns), "samples_ts": self.samples_ts,
            "bytes_per_token": self.model.bytes_per_token,
            "bandwidth_gbs": None if bw is None else bw / 1e9,
            "machine_bandwidth_gbs": None if mbw is None else mbw / 1e9,
        }


def _stdev(xs: Sequence[float]) -> float:
    # llama-bench's sample standard deviation (n - 1); 0 for a single sample.
    return float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0


def _build_commit() -> str:
    from bitnet_cli import __version__

    return __version__


_CPU_INFO: str | None = None


def cpu_info() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux, else `platform.processor()`)."""
    global _CPU_INFO
    if _CPU_INFO is None:
        import platform

        _CPU_INFO = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    _CPU_INFO = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
    return _CPU_INFO


# ---- running ------------------------------------------------------------------------------------


class Runner(Protocol):
    """Something that can time one test: ours (`ModelRunner`) or a peer engine."""

    info: ModelInfo
    n_batch: int

    def set_threads(self, n: int) -> None: ...

    def run(self, test: BenchTest) -> int:
        """One timed repetition; returns nanoseconds."""
        ...


def synthetic_tokens(n: int, n_vocab: int, seed: int) -> list[int]:
    """Deterministic pseudo-random token ids (llama-bench draws them with rand() % n_vocab)."""
    return np.random.default_rng(seed).integers(0, n_vocab, size=n).tolist()


class ModelRunner:
    """Times forward passes of a loaded `bitnet_cli` Model: the same code path as `bitnet run`."""

    def __init__(self, model: Any, info: ModelInfo, n_batch: int = 512) -> None:
        self.model, self.info, self.n_batch = model, info, n_batch
        self.n_vocab = int(model.config.n_vocab)

    def set_threads(self, n: int) -> None:
        import bitnet_kernels

        setter = getattr(bitnet_kernels, "set_num_threads", None)
        if setter is None:  # older kernels: Numba's pool is all there is
            import numba

            setter = numba.set_num_threads
        setter(n)

    def run(self, test: BenchTest) -> int:
        m = self.model
        cache = m.new_cache(max(1, test.n_depth + test.n_tokens))  # allocated outside the timing
        if test.n_depth:
            m.forward(synthetic_tokens(test.n_depth, self.n_vocab, 1), cache)
        prompt = synthetic_tokens(test.n_prompt, self.n_vocab, 2)
        gen = synthetic_tokens(test.n_gen, self.n_vocab, 3)
        t0 = time.perf_counter_ns()
        for i in range(0, len(prompt), self.n_batch):
            m.forward(prompt[i : i + self.n_batch], cache)
        for tok in gen:
            m.forward([tok], cache)
        return time.perf_counter_ns() - t0


def warm_up(runner: Runner, test: BenchTest) -> None:
    """Untimed: compiles every kernel the test uses and faults in the weights' pages."""
    # A full-size prompt pass takes the same kernel path as the timed one; two decode steps suffice.
    runner.run(BenchTest(test.n_prompt, min(test.n_gen, 2), test.n_depth))


Progress = Callable[[str], None]


def run_tests(runners: Runner | Sequence[Runner], tests: Iterable[BenchTest], threads: Sequence[int], *,
              repetitions: int = 5, warmup: bool = True, delay: float = 0.0,
              bandwidth: dict[int, float] | None = None, progress: Progress | None = None,
              per_rep: bool = False) -> list[BenchResult]:
    """Every test at every thread count, `repetitions` timed runs each (llama-bench order).

    With several runners (ours and a peer), each test runs on all of them back to back, so a
    ratio compares runs minutes apart at most; the rows come back grouped by runner.
    `progress` gets a line per test (and per repetition with `per_rep`).
    """
    runners = [runners] if not isinstance(runners, Sequence) else list(runners)
    rows: list[list[BenchResult]] = [[] for _ in runners]
    tests = list(tests)
    for nt in threads:
        for runner in runners:
            runner.set_threads(nt)
        for test in tests:
            for runner, out in zip(runners, rows):
                if delay:
                    time.sleep(delay)
                out.append(_time_test(runner, test, nt, repetitions, warmup, progress, per_rep))
                out[-1].machine_bandwidth = (bandwidth or {}).get(nt)
    return [r for out in rows for r in out]


def _time_test(runner: Runner, test: BenchTest, nt: int, repetitions: int, warmup: bool,
               progress: Progress | None, per_rep: bool) -> BenchResult:
    if progress:
        progress(f"{runner.info.backend} {Path(runner.info.filename).name}: {test.name}, {nt} thread(s), "
                 f"{repetitions} run(s)")
    if warmup:
        warm_up(runner, test)
    samples = []
    for i in range(repetitions):
        samples.append(runner.run(test))
        if progress and per_rep:
            progress(f"  run {i + 1}/{repetitions}: {test.n_tokens * 1e9 / samples[-1]:.2f} t/s")
    return BenchResult(runner.info, test, nt, samples, n_batch=runner.n_batch)


# ---- describing a model -------------------------------------------------------------------------

# llama.cpp's ftype names (the fork's for I2_S/TL1/TL2).
_FTYPE_NAMES = {
    0: "all F32", 1: "F16", 7: "Q8_0", 32: "BF16", 36: "TQ1_0 - 1.69 bpw ternary",
    37: "TQ2_0 - 2.06 bpw ternary", 38: "TL1", 39: "TL2", 40: "I2_S - 2 bpw ternary",
}


def size_label(n_params: int) -> str:
    """`general.size_label`-style: 2412820480 -> "2.4B", 128450000 -> "128M"."""
    if n_params >= 1e9:
        return f"{n_params / 1e9:.1f}B".replace(".0B", "B")
    return f"{round(n_params / 1e6)}M"


# llama.cpp's model type names by layer count for the BitNet architectures.
_LAYER_LABELS = {("bitnet-b1.58", 30): "2B", ("bitnet-25", 30): "2B", ("bitnet", 26): "3B"}


def _size_label(md: Any, arch: str, n_layer: int, n_params: int) -> str:
    name = str(md.get("general.name", ""))
    if name.startswith("bitnet-dummy-"):  # a dummy preset: its own name (125M, 7B, ...)
        return name[len("bitnet-dummy-"):]
    return md.get("general.size_label") or _LAYER_LABELS.get((arch, n_layer)) or size_label(n_params)


def describe_model(model: Any, backend: str = "Numba") -> ModelInfo:
    """ModelInfo from a loaded Model: file size, parameters and the bytes a decode step reads."""
    mf = model.model_file
    md = mf.metadata
    n_params = int(model.n_params)
    label = _size_label(md, mf.arch, model.config.n_layer, n_params)
    ftype = md.get("general.file_type")
    qdesc = _FTYPE_NAMES.get(int(ftype), f"ftype {ftype}") if ftype is not None else "?"
    return ModelInfo(
        filename=str(model.path), model_type=f"{mf.arch} {label} {qdesc}", size=int(model.file_size),
        n_params=n_params, bytes_per_token=decode_bytes(mf.tensors), backend=backend,
    )


def decode_bytes(tensors: Any) -> int:
    """Bytes one decode step reads: every tensor but the embedding, which it reads one row of.

    When the head is tied (no `output.weight`), the embedding is the head and is read whole.
    """
    total = sum(int(t.nbytes) for name, t in tensors.items() if name != "token_embd.weight")
    if "output.weight" not in tensors and "token_embd.weight" in tensors:
        total += int(tensors["token_embd.weight"].nbytes)
    return total


# ---- formatting ---------------------------------------------------------------------------------


def format_size(n: int) -> str:
    return f"{n / GiB:.2f} GiB" if n >= GiB else f"{n / MiB:.2f} MiB"


def format_params(n: int) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f} B"
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.2f} K"


def _md_row(cells: Sequence[str], widths: Sequence[int], right: Sequence[bool]) -> str:
    return "| " + " | ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)) + " |"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    """A padded Markdown table; right-aligned columns get `---:`."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    rule = "| " + " | ".join("-" * (w - 1) + ":" if r else "-" * w for w, r in zip(widths, right)) + " |"
    return "\n".join([_md_row(header, widths, right), rule] + [_md_row(r, widths, right) for r in rows])


def format_md(results: Sequence[BenchResult], verbose: bool = False) -> str:
    """llama-bench's table: model | size | params | backend | threads | test | t/s (+ bandwidth with -v)."""
    header = ["model", "size", "params", "backend", "threads", "test", "t/s"]
    right = [False, True, True, False, True, True, True]
    if verbose:
        header += ["GB/s", "% of BW"]
        right += [True, True]
    rows = []
    for r in results:
        row = [r.model.model_type, format_size(r.model.size), format_params(r.model.n_params), r.model.backend,
               str(r.n_threads), r.test.name, f"{r.avg_ts:.2f} ± {r.stddev_ts:.2f}"]
        if verbose:
            bw, mbw = r.bandwidth, r.machine_bandwidth
            row.append("-" if bw is None else f"{bw / 1e9:.2f}")
            row.append("-" if bw is None or not mbw else f"{100 * bw / mbw:.0f} %")
        rows.append(row)
    return markdown_table(header, rows, right)


def _csv_value(v: Any) -> Any:
    if isinstance(v, list):
        return ";".join(str(x) for x in v)  # llama-bench joins sample lists with ';'
    return "" if v is None else v


def format_csv(results: Sequence[BenchResult]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
    w.writerow(RECORD_FIELDS)
    for r in results:
        rec = r.record()
        w.writerow([_csv_value(rec[k]) for k in RECORD_FIELDS])
    return buf.getvalue().rstrip("\n")


def format_json(results: Sequence[BenchResult]) -> str:
    return json.dumps([r.record() for r in results], indent=2)


def format_jsonl(results: Sequence[BenchResult]) -> str:
    return "\n".join(json.dumps(r.record()) for r in results)


def format_results(results: Sequence[BenchResult], fmt: str, verbose: bool = False) -> str:
    """The results in one of OUTPUT_FORMATS (md, csv, json, jsonl)."""
    if fmt == "md":
        return format_md(results, verbose)
    return {"csv": format_csv, "json": format_json, "jsonl": format_jsonl}[fmt](results)


def compare_rows(results: Sequence[BenchResult]) -> list[tuple[BenchResult, BenchResult]]:
    """(ours, peer) pairs: the same test and threads, ours on the Numba backend, the peer on another."""
    ours = {(r.model.filename, r.test, r.n_threads): r for r in results if r.model.backend == "Numba"}
    pairs = []
    for r in results:
        if r.model.backend == "Numba":
            continue
        mine = ours.get((r.model.source, r.test, r.n_threads))
        if mine is not None:
            pairs.append((mine, r))
    return pairs


def format_ratios(pairs: Sequence[tuple[BenchResult, BenchResult]]) -> str:
    """A Markdown table of our t/s over the peer's, pair by pair."""
    header = ["model", "threads", "test", "bitnet t/s", "peer", "peer t/s", "ratio"]
    rows = [[ours.model.model_type, str(ours.n_threads), ours.test.name, f"{ours.avg_ts:.2f}",
             f"{peer.model.backend} {peer.model.model_type.split(' ', 2)[-1]}", f"{peer.avg_ts:.2f}",
             f"{ours.avg_ts / peer.avg_ts:.2f}x" if peer.avg_ts > 0 else "-"] for ours, peer in pairs]
    return markdown_table(header, rows, [False, True, True, True, False, True, True])


def parse_int_list(text: str | Sequence[str] | None, flag: str) -> list[int]:
    """`"1,2,4"` (or a repeated flag) -> [1, 2, 4]; raises ValueError naming the flag."""
    if text is None:
        return []
    items = [text] if isinstance(text, str) else list(text)
    out = []
    for item in items:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            try:
                value = int(part)
            except ValueError:
                raise ValueError(f"{flag} expects integers separated by commas, got '{part}'") from None
            if value < 0:
                raise ValueError(f"{flag} values must be 0 or more, got {value}")
            out.append(value)
    return out


def parse_pg(text: str | Sequence[str] | None) -> list[tuple[int, int]]:
    """`-pg 512,128` (repeatable) -> [(512, 128)]."""
    items = [] if text is None else ([text] if isinstance(text, str) else list(text))
    out = []
    for item in items:
        values = parse_int_list(item, "-pg")
        if len(values) != 2:
            raise ValueError(f"-pg expects PROMPT,GEN (two numbers), got '{item}'")
        out.append((values[0], values[1]))
    return out


def print_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)

