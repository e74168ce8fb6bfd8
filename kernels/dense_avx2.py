"""Dense matrix-vector kernels (embedding / LM head) for AVX2 + FMA + F16C.

Rows are read from the file's bytes as they are (F16 through vcvtph2ps, BF16 by a shift, Q8_0
decoded in registers) and multiplied with f32 activations in f32 FMA accumulators. Q6_K rows meet
the activations as int16 per 256-value block (error at most 2^-16 of the block's max): exact
integer products by vpmaddwd, scaled in f32. A prefetch `pf` bytes ahead keeps DRAM streaming. The summation order is fixed, so
results do not depend on the thread count. Only import this module on CPUs with AVX2/FMA/F16C.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ._jit import kernel
from .dense_decode import BF16, F16, F32, Q6_K, Q8_0
from .simd import (
    as_v16i16, blend_halves_v8f32, cvt_v8i32_v8f32, fadd, fmadd, fmul, hsum_v8f32, load_bf16_v8f32,
    load_f16_scalar, load_f16_v8f32, load_i8_v8f32, load_v8f32, load_v16i16, load_v32i8, madd,
    prefetch, sll16, splat_v8f32, splat_v16i16, splat_v32i8, srl16, store_v8f32, unpackhi8,
    unpacklo8, vadd, vand, vor, vsub, zero_v8f32, zero_v32i8,
)


@kernel()
def _dot_f16(W, wo, x, K, pf):  # noqa: ANN001, ANN202
    a0 = zero_v8f32()
    a1 = zero_v8f32()
    a2 = zero_v8f32()
    a3 = zero_v8f32()
    for k in range(0, K, 32):  # 64 bytes of weights: one cache line
        o = wo + 2 * k
        prefetch(W, o + pf)
        a0 = fmadd(load_f16_v8f32(W, o), load_v8f32(x, 4 * k), a0)
        a1 = fmadd(load_f16_v8f32(W, o + 16), load_v8f32(x, 4 * k + 32), a1)
        a2 = fmadd(load_f16_v8f32(W, o + 32), load_v8f32(x, 4 * k + 64), a2)
        a3 = fmadd(load_f16_v8f32(W, o + 48), load_v8f32(x, 4 * k + 96), a3)
    return hsum_v8f32(fadd(fadd(a0, a1), fadd(a2, a3)))


@kernel()
def _dot2_f16(W, wo, rb, x, K, pf):  # noqa: ANN001, ANN202
    """Rows at wo and wo + rb at once, each summed exactly as `_dot_f16` sums it (same bits);
    two rows share every x load and keep 8 FMA chains in flight."""
    a0 = zero_v8f32()
    a1 = zero_v8f32()
    a2 = zero_v8f32()
    a3 = zero_v8f32()
    b0 = zero_v8f32()
    b1 = zero_v8f32()
    b2 = zero_v8f32()
    b3 = zero_v8f32()
    for k in range(0, K, 32):
        o = wo + 2 * k
        prefetch(W, wo + pf + 4 * k)  # both rows' bytes, read as one stream 128 bytes per step
        prefetch(W, wo + pf + 4 * k + 64)
        x0 = load_v8f32(x, 4 * k)
        x1 = load_v8f32(x, 4 * k + 32)
        x2 = load_v8f32(x, 4 * k + 64)
        x3 = load_v8f32(x, 4 * k + 96)
        a0 = fmadd(load_f16_v8f32(W, o), x0, a0)
        a1 = fmadd(load_f16_v8f32(W, o + 16), x1, a1)
        a2 = fmadd(load_f16_v8f32(W, o + 32), x2, a2)
        a3 = fmadd(load_f16_v8f32(W, o + 48), x3, a3)
        b0 = fmadd(load_f16_v8f32(W, o + rb), x0, b0)
        b1 = fmadd(load_f16_v8f32(W, o + rb + 16), x1, b1)
        b2 = fmadd(load_f16_v8f32(W, o + rb + 32), x2, b2)
        b3 = fmadd(load_f16_v8f32(W, o + rb + 48), x3, b3)
    return hsum_v8f32(fadd(fadd(a0, a1), fadd(a2, a3))), hsum_v8f32(fadd(fadd(b0, b1), fadd(b2, b3)))


@kernel()
def _dot_bf16(W, wo, x, K, pf):  # noqa: ANN001, ANN202
    a0 = zero_v8f32()
    a1 = zero_v8f32()
    a2 = zero_v8f32()
    a3 = zero_v8f32()
    for k in range(0, K, 32):
        o = wo + 2 * k
        prefetch(W, o + pf)
        a0 = fmadd(load_bf16_v8f32(W, o), load_v8f32(x, 4 * k), a0)
        a1 = fmadd(load_bf16_v8f32(W, o + 16), load_v8f32(x, 4 * k + 32), a1)
        a2 = fmadd(load_bf16_v8f32(W, o + 32), load_v8f32(x, 4 * k + 64), a2)
        a3 = fmadd(load_bf16_v8f32(W, o + 48), load_v8f32(x, 4 * k + 96), a3)
    return hsum_v8f32(fadd(fadd(a0, a1), fadd(a2, a3)))


@kernel()
def _dot_f32(W, wo, x, K, pf):  # noqa: ANN001, ANN202
    a0 = zero_v8f32()
    a1 = zero_v8f32()
    a2 = zero_v8f32()
    a3 = zero_v8f32()
    for k in range(0, K, 32):  # 128 bytes: two cache lines
        o = wo + 4 * k
        prefetch(W, o + pf)
        prefetch(W, o + pf + 64)
        a0 = fmadd(load_v8f32(W, o), load_v8f32(x, 4 * k), a0)
        a1 = fmadd(load_v8f32(W, o + 32), load_v8f32(x, 4 * k + 32), a1)
        a2 = fmadd(load_v8f32(W, o + 64), load_v8f32(x, 4 * k + 64), a2)
        a3 = fmadd(load_v8f32(W, o + 96), load_v8f32(x, 4 * k + 96), a3)
    return hsum_v8f32(fadd(fadd(a0, a1), fadd(a2, a3)))


@kernel()
def _dot_q8_0(W, wo, x, K, pf):  # noqa: ANN001, ANN202
    a0 = zero_v8f32()
    a1 = zero_v8f32()
    for b in range(K // 32):  # block: f16 d, 32 x int8 (34 bytes)
        o = wo + 34 * b
        prefetch(W, o + pf)
        xo = 128 * b
        t = fmul(load_i8_v8f32(W, o + 2), load_v8f32(x, xo))
        t = fmadd(load_i8_v8f32(W, o + 10), load_v8f32(x, xo + 32), t)
        t = fmadd(load_i8_v8f32(W, o + 18), load_v8f32(x, xo + 64), t)
        t = fmadd(load_i8_v8f32(W, o + 26), load_v8f32(x, xo + 96), t)
        if b & 1:
            a1 = fmadd(splat_v8f32(load_f16_scalar(W, o)), t, a1)
        else:
            a0 = fmadd(splat_v8f32(load_f16_scalar(W, o)), t, a0)
    return hsum_v8f32(fadd(a0, a1))


@kernel()
def _dot_q6_k(W, wo, x16, dx, pf, scb):  # noqa: ANN001, ANN202
    """Q6_K row times one token given as int16 blocks (`q6_k_prepare`): x ~ x16 * dx[block].

    Per 32 values: the 6-bit codes u are rebuilt in one register, widened to int16 by unpacking
    with zero (in-lane order, which `q6_k_prepare` matches), made signed (u - 32), multiplied with
    x16 by vpmaddwd (exact int32), converted once, and scaled by d * sc * dx per 16-value
    sub-block (lanes 0-3: first sub-block, 4-7: second).
    """
    m4 = splat_v32i8(0xF)
    m3 = splat_v32i8(3)
    z = zero_v32i8()
    c32 = splat_v16i16(32)
    a0 = zero_v8f32()
    a1 = zero_v8f32()
    K = x16.shape[0]
    for b in range(K // 256):  # block: ql[128], qh[64], scales int8[16], f16 d (210 bytes)
        o = wo + 210 * b
        prefetch(W, o + pf)
        prefetch(W, o + pf + 64)
        prefetch(W, o + pf + 128)
        dv = splat_v8f32(load_f16_scalar(W, o + 208) * dx[b])
        store_v8f32(scb, 0, fmul(dv, load_i8_v8f32(W, o + 192)))
        store_v8f32(scb, 32, fmul(dv, load_i8_v8f32(W, o + 200)))
        for h in range(2):
            qa = load_v32i8(W, o + 64 * h)
            qb = load_v32i8(W, o + 64 * h + 32)
            qh = load_v32i8(W, o + 128 + 32 * h)
            for c in range(4):
                ql = qa if (c & 1) == 0 else qb
                u = vor(vand(srl16(ql, 4 * (c >> 1)), m4), sll16(vand(srl16(qh, 2 * c), m3), 4))
                xo = 2 * (256 * b + 128 * h + 32 * c)
                p = vadd(madd(vsub(as_v16i16(unpacklo8(u, z)), c32), load_v16i16(x16, xo)),
                         madd(vsub(as_v16i16(unpackhi8(u, z)), c32), load_v16i16(x16, xo + 32)))
                sv = blend_halves_v8f32(splat_v8f32(scb[8 * h + 2 * c]), splat_v8f32(scb[8 * h + 2 * c + 1]))
                if c & 1:
                    a1 = fmadd(sv, cvt_v8i32_v8f32(p), a1)
                else:
                    a0 = fmadd(sv, cvt_v8i32_v8f32(p), a0)
    return hsum_v8f32(fadd(a0, a1))


@kernel()
def q6_k_prepare(X):  # noqa: ANN001, ANN201
    """Activations for `_dot_q6_k`: per token and 256-value block, dx = max|x| / 32767 and
    x16 = round_half_even(x / dx) in int16 (error <= dx / 2, i.e. 2^-16 of the block's max),
    stored per 32 values in the order [0-7, 16-23, 8-15, 24-31] that in-lane unpacking produces."""
    n, K = X.shape
    x16 = np.zeros((n, K), np.int16)
    dx = np.zeros((n, K // 256), np.float32)
    for i in range(n):
        for b in range(K // 256):
            amax = np.float32(0.0)
            for k in range(256 * b, 256 * b + 256):
                amax = max(amax, abs(X[i, k]))
            if amax == 0:
                continue
            d = amax / np.float32(32767.0)
            dx[i, b] = d
            for k in range(256 * b, 256 * b + 256):
                j = k % 32
                dst = k - j + (j % 8) + 8 * ((j // 8) % 2) * 2 + 8 * (j // 16)
                v = np.rint(X[i, k] / d)
                x16[i, dst] = np.int16(min(max(v, np.float32(-32767.0)), np.float32(32767.0)))
    return x16, dx


@kernel()
def _dot(W, kind, wo, x, x16, dx, pf, scb):  # noqa: ANN001, ANN202
    """One row (bytes at wo) times one token (x f32[K]; for Q6_K its int16 form x16, dx)."""
    K = x.shape[0]
    if kind == F16:
        return _dot_f16(W, wo, x, K, pf)
    if kind == BF16:
        return _dot_bf16(W, wo, x, K, pf)
    if kind == F32:
        return _dot_f32(W, wo, x, K, pf)
    if kind == Q8_0:
        return _dot_q8_0(W, wo, x, K, pf)
    return _dot_q6_k(W, wo, x16, dx, pf, scb)


@kernel()
def _gemm_rows(W, kind, X, X16, DX, Y, r0, r1, tok_block, pf):  # noqa: ANN001, ANN202
    # Row-outer, token-inner within a token block: the row stays in L1 while the tokens read it,
    # and each output is the one-token dot, so results do not depend on the batch.
    n = X.shape[0]
    rb = W.shape[1]
    flat = W.reshape(-1)  # byte offsets below are from the start of the matrix
    scb = np.empty(16, np.float32)
    for t0 in range(0, n, tok_block):
        r = r0
        if kind == F16:  # two rows per pass (same per-row sums as one at a time)
            while r + 2 <= r1:
                for i in range(t0, min(n, t0 + tok_block)):
                    Y[i, r], Y[i, r + 1] = _dot2_f16(flat, r * rb, rb, X[i], X.shape[1], pf)
                r += 2
        while r < r1:
            for i in range(t0, min(n, t0 + tok_block)):
                Y[i, r] = _dot(flat, kind, r * rb, X[i], X16[i], DX[i], pf, scb)
            r += 1


@kernel(parallel=True)
def linear_par(W, kind, X, X16, DX, Y, nchunks, tok_block, pf):  # noqa: ANN001, ANN201
    """Y[n, M] = X[n, K] W[M, K]^T (W as bytes [M, row_bytes]) over row chunks, one region."""
    M = W.shape[0]
    per = (M + nchunks - 1) // nchunks
    for c in prange(nchunks):
        r0 = min(M, c * per)
        _gemm_rows(W, kind, X, X16, DX, Y, r0, min(M, r0 + per), tok_block, pf)


@kernel()
def linear_serial(W, kind, X, X16, DX, Y, tok_block, pf):  # noqa: ANN001, ANN201
    _gemm_rows(W, kind, X, X16, DX, Y, 0, W.shape[0], tok_block, pf)


def int16_activations(kind: int, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(X16, DX) for `linear_*`: Q6_K's int16 blocks, else empty stand-ins (one per token)."""
    if kind == Q6_K:
        return q6_k_prepare(X)
    n = X.shape[0]
    return np.zeros((n, 0), np.int16), np.zeros((n, 0), np.float32)
