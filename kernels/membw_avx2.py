"""AVX2 streaming read for `membw` (4 ymm loads and 2 prefetches per 128 bytes). AVX2 CPUs only."""
from __future__ import annotations

import numpy as np
from numba import prange

from ._jit import kernel
from .simd import as_v8i32, hsum_v8i32, load_v32i8, prefetch, vxor, zero_v32i8


@kernel()
def read_avx2(a, lo, hi, pf):  # noqa: ANN001, ANN201
    """xor of bytes [lo, hi) of a (multiples of 128 bytes)."""
    x0 = zero_v32i8()
    x1 = zero_v32i8()
    for o in range(lo, hi, 128):
        prefetch(a, o + pf)
        prefetch(a, o + pf + 64)
        x0 = vxor(x0, vxor(load_v32i8(a, o), load_v32i8(a, o + 32)))
        x1 = vxor(x1, vxor(load_v32i8(a, o + 64), load_v32i8(a, o + 96)))
    return hsum_v8i32(as_v8i32(vxor(x0, x1)))


@kernel(parallel=True)
def stream_avx2(a, nchunks, pf):  # noqa: ANN001, ANN201
    """Read all of `a` in `nchunks` contiguous chunks, one parallel region."""
    n = a.shape[0] * a.itemsize // 128 * 128
    per = (n // nchunks + 127) // 128 * 128
    out = np.zeros(nchunks, np.int64)
    for c in prange(nchunks):
        out[c] = read_avx2(a, min(n, c * per), min(n, (c + 1) * per), pf)
    return out.sum()
