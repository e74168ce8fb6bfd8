"""Portable I2_S kernels in plain Numba (any CPU): the "w16" runtime layout.

w16: each 128-value block becomes 16 uint16 words; word j holds code (t + 1) of value t*16 + j of
the block in bits 2t..2t+1, t = 0..7. Activations are permuted once per token into 8 int16
planes xp[t, b*16 + j] = q[b*128 + t*16 + j]. The inner loop is then shifts, masks and an int32
reduction of 16-bit products, which LLVM turns into vpmaddwd (or the target's equivalent) without
intrinsics. y = (D - sum q) / s * scale, as the reference.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ._jit import kernel
from .i2s_common import row_sums


@kernel(parallel=True)
def repack_w16(raw, M, K):  # noqa: ANN001, ANN201
    """uint16[M, K/8] w16 words from canonical I2_S bytes (code 3, never written, reads as 1)."""
    out = np.empty((M, K // 8), np.uint16)
    kb = K // 4
    for r in prange(M):
        for b in range(K // 128):
            base = r * kb + b * 32
            for j in range(16):
                word = 0
                for t in range(8):
                    k = t * 16 + j  # value index inside the block
                    code = (np.int64(raw[base + k % 32]) >> (6 - 2 * (k // 32))) & 3
                    word |= (1 if code == 3 else code) << (2 * t)
                out[r, b * 16 + j] = word
    return out


@kernel()
def activation_planes(X):  # noqa: ANN001, ANN201
    """int16[n, 8, K/8] planes of int8 X[n, K] in w16 order."""
    n, K = X.shape
    xp = np.empty((n, 8, K // 8), np.int16)
    for i in range(n):
        for b in range(K // 128):
            for t in range(8):
                for j in range(16):
                    xp[i, t, b * 16 + j] = X[i, b * 128 + t * 16 + j]
    return xp


@kernel()
def dot_w16(w, xp):  # noqa: ANN001, ANN201
    """sum of code * x over one w16 row w[K/8] and one token's planes xp[8, K/8]."""
    x0, x1, x2, x3 = xp[0], xp[1], xp[2], xp[3]
    x4, x5, x6, x7 = xp[4], xp[5], xp[6], xp[7]
    acc = np.int32(0)
    for i in range(w.shape[0]):
        p = np.int32(w[i])
        # Each product fits 16 bits, so LLVM narrows the lanes to vpmaddwd.
        acc = np.int32(
            acc + np.int32(p & 3) * np.int32(x0[i]) + np.int32((p >> 2) & 3) * np.int32(x1[i])
            + np.int32((p >> 4) & 3) * np.int32(x2[i]) + np.int32((p >> 6) & 3) * np.int32(x3[i])
            + np.int32((p >> 8) & 3) * np.int32(x4[i]) + np.int32((p >> 10) & 3) * np.int32(x5[i])
            + np.int32((p >> 12) & 3) * np.int32(x6[i]) + np.int32((p >> 14) & 3) * np.int32(x7[i])
        )
    return acc


@kernel()
def _rows_w16(W16, xp, xsum, s, scale, Y, r0, r1):  # noqa: ANN001, ANN202
    n = xp.shape[0]
    for r in range(r0, r1):
        w = W16[r]
        for i in range(n):
            Y[i, r] = np.float32(dot_w16(w, xp[i]) - xsum[i]) / s[i] * scale[r]


@kernel(parallel=True)
def linear_w16_par(W16, X, s, scale, Y, nchunks):  # noqa: ANN001, ANN201
    """Y[n, M] = ternary linear over row chunks in one parallel region."""
    M = W16.shape[0]
    xsum = row_sums(X)
    xp = activation_planes(X)
    per = (M + nchunks - 1) // nchunks
    for c in prange(nchunks):
        r0 = min(M, c * per)
        _rows_w16(W16, xp, xsum, s, scale, Y, r0, min(M, r0 + per))


@kernel()
def linear_w16_serial(W16, X, s, scale, Y):  # noqa: ANN001, ANN201
    xsum = row_sums(X)
    _rows_w16(W16, activation_planes(X), xsum, s, scale, Y, 0, W16.shape[0])
