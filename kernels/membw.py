"""Streaming-read bandwidth, measured with the same loads and prefetch the kernels use.

Benchmarks report kernel throughput as a fraction of this figure, measured in the same run over a
buffer much larger than the L3, so the ratio holds whatever the machine's absolute speed is.
"""
from __future__ import annotations

import time

import numba
import numpy as np
from numba import prange

from ._jit import kernel, kernel_isa

__all__ = ["stream_read_gbs", "stream_read_once"]


@kernel()
def _read_portable(a, lo, hi):  # noqa: ANN001, ANN202
    acc = np.uint64(0)
    for i in range(lo, hi):
        acc ^= a[i]  # integer xor-reduction: vectorized into wide loads
    return acc


@kernel(parallel=True)
def _stream_portable(a, nchunks):  # noqa: ANN001, ANN202
    n = a.shape[0]
    per = (n + nchunks - 1) // nchunks
    out = np.zeros(nchunks, np.uint64)
    for c in prange(nchunks):
        out[c] = _read_portable(a, min(n, c * per), min(n, (c + 1) * per))
    return out.sum()


def _variants(threads: int, buf: np.ndarray) -> list:
    if kernel_isa() == "avx2":
        from .membw_avx2 import stream_avx2

        return [lambda pf=pf: stream_avx2(buf, threads, pf) for pf in (0, 2048)]
    return [lambda: _stream_portable(buf, threads)]


def stream_read_once(threads: int, buf: np.ndarray) -> float:
    """GB/s of one read of `buf` (the better of the variants; compiled beforehand by a first call)."""
    old = numba.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        best = float("inf")
        for run in _variants(threads, buf):
            t0 = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - t0)
    finally:
        numba.set_num_threads(old)
    return buf.nbytes / best / 1e9


def stream_read_gbs(threads: int, buf: np.ndarray, passes: int = 5) -> dict[str, float]:
    """Best and median GB/s reading `buf` (uint64) front to back with `threads` threads.

    On AVX2 each pass takes the better of no prefetch and a 2 KiB prefetch (the kernels' setting).
    """
    stream_read_once(threads, buf[: 1 << 20])  # compile / load from cache
    rates = [stream_read_once(threads, buf) for _ in range(passes)]
    return {"best": max(rates), "median": float(np.median(rates))}
