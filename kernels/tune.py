"""Per-CPU tuning of kernel parameters, its JSON cache, shipped presets, and JIT warm-up.

`tune(shapes, threads, quant)` times every allowed parameter set per (M, K, one/many tokens) on
random weights rotated through more memory than the L3 holds (decode reads weights from DRAM),
keeps the fastest (best pass), and writes them to `<user cache>/kernels-tuned.json` under a key made of the CPU
model, its ISA flags, the Numba version, the kernel family and sources, quant type, shape and
thread count.
`load_tuned()` reads the entries for this machine (kernels call it once on first use);
`load_tuned(use_pretuned=True)` reads the presets shipped in `presets/` instead.
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numba
import numpy as np

from . import params as P
from ._jit import host_cpu_name, host_features, kernel_isa, numba_cache_dir, user_cache_dir
from .reference import pack_i2s

__all__ = ["tune", "load_tuned", "warmup", "cache_path", "host_key", "candidates", "back_to_back"]

Progress = Callable[[int, int, str], None]  # (done, total, label)
_ISA_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vnni", "avxvnni", "neon", "dotprod")
_ROTATE_BYTES = 96 << 20  # > 32 MiB L3: every timed call reads its weights from DRAM
_loaded = False


def cache_path() -> Path:
    """The tuned-parameter file (`BITNET_TUNE_CACHE` overrides; the tests point it elsewhere)."""
    override = os.environ.get("BITNET_TUNE_CACHE")
    return Path(override) if override else user_cache_dir() / "kernels-tuned.json"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_key() -> str:
    """CPU model + LLVM CPU name + ISA flags + Numba version + kernel family + kernel sources
    (parameters tuned for an earlier version of the kernels are not applied to a later one)."""
    f = host_features()
    flags = "+".join(k for k in _ISA_FLAGS if f.get(k))
    return f"{_cpu_model()}|{host_cpu_name()}|{flags}|numba-{numba.__version__}|{kernel_isa()}|{numba_cache_dir().name}"


def _entry_key(quant: str, M: int, K: int, kind: str, threads: int) -> str:
    return f"{quant}|{M}x{K}|{kind}|t{threads}"


def candidates(quant: str, kind: str, threads: int) -> list[dict[str, Any]]:
    """Every parameter set the tuner tries (all valid; the tests run them all)."""
    chunk_opts = sorted({threads, 2 * threads, 4 * threads}) if threads > 1 else [1]
    if quant != "i2_s":
        if kind == "gemv":
            return [{"pf": pf, "chunks": c} for pf in (0, 4096, 16384) for c in chunk_opts]
        return [{"tok_block": tb, "chunks": c} for tb in (16, 64) for c in chunk_opts[:2]]
    if kind == "gemv":
        return [{"pf": pf, "chunks": c} for pf in (2048, 4096, 8192) for c in chunk_opts]
    if kernel_isa() != "avx2":
        return [{"chunks": c} for c in chunk_opts]
    from .i2s_gemm_avx2 import GEMM_KERNELS

    return [{"block": b, "tok_block": tb, "chunks": c} for b in GEMM_KERNELS for tb in (32, 128) for c in chunk_opts[:2]]


def _time_calls(fn: Callable[[int], None], copies: int, reps: int) -> float:
    """Seconds per call in the fastest of `reps` passes that each call every weight copy once
    (the fastest pass: other processes on a shared machine only ever add time)."""
    fn(0)
    per = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for i in range(copies):
            fn(i)
        per.append((time.perf_counter() - t0) / copies)
    return min(per)


def back_to_back(nbytes: int, copies: int) -> list[np.ndarray]:
    """`copies` 64-byte aligned uint8[nbytes] views laid out one after another in one allocation.

    Weights rotated through DRAM for timing sit like this, because the loader lays a model's
    weights out the same way, in the order a forward pass reads them: a call then continues the
    previous one's stream. Separately allocated copies restart the hardware and software
    prefetch at every call, which cost the I2_S GEMV 2-10 % of the stream on this VM.
    """
    stride = -(-nbytes // 64) * 64
    buf = np.empty(stride * copies + 64, np.uint8)
    start = (-buf.ctypes.data) % 64
    return [buf[start + i * stride : start + i * stride + nbytes] for i in range(copies)]


def _i2s_setup(M: int, K: int, n: int, rng: np.random.Generator) -> tuple[Callable[[int], None], int]:
    from .activations import quantize_activations
    from .linear import prepare_i2s, ternary_linear

    raw = pack_i2s(rng.integers(-1, 2, size=(M, K), dtype=np.int8), 0.5)
    copies = max(1, min(1024, _ROTATE_BYTES // raw.nbytes + 1)) if n == 1 else 1
    ws = [prepare_i2s(raw, M, K, out=o) for o in back_to_back(M * K // 4, copies)]
    q, s = quantize_activations(rng.standard_normal((n, K)).astype(np.float32))
    out = np.empty((n, M), np.float32)
    return (lambda i: ternary_linear(ws[i], q, s, out)), copies


def _dense_setup(quant: str, M: int, K: int, n: int, rng: np.random.Generator) -> tuple[Callable[[int], None], int]:
    from .dense import DENSE_TYPES, dense_linear, prepare_dense, row_bytes

    gtype = {v: k for k, v in DENSE_TYPES.items()}[quant]
    raw = rng.integers(0, 60, size=M * row_bytes(gtype, K), dtype=np.uint8)  # small finite f16/bf16/scales
    w = prepare_dense(raw, gtype, (M, K))
    x = rng.standard_normal((n, K)).astype(np.float32)
    out = np.empty((n, M), np.float32)
    return (lambda i: dense_linear(w, x, out)), 1


def tune(shapes: list[tuple[int, int]] | None = None, threads: int | None = None, quant: str = "i2_s",
         ns: tuple[int, ...] = (1, 128), progress: Progress | None = None) -> dict[str, Any]:
    """Find the fastest parameters per (M, K, n-kind), apply them, and save them to the cache.

    Args:
        shapes: distinct (M, K) weight shapes of the model (stacked shapes too, if used). None:
            every shape `prepare_i2s` / `stack_ternary` / `prepare_dense` has seen in this process
            (so: load the model, then call `tune(threads=t)`); heads then get n = 1 only.
        threads: the thread count the model will run with (default: the current count).
        quant: "i2_s", or a head type "f16", "bf16", "f32", "q8_0", "q6_k" (ignored when shapes
            is None: each seen shape is tuned with its own type).
        ns: token counts to tune for; 1 tunes the GEMV, anything else the GEMM.
        progress: called as progress(done, total, label) after each timing.

    Returns:
        {"host": host_key(), "entries": {entry_key: {"params": ..., "us": ...}}}
    """
    from .threads import get_num_threads

    threads = threads or get_num_threads()
    if shapes is None:
        merged: dict[str, Any] = {"host": host_key(), "entries": {}}
        for q in sorted({q for q, _, _ in SEEN_SHAPES}):
            seen = [(M, K) for qq, M, K in SEEN_SHAPES if qq == q]
            part = tune(seen, threads, q, ns if q == "i2_s" else (1,), progress)
            merged["entries"].update(part["entries"])
        return merged
    return _tune(list(shapes), threads, quant, ns, progress)


SEEN_SHAPES: dict[tuple[str, int, int], None] = {}  # (quant, M, K) of every prepared weight, in order


def _tune(shapes: list[tuple[int, int]], threads: int, quant: str, ns: tuple[int, ...],
          progress: Progress | None) -> dict[str, Any]:
    from .threads import ADAPTIVE, get_num_threads, set_num_threads

    old_threads = get_num_threads()
    set_num_threads(threads)
    rng = np.random.default_rng(0)
    no_fallback = ADAPTIVE.disabled()
    no_fallback.__enter__()
    jobs = [(M, K, n) for M, K in dict.fromkeys(shapes) for n in ns]
    total = sum(len(candidates(quant, P.n_kind(n), threads)) for _, _, n in jobs)
    done, found = 0, {}
    try:
        for M, K, n in jobs:
            kind = P.n_kind(n)
            call, copies = _i2s_setup(M, K, n, rng) if quant == "i2_s" else _dense_setup(quant, M, K, n, rng)
            best: tuple[float, dict[str, Any]] | None = None
            for cand in candidates(quant, kind, threads):
                P.set_params(quant, M, K, kind, threads, cand)
                reps = 5 if n == 1 else 3
                sec = _time_calls(call, copies, reps)
                if best is None or sec < best[0]:
                    best = (sec, cand)
                done += 1
                if progress:
                    progress(done, total, f"{quant} {M}x{K} n={n}")
            assert best is not None
            P.set_params(quant, M, K, kind, threads, best[1])
            found[_entry_key(quant, M, K, kind, threads)] = {"params": best[1], "us": round(best[0] * 1e6, 1)}
    finally:
        no_fallback.__exit__(None, None, None)
        set_num_threads(old_threads)
    _save(found)
    return {"host": host_key(), "entries": found}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _save(entries: dict[str, Any]) -> None:
    path = cache_path()
    data = _read_json(path)
    hosts = data.setdefault("hosts", {})
    hosts.setdefault(host_key(), {}).update(entries)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def _apply(entries: dict[str, Any]) -> int:
    n = 0
    for key, val in entries.items():
        try:
            quant, shape, kind, t = key.split("|")
            M, K = (int(v) for v in shape.split("x"))
            P.set_params(quant, M, K, kind, int(t[1:]), dict(val.get("params", val)))
            n += 1
        except (ValueError, AttributeError):
            continue  # an entry from another version: ignore it
    return n


def _preset_file() -> Path | None:
    folder = Path(__file__).with_name("presets")
    for name in (f"{host_cpu_name()}-{kernel_isa()}.json", f"{kernel_isa()}.json"):
        if (folder / name).is_file():
            return folder / name
    return None


def load_tuned(*, use_pretuned: bool = False) -> int:
    """Apply this machine's tuned parameters (or the shipped presets); returns how many entries."""
    global _loaded
    _loaded = True
    if use_pretuned:
        preset = _preset_file()
        return _apply(_read_json(preset).get("entries", {})) if preset else 0
    return _apply(_read_json(cache_path()).get("hosts", {}).get(host_key(), {}))


