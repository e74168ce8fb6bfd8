"""Dense matrix-vector kernels (embedding / LM head) for AVX2 + FMA + F16C.

Rows are read from the file's bytes as they are (F16 through vcvtph2ps, BF16 by a shift, Q8_0 and
Q6_K decoded in registers) and multiplied with f32 activations in f32 FMA accumulators; a
prefetch `pf` bytes ahead keeps the stream from DRAM going. The summation order is fixed, so
results do not depend on the thread count. Only import this module on CPUs with AVX2/FMA/F16C.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ._jit import kernel
from .dense_decode import BF16, F16, F32, Q8_0
from .simd import (
    as_v8f32, as_v8i32, blend_halves_v8f32, fsub, splat_v8i32, srl32,
    as_v32i8, cvt_i8_part0, cvt_i8_part1, cvt_i8_part2, cvt_i8_part3, fadd, fmadd, fmul, hsum_v8f32, load_bf16_v8f32, load_f16_scalar, load_f16_v8f32,
    load_i8_v8f32, load_v8f32, load_v32i8, prefetch, sll16, splat_v8f32, splat_v32i8, srl16,
    store_v8f32, store_v32i8, vand, vor, vsub, zero_v8f32,
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
def _dot_q6_k(W, wo, xp, K, pf, scb):  # noqa: ANN001, ANN202
    """Q6_K row times x, with x permuted by `q6_k_permute` (xp[32c + 8j + i] = x[32c + 4i + j]).

    The 6-bit codes u (0..63) of 32 values are rebuilt in one register; read as 8 dwords, byte j
    of every dword is value 4i + j, so (dword >> 8j) & 0xFF | 0x4B000000 is the f32 2^23 + u, and
    subtracting 2^23 + 32 gives q exactly: no shuffles, no int->float conversions. The 16 sub-block
    scales d * sc are computed as two vectors per block and staged through scb.
    """
    m4 = splat_v32i8(0xF)
    m3 = splat_v32i8(3)
    mff = splat_v8i32(0xFF)
    magic = splat_v8i32(0x4B000000)
    bias = splat_v8f32(np.float32(8388640.0))  # 2^23 + 32
    a0 = zero_v8f32()
    a1 = zero_v8f32()
    for b in range(K // 256):  # block: ql[128], qh[64], scales int8[16], f16 d (210 bytes)
        o = wo + 210 * b
        prefetch(W, o + pf)
        prefetch(W, o + pf + 64)
        prefetch(W, o + pf + 128)
        dv = splat_v8f32(load_f16_scalar(W, o + 208))
        store_v8f32(scb, 0, fmul(dv, load_i8_v8f32(W, o + 192)))
        store_v8f32(scb, 32, fmul(dv, load_i8_v8f32(W, o + 200)))
        for h in range(2):
            qa = load_v32i8(W, o + 64 * h)
            qb = load_v32i8(W, o + 64 * h + 32)
            qh = load_v32i8(W, o + 128 + 32 * h)
            for c in range(4):
                ql = qa if (c & 1) == 0 else qb
                u = as_v8i32(vor(vand(srl16(ql, 4 * (c >> 1)), m4), sll16(vand(srl16(qh, 2 * c), m3), 4)))
                xo = 4 * (256 * b + 128 * h + 32 * c)
                f0 = fsub(as_v8f32(vor(vand(u, mff), magic)), bias)
                f1 = fsub(as_v8f32(vor(vand(srl32(u, 8), mff), magic)), bias)
                f2 = fsub(as_v8f32(vor(vand(srl32(u, 16), mff), magic)), bias)
                f3 = fsub(as_v8f32(vor(srl32(u, 24), magic)), bias)
                t = fmadd(f1, load_v8f32(xp, xo + 32), fmul(f0, load_v8f32(xp, xo)))
                t = fmadd(f3, load_v8f32(xp, xo + 96), fmadd(f2, load_v8f32(xp, xo + 64), t))
                sv = blend_halves_v8f32(splat_v8f32(scb[8 * h + 2 * c]), splat_v8f32(scb[8 * h + 2 * c + 1]))
                if c & 1:
                    a1 = fmadd(sv, t, a1)
                else:
                    a0 = fmadd(sv, t, a0)
    return hsum_v8f32(fadd(a0, a1))


def q6_k_permute(x: np.ndarray) -> np.ndarray:
    """x[n, K] -> the order `_dot_q6_k` reads: within each 32 values, value 4i + j at 8j + i."""
    n, K = x.shape
    return np.ascontiguousarray(x.reshape(n, K // 32, 8, 4).transpose(0, 1, 3, 2).reshape(n, K))


@kernel()
def _dot(W, kind, wo, x, pf, qbuf):  # noqa: ANN001, ANN202
    """One row (bytes at wo) times x[K]; the same order for one token and for many."""
    K = x.shape[0]
    if kind == F16:
        return _dot_f16(W, wo, x, K, pf)
    if kind == BF16:
        return _dot_bf16(W, wo, x, K, pf)
    if kind == F32:
        return _dot_f32(W, wo, x, K, pf)
    if kind == Q8_0:
        return _dot_q8_0(W, wo, x, K, pf)
    return _dot_q6_k(W, wo, x, K, pf, qbuf)


@kernel()
def _gemv_rows(W, kind, x, y, r0, r1, pf):  # noqa: ANN001, ANN202
    rb = W.shape[1]
    flat = W.reshape(-1)  # byte offsets below are from the start of the matrix
    qbuf = np.empty(16, np.float32)
    for r in range(r0, r1):
        y[r] = _dot(flat, kind, r * rb, x, pf, qbuf)


@kernel(parallel=True)
def gemv_par(W, kind, x, y, nchunks, pf):  # noqa: ANN001, ANN201
    """y[M] = W[M, K] x[K] (W as bytes [M, row_bytes]) over row chunks in one parallel region."""
    M = W.shape[0]
    per = (M + nchunks - 1) // nchunks
    for c in prange(nchunks):
        r0 = min(M, c * per)
        _gemv_rows(W, kind, x, y, r0, min(M, r0 + per), pf)


@kernel()
def gemv_serial(W, kind, x, y, pf):  # noqa: ANN001, ANN201
    _gemv_rows(W, kind, x, y, 0, W.shape[0], pf)


@kernel()
def _gemm_rows(W, kind, X, Y, r0, r1, tok_block):  # noqa: ANN001, ANN202
    # Row-outer, token-inner: the row stays in L1 while every token reads it, and each output
    # is the exact one-token dot, so logits do not depend on how many tokens share the call.
    n = X.shape[0]
    rb = W.shape[1]
    flat = W.reshape(-1)
    qbuf = np.empty(16, np.float32)
    for t0 in range(0, n, tok_block):
        for r in range(r0, r1):
            for i in range(t0, min(n, t0 + tok_block)):
                Y[i, r] = _dot(flat, kind, r * rb, X[i], 0, qbuf)


@kernel(parallel=True)
def gemm_par(W, kind, X, Y, nchunks, tok_block):  # noqa: ANN001, ANN201
    """Y[n, M] = X[n, K] W[M, K]^T over row chunks in one parallel region."""
    M = W.shape[0]
    per = (M + nchunks - 1) // nchunks
    for c in prange(nchunks):
        r0 = min(M, c * per)
        _gemm_rows(W, kind, X, Y, r0, min(M, r0 + per), tok_block)


@kernel()
def gemm_serial(W, kind, X, Y, tok_block):  # noqa: ANN001, ANN201
    _gemm_rows(W, kind, X, Y, 0, W.shape[0], tok_block)
