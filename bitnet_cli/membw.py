"""This machine's DRAM read bandwidth: a parallel streaming read over a buffer far larger than L3.

`bitnet bench -v` measures it in the same run as the model, so "bandwidth achieved" is reported as
a ratio to what this machine can stream right now, not to a datasheet figure.
"""
from __future__ import annotations

import time

import numba
import numpy as np

DEFAULT_MIB = 512  # 16× the 32 MiB L3 of the reference machine: every pass streams from DRAM
_CHUNKS_PER_THREAD = 4


@numba.njit(parallel=True, cache=True, nogil=True)
def _stream_sum(a: np.ndarray, n_chunks: int) -> np.uint64:
    # a: [n] uint64; each chunk is one contiguous run read front to back by one worker.
    # Numba's array .sum() vectorizes into 4-wide ymm adds (a hand-written xor loop did not: 40 % slower).
    n = a.shape[0]
    step = (n + n_chunks - 1) // n_chunks
    out = np.zeros(n_chunks, np.uint64)
    for c in numba.prange(n_chunks):
        out[c] = a[c * step : min(n, (c + 1) * step)].sum()
    return out.sum()


def _buffer(mib: int) -> np.ndarray:
    # Written once so every page is really backed (no shared zero page).
    buf = np.arange(mib * (1 << 20) // 8, dtype=np.uint64)
    buf *= np.uint64(0x9E3779B97F4A7C15)  # distinct pages: nothing for page merging to fold together
    return buf


def read_bandwidth(threads: int = 1, *, mib: int = DEFAULT_MIB, passes: int = 8, buf: np.ndarray | None = None) -> float:
    """Best streaming read rate in bytes/s over `passes` passes, with `threads` Numba threads."""
    buf = _buffer(mib) if buf is None else buf
    threads = max(1, min(threads, numba.config.NUMBA_NUM_THREADS))
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        n_chunks = threads * _CHUNKS_PER_THREAD
        _stream_sum(buf[:1024], n_chunks)  # compile (or load from cache) outside the timing
        best = float("inf")
        for _ in range(passes):
            t0 = time.perf_counter()
            _stream_sum(buf, n_chunks)
            best = min(best, time.perf_counter() - t0)
    finally:
        numba.set_num_threads(previous)
    return buf.nbytes / best


def measure(thread_counts: list[int], *, mib: int = DEFAULT_MIB, passes: int = 8) -> dict[int, float]:
    """Bandwidth in bytes/s for each thread count, all on one buffer allocated once."""
    buf = _buffer(mib)
    return {t: read_bandwidth(t, passes=passes, buf=buf) for t in sorted(set(thread_counts))}


if __name__ == "__main__":
    import os

    for t, bw in measure([1, os.cpu_count() or 1]).items():
        print(f"{t} thread(s): {bw / 1e9:.1f} GB/s")
