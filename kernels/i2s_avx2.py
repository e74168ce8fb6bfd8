"""I2_S GEMV (one token) for AVX2, reading bitnet.cpp's canonical bytes in place (no repack).

Per 32-byte block: one load, four code vectors (vpsrlw 6/4/2/0, vpand 3), four vpmaddubsw with
the int8 activations at offsets 0/32/64/96, vpmaddwd(., 1) into int32. Rows go 4 at a time
(independent accumulators); a prefetch `pf` bytes ahead keeps DRAM streaming while the core
computes.
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
def dot_rows4(W, wo, kb, X, nblk, pf):  # noqa: ANN001, ANN201
    """sum code * x for 4 consecutive rows (bytes at wo, wo+kb, ...) and one token X.

    Four independent accumulators keep the vector units busy (1.3x one row at a time), and the
    prefetch walks linearly `pf` bytes ahead of the 4-row block at the rate it is consumed
    (128 bytes per block step), so DRAM sees one sequential stream.
    """
    m3 = splat_v32i8(3)
    ones = splat_v16i16(1)
    a0 = zero_v8i32()
    a1 = zero_v8i32()
    a2 = zero_v8i32()
    a3 = zero_v8i32()
    for b in range(nblk):
        o = wo + b * 32
        xo = b * 128
        prefetch(W, wo + pf + b * 128)
        prefetch(W, wo + pf + b * 128 + 64)
        a0 = vadd(a0, madd(_block_sum(W, o, X, xo, m3), ones))
        a1 = vadd(a1, madd(_block_sum(W, o + kb, X, xo, m3), ones))
        a2 = vadd(a2, madd(_block_sum(W, o + 2 * kb, X, xo, m3), ones))
        a3 = vadd(a3, madd(_block_sum(W, o + 3 * kb, X, xo, m3), ones))
    return hsum_v8i32(a0), hsum_v8i32(a1), hsum_v8i32(a2), hsum_v8i32(a3)


@kernel()
def _gemv_rows(W, K, x, xsum, s, scale, y, r0, r1, pf):  # noqa: ANN001, ANN202
    kb = K // 4
    nblk = K // 128
    r = r0
    while r + 4 <= r1:
        d0, d1, d2, d3 = dot_rows4(W, r * kb, kb, x, nblk, pf)
        y[r] = np.float32(d0 - xsum) / s * scale[r]
        y[r + 1] = np.float32(d1 - xsum) / s * scale[r + 1]
        y[r + 2] = np.float32(d2 - xsum) / s * scale[r + 2]
        y[r + 3] = np.float32(d3 - xsum) / s * scale[r + 3]
        r += 4
    while r < r1:
        y[r] = np.float32(dot_row(W, r * kb, x, 0, nblk, pf) - xsum) / s * scale[r]
        r += 1


@kernel(parallel=True)
def gemv_par(W, K, x, s, scale, y, nchunks, pf):  # noqa: ANN001, ANN201
    """y[M] for one token x[K], rows split into `nchunks` contiguous chunks in one parallel region."""
    M = scale.shape[0]
    xsum = row_sums(x.reshape(1, K))[0]
    per = ((M + nchunks - 1) // nchunks + 3) // 4 * 4  # whole 4-row blocks per chunk
    for c in prange(nchunks):
        r0 = min(M, c * per)
        _gemv_rows(W, K, x, xsum, s, scale, y, r0, min(M, r0 + per), pf)


@kernel()
def gemv_serial(W, K, x, s, scale, y, pf):  # noqa: ANN001, ANN201
    xsum = row_sums(x.reshape(1, K))[0]
    _gemv_rows(W, K, x, xsum, s, scale, y, 0, scale.shape[0], pf)