def ensure_loaded() -> None:
    """Once per process: the shipped presets, then this machine's tuned entries over them."""
    if not _loaded:
        load_tuned(use_pretuned=True)
        load_tuned()


def warmup(progress: Progress | None = None) -> int:
    """Compile (or load from Numba's cache) every kernel specialization this CPU will run.

    Runs each public kernel on tiny inputs with the argument types real runs use, for one thread
    and for the full pool, every GEMM block and every dense type. Returns the number of steps.
    """
    from .activations import quantize_activations, rms_norm, rms_norm_quantize
    from .dense import DENSE_TYPES, dense_linear, embed_rows, prepare_dense, row_bytes
    from .linear import prepare_i2s, ternary_linear
    from .threads import get_num_threads, set_num_threads

    M, K = 8, 256  # a shape no model has: its parameter entries are scratch
    rng = np.random.default_rng(0)
    wt = prepare_i2s(pack_i2s(rng.integers(-1, 2, size=(M, K), dtype=np.int8), 0.5), M, K)
    dense = [prepare_dense(rng.integers(0, 60, size=M * row_bytes(g, K), dtype=np.uint8), g, (M, K)) for g in DENSE_TYPES]
    x = rng.standard_normal((3, K)).astype(np.float32)
    blocks = [c for c in candidates("i2_s", "gemm", 1)]
    pool = sorted({1, numba.config.NUMBA_NUM_THREADS})
    steps = [(t, b) for t in pool for b in blocks]
    old = get_num_threads()
    try:
        for i, (t, cand) in enumerate(steps):
            set_num_threads(t)
            P.set_params("i2_s", M, K, "gemm", t, cand)
            for n in (1, 3):
                q, s = quantize_activations(x[:n])
                ternary_linear(wt, q, s)
                rms_norm_quantize(x[:n], x[0], 1e-5)
                rms_norm(x[:n], x[0], 1e-5)
                for w in dense:
                    dense_linear(w, x[:n])
                    embed_rows(w, np.arange(n))
            if progress:
                progress(i + 1, len(steps), "compiling kernels")
    finally:
        set_num_threads(old)
        P.remove(M, K)
    return len(steps)
