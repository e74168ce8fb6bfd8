"""I2_S GEMV (one token) for AVX2, reading bitnet.cpp's canonical bytes in place (no repack).

Per 32-byte block: one load, four code vectors (vpsrlw 6/4/2/0, vpand 3), four vpmaddubsw with
the int8 activations at offsets 0/32/64/96, int16 sums over two blocks, vpmaddwd(., 1) into
int32. A prefetch `pf` bytes ahead keeps DRAM streaming while the core computes.
Only import this module on CPUs with AVX2 (see `_jit.kernel_isa`).
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ._jit import kernel
from .simd import (
    hsum_v8i32,
    load_v32i8,
    madd,
    maddubs,
    prefetch,
    splat_v16i16,
    splat_v32i8,
    srl16,
    vadd,
    vand,
    zero_v8i32,
)
from .i2s_common import row_sums


@kernel()
def _block_sum(W, wo, X, xo, m3):  # noqa: ANN001, ANN202
    """int16 lanes of sum(code * x) over one 128-value block at byte wo of W, x at byte xo of X."""
    w = load_v32i8(W, wo)
    h = maddubs(vand(srl16(w, 6), m3), load_v32i8(X, xo))
    h = vadd(h, maddubs(vand(srl16(w, 4), m3), load_v32i8(X, xo + 32)))
    h = vadd(h, maddubs(vand(srl16(w, 2), m3), load_v32i8(X, xo + 64)))
    return vadd(h, maddubs(vand(w, m3), load_v32i8(X, xo + 96)))


@kernel()
def dot_row(W, wo, X, xo, nblk, pf):  # noqa: ANN001, ANN201
    """sum_k code[k] * x[k] for one weight row (bytes at wo) and one token (bytes at xo)."""
    m3 = splat_v32i8(3)
    ones = splat_v16i16(1)
    acc = zero_v8i32()
    b = 0
    while b + 2 <= nblk:  # two blocks (one cache line) per step; int16 holds 2 x 4 x 512
        off = wo + b * 32
        prefetch(W, off + pf)
        h = vadd(_block_sum(W, off, X, xo + b * 128, m3), _block_sum(W, off + 32, X, xo + b * 128 + 128, m3))
        acc = vadd(acc, madd(h, ones))
        b += 2
    if b < nblk:
        acc = vadd(acc, madd(_block_sum(W, wo + b * 32, X, xo + b * 128, m3), ones))
    return hsum_v8i32(acc)


@kernel()
def _gemv_rows(W, K, x, xsum, s, scale, y, r0, r1, pf):  # noqa: ANN001, ANN202
    kb = K // 4
    nblk = K // 128
    for r in range(r0, r1):
        d = dot_row(W, r * kb, x, 0, nblk, pf)
        y[r] = np.float32(d - xsum) / s * scale[r]


@kernel(parallel=True)
def gemv_par(W, K, x, s, scale, y, nchunks, pf):  # noqa: ANN001, ANN201
    """y[M] for one token x[K], rows split into `nchunks` contiguous chunks in one parallel region."""
    M = scale.shape[0]
    xsum = row_sums(x.reshape(1, K))[0]
    per = (M + nchunks - 1) // nchunks
    for c in prange(nchunks):
        r0 = min(M, c * per)
        _gemv_rows(W, K, x, xsum, s, scale, y, r0, min(M, r0 + per), pf)


@kernel()
def gemv_serial(W, K, x, s, scale, y, pf):  # noqa: ANN001, ANN201
    xsum = row_sums(x.reshape(1, K))[0]
    _gemv_rows(W, K, x, xsum, s, scale, y, 0, scale.shape[0], pf)
