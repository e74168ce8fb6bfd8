"""I2_S GEMV (one token) for AVX2, on the row-interleaved runtime layout (`i2s_common.interleave4`).

Rows go 4 at a time, and their 32-byte blocks lie side by side: one step reads 128 contiguous
bytes, so DRAM and the hardware prefetcher see one sequential stream (with one stream per row, in
the file's order, the same kernel was up to 7 % slower at its best prefetch distance and far more
sensitive to it). A prefetch `pf` bytes ahead keeps DRAM busy while the core computes.

Per 32-byte block (128 codes, 2 bits each, at bits 6/4/2/0 for activations +0/+32/+64/+96): one
`vpsrlw 4` and four `vpand` (masks 3 and 12) split it into two code vectors and two 4 x code
vectors, left in place; four `vpmaddubsw` with the activations read from memory; products added
in int16 per class (1 x and 4 x) for up to 8 blocks, then `vpmaddwd` by 4 and by 1 into int32,
so the sum comes out times 4, exactly. That is 13.5 vector operations per block where shifting
every field down takes 16, which matters: one core is compute-bound at about DRAM speed.
Only import this module on CPUs with AVX2 (see `_jit.kernel_isa`).
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ._jit import kernel
from .i2s_common import row_sums
from .simd import (
    hsum_v8i32,
    load_v32i8,
    madd,
    maddubs_at,
    prefetch,
    splat_v16i16,
    splat_v32i8,
    srl16,
    vadd,
    vand,
    zero_v8i32,
    zero_v16i16,
)

WINDOW = 8  # blocks added in int16: 4 x codes reach 8 x 2 x [-2048, 2032], inside int16


@kernel()
def _block(W, wo, X, xo, m3, m12, pa, pb):  # noqa: ANN001, ANN202
    """Add one block's products: codes x activations into pa, 4 x codes x activations into pb."""
    w = load_v32i8(W, wo)
    w4 = srl16(w, 4)
    pa = vadd(pa, maddubs_at(vand(w, m3), X, xo, 96))
    pb = vadd(pb, maddubs_at(vand(w, m12), X, xo, 64))
    pa = vadd(pa, maddubs_at(vand(w4, m3), X, xo, 32))
    pb = vadd(pb, maddubs_at(vand(w4, m12), X, xo, 0))
    return pa, pb


@kernel()
def _widen(acc, pa, pb, ones, fours):  # noqa: ANN001, ANN202
    return vadd(acc, vadd(madd(pa, fours), madd(pb, ones)))


@kernel()
def dot_rows4(W, wo, X, nblk, pf):  # noqa: ANN001, ANN201
    """sum code * x for the 4-row group at byte wo (blocks interleaved) and one token X."""
    m3 = splat_v32i8(3)
    m12 = splat_v32i8(12)
    ones = splat_v16i16(1)
    fours = splat_v16i16(4)
    a0 = zero_v8i32()
    a1 = zero_v8i32()
    a2 = zero_v8i32()
    a3 = zero_v8i32()
    b = 0
    while b < nblk:
        pa0 = zero_v16i16()
        pb0 = zero_v16i16()
        pa1 = zero_v16i16()
        pb1 = zero_v16i16()
        pa2 = zero_v16i16()
        pb2 = zero_v16i16()
        pa3 = zero_v16i16()
        pb3 = zero_v16i16()
        end = min(nblk, b + WINDOW)
        while b < end:
            o = wo + b * 128
            prefetch(W, o + pf)
            prefetch(W, o + pf + 64)
            xo = b * 128
            pa0, pb0 = _block(W, o, X, xo, m3, m12, pa0, pb0)
            pa1, pb1 = _block(W, o + 32, X, xo, m3, m12, pa1, pb1)
            pa2, pb2 = _block(W, o + 64, X, xo, m3, m12, pa2, pb2)
            pa3, pb3 = _block(W, o + 96, X, xo, m3, m12, pa3, pb3)
            b += 1
        a0 = _widen(a0, pa0, pb0, ones, fours)
        a1 = _widen(a1, pa1, pb1, ones, fours)
        a2 = _widen(a2, pa2, pb2, ones, fours)
        a3 = _widen(a3, pa3, pb3, ones, fours)
    return hsum_v8i32(a0) >> 2, hsum_v8i32(a1) >> 2, hsum_v8i32(a2) >> 2, hsum_v8i32(a3) >> 2


@kernel()
def dot_row(W, wo, X, nblk):  # noqa: ANN001, ANN201
    """sum code * x for one row in the file's order (bytes at wo): the M % 4 rows after the groups."""
    m3 = splat_v32i8(3)
    m12 = splat_v32i8(12)
    ones = splat_v16i16(1)
    fours = splat_v16i16(4)
    acc = zero_v8i32()
    b = 0
    while b < nblk:
        pa = zero_v16i16()
        pb = zero_v16i16()
        end = min(nblk, b + WINDOW)
        while b < end:
            pa, pb = _block(W, wo + b * 32, X, b * 128, m3, m12, pa, pb)
            b += 1
        acc = _widen(acc, pa, pb, ones, fours)
    return hsum_v8i32(acc) >> 2


@kernel()
def _gemv_rows(W, K, x, xsum, s, scale, y, r0, r1, pf):  # noqa: ANN001, ANN202
    """Rows [r0, r1); r0 is a multiple of 4."""
    kb = K // 4
    nblk = K // 128
    m4 = scale.shape[0] // 4 * 4
    r = r0
    while r + 4 <= min(r1, m4):
        d0, d1, d2, d3 = dot_rows4(W, r * kb, x, nblk, pf)
        y[r] = np.float32(d0 - xsum) / s * scale[r]
        y[r + 1] = np.float32(d1 - xsum) / s * scale[r + 1]
        y[r + 2] = np.float32(d2 - xsum) / s * scale[r + 2]
        y[r + 3] = np.float32(d3 - xsum) / s * scale[r + 3]
        r += 4
    while r < r1:
        y[r] = np.float32(dot_row(W, r * kb, x, nblk) - xsum) / s * scale[r]
        r += 1


@kernel(parallel=True)
def gemv_par(W, K, q, s, scale, y, nchunks, pf):  # noqa: ANN001, ANN201
    """y[0, :M] for one token q[0, :K] (scale s[0]), rows split into `nchunks` contiguous chunks
    in one parallel region. The token's arrays are passed whole: views made in Python cost more
    than the kernel on a small matrix."""
    M = scale.shape[0]
    x = q[0]
    xsum = row_sums(q)[0]
    per = ((M + nchunks - 1) // nchunks + 3) // 4 * 4  # whole 4-row groups per chunk
    for c in prange(nchunks):
        r0 = min(M, c * per)
        _gemv_rows(W, K, x, xsum, s[0], scale, y[0], r0, min(M, r0 + per), pf)


@kernel()
def gemv_serial(W, K, q, s, scale, y, pf):  # noqa: ANN001, ANN201
    _gemv_rows(W, K, q[0], row_sums(q)[0], s[0], scale, y[0], 0, scale.shape[0], pf)
