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

__all__ = ["stream_read_gbs"]


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


def stream_read_gbs(threads: int, buf: np.ndarray, passes: int = 5) -> dict[str, float]:
    """Best and median GB/s reading `buf` (uint64) front to back with `threads` threads.

    On AVX2 it takes the better of no prefetch and a 2 KiB prefetch (the kernels' setting).
    """
    old = numba.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        if kernel_isa() == "avx2":
            from .membw_avx2 import stream_avx2 as fn

            variants = [lambda pf=pf: fn(buf, threads, pf) for pf in (0, 2048)]
        else:
            variants = [lambda: _stream_portable(buf, threads)]
        results = []
        for run in variants:
            run()
            times = []
            for _ in range(passes):
                t0 = time.perf_counter()
                run()
                times.append(time.perf_counter() - t0)
            results.append((min(times), float(np.median(times))))
        best = min(r[0] for r in results)
        med = min(r[1] for r in results)
    finally:
        numba.set_num_threads(old)
    return {"best": buf.nbytes / best / 1e9, "median": buf.nbytes / med / 1e9}
