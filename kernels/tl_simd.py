"""AVX2 pshufb kernels for TL1 and TL2, reading bitnet.cpp's bytes in place.

Per activation pair (TL1, TL2's two part) or triplet (TL2) the runtime builds a 16-entry int16
table stored as two 16-byte planes (low bytes, high bytes). One `vpshufb` per plane looks up 32
nibbles at once and `vpunpck{l,h}bw` rebuilds the exact int16 values; TL2 applies its sign bits
with `vpsignw` (3 ops per 16 rows where bitnet.cpp spends 5). Sums stay in int16 within a
K-block (exact: BK <= 256) and go to int32 per block. Compile only on CPUs with AVX2
(`_jit.kernel_isa`); importing is safe anywhere.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import prange
from numba.core import types
from numba.extending import intrinsic

from ._jit import kernel
from .tl_common import emit_rows
from .simd import (
    as_v16i16,
    as_v32i8,
    load_bcast128,
    load_v16i16,
    load_v32i8,
    prefetch,
    shuffle_bytes,
    sign16,
    sll16,
    splat_v16i16,
    splat_v32i8,
    srl16,
    store_v32i8,
    unpackhi8,
    unpacklo8,
    v16i16,
    v32i8,
    vadd,
    vand,
    vor,
    zero_v16i16,
)

__all__ = ["build_lut_tl1", "build_lut_tl2", "tl1_avx2", "tl1_avx2_serial", "tl2_avx2", "tl2_avx2_serial", "tl2_avx2_stack",
           "tl2_avx2_stack_serial"]

_I8 = ir.IntType(8)


def _ptr(context, builder, arrty, arr, off):  # noqa: ANN001, ANN202
    a = context.make_array(arrty)(context, builder, arr)
    return builder.gep(builder.bitcast(a.data, _I8.as_pointer()), [off])


def _make_acc_i32(high: bool):  # noqa: ANN202
    @intrinsic
    def acc(typingctx, arr, off, v):  # noqa: ANN001, ANN202
        """arr[8 int32 at byte off] += sign-extended int16 lanes 0-7 (or 8-15) of v (vpmovsxwd)."""
        if not isinstance(arr, types.Array) or v != v16i16:
            return None

        def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
            t32 = ir.VectorType(ir.IntType(32), 8)
            half = builder.shuffle_vector(args[2], ir.Constant(args[2].type, ir.Undefined),
                                          ir.Constant(ir.VectorType(ir.IntType(32), 8), [i + (8 if high else 0) for i in range(8)]))
            p = builder.bitcast(_ptr(context, builder, sig.args[0], args[0], args[1]), t32.as_pointer())
            builder.store(builder.add(builder.load(p, align=1), builder.sext(half, t32)), p, align=1)
            return context.get_dummy_value()

        return types.none(arr, off, v), codegen

    return acc


acc_lo_i32 = _make_acc_i32(False)
acc_hi_i32 = _make_acc_i32(True)


# ---- per-token tables -------------------------------------------------------------------------

def _digit_planes() -> tuple[np.ndarray, ...]:
    e = np.arange(16)
    u = e + 13  # = 9*(d0+1) + 3*(d1+1) + (d2+1) for magnitude e
    three = [np.where(e < 14, d, 0).astype(np.int32) for d in (u // 9 - 1, u // 3 % 3 - 1, u % 3 - 1)]
    two = [np.where(e < 9, d, 0).astype(np.int32) for d in (e // 3 - 1, e % 3 - 1)]
    return (*three, *two)


_P0, _P1 = _digit_planes()[3:]  # int32[16]: pair digits of every table entry (grouped tables)
_DIGITS16 = np.stack(_digit_planes()).astype(np.int16)  # [5, 16]: the same as int16 lanes
# vpshufb mask: in each 128-bit lane, the 8 low bytes of the int16 entries, then the 8 high bytes
_SPLIT = np.array([2 * i for i in range(8)] + [2 * i + 1 for i in range(8)], np.uint8)
_SPLIT = np.concatenate([_SPLIT, _SPLIT])


@intrinsic
def permq_0213(typingctx, a):  # noqa: ANN001, ANN202
    """Swap the middle two 64-bit quarters (vpermq 0xD8): [l0 h0 | l1 h1] -> [l0 l1 | h0 h1]."""
    if a != v32i8:
        return None

    def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
        t64 = ir.VectorType(ir.IntType(64), 4)
        v = builder.bitcast(args[0], t64)
        v = builder.shuffle_vector(v, ir.Constant(t64, ir.Undefined), ir.Constant(ir.VectorType(ir.IntType(32), 4), [0, 2, 1, 3]))
        return builder.bitcast(v, ir.VectorType(_I8, 32))

    return v32i8(a), codegen


@kernel()
def _planes(v, split):  # noqa: ANN001, ANN202
    """16 int16 table entries -> [16 low bytes | 16 high bytes]."""
    return permq_0213(shuffle_bytes(as_v32i8(v), split))


@kernel()
def _triplet_tables_simd(q, three_k, lut, digits, split):  # noqa: ANN001, ANN202
    """lut[j, c] for every triplet c < three_k/3: entry e = d0*q0 + d1*q1 + d2*q2 via vpsignw
    (digits are -1/0/1), split into byte planes with one vpshufb + vpermq."""
    n, E = lut.shape[0], lut.shape[1]
    d0, d1, d2 = load_v16i16(digits, 0), load_v16i16(digits, 32), load_v16i16(digits, 64)
    m = load_v32i8(split, 0)
    for j in range(n):
        for c in range(three_k // 3):
            v = vadd(vadd(sign16(splat_v16i16(q[j, 3 * c]), d0), sign16(splat_v16i16(q[j, 3 * c + 1]), d1)),
                     sign16(splat_v16i16(q[j, 3 * c + 2]), d2))
            store_v32i8(lut, (j * E + c) * 32, _planes(v, m))


@kernel()
def _pair_tables_simd(q, k0, k1, lut, e0, digits, split):  # noqa: ANN001, ANN202
    """Plain-layout pair tables for columns [k0, k1) into lut[:, e0:, :] (see `_pair_tables`)."""
    n, E = lut.shape[0], lut.shape[1]
    d0, d1 = load_v16i16(digits, 96), load_v16i16(digits, 128)
    m = load_v32i8(split, 0)
    for j in range(n):
        for p in range((k1 - k0) // 2):
            v = vadd(sign16(splat_v16i16(q[j, k0 + 2 * p]), d0), sign16(splat_v16i16(q[j, k0 + 2 * p + 1]), d1))
            store_v32i8(lut, (j * E + e0 + p) * 32, _planes(v, m))


@kernel()
def _pair_tables(q, k0, k1, flat, off0, grouped):  # noqa: ANN001, ANN202
    """Pair tables for columns [k0, k1) of q into flat[n, bytes] from byte off0: entry
    idx = d0*q0 + d1*q1, as a 16-byte low-byte plane and a 16-byte high-byte plane.

    Plain: pair p at p*32 (plane*16 + e). Grouped (TL1 bm 32): pairs 4m + 2w + h at
    m*128 + h*64 + plane*32 + w*16 + e, so one 32-byte load gives pair 4m+h in the low lane and
    4m+2+h in the high lane, matching the two 16-row slots of a weight load.
    """
    for j in range(q.shape[0]):
        for p in range((k1 - k0) // 2):
            x0, x1 = np.int32(q[j, k0 + 2 * p]), np.int32(q[j, k0 + 2 * p + 1])
            o = off0 + ((p // 4) * 128 + (p % 2) * 64 + (p // 2 % 2) * 16 if grouped else p * 32)
            step = 32 if grouped else 16  # bytes from the low-byte plane to the high-byte plane
            for i in range(16):
                v = _P0[i] * x0 + _P1[i] * x1
                flat[j, o + i] = np.uint8(v & 0xFF)
                flat[j, o + step + i] = np.uint8((v >> 8) & 0xFF)


@kernel()
def build_lut_tl1(q, grouped):  # noqa: ANN001, ANN201
    """TL1 tables: uint8[n, K/2, 32] (plain, for bm 64) or uint8[n, K/8, 128] (grouped, bm 32)."""
    n, K = q.shape
    if not grouped:
        lut = np.empty((n, K // 2, 32), np.uint8)
        _pair_tables_simd(q, 0, K, lut, 0, _DIGITS16, _SPLIT)
        return lut
    lut = np.empty((n, K * 16), np.uint8)
    _pair_tables(q, 0, K, lut, 0, grouped)
    return lut.reshape((n, K // 8, 128))


@kernel()
def build_lut_tl2(q, three_k):  # noqa: ANN001, ANN201
    """uint8[n, three_k/3 + two_k/2, 32]: triplet tables (entries 0..13) then pair tables."""
    n, K = q.shape
    lut = np.empty((n, three_k // 3 + (K - three_k) // 2, 32), np.uint8)
    _triplet_tables_simd(q, three_k, lut, _DIGITS16, _SPLIT)
    _pair_tables_simd(q, three_k, K, lut, three_k // 3, _DIGITS16, _SPLIT)
    return lut


# ---- TL2 ------------------------------------------------------------------------------------

@kernel()
def _tl2_three_block(wb, lut, ib, sb, lb, KK, cbuf, co):  # noqa: ANN001, ANN202
    """cbuf[32 rows at byte co] += one 32-row x BK block: index bytes at ib, sign words at sb,
    triplet tables from byte lb of lut.

    Sign k (k = 0..15) of a 16-bit lane is bit 15 - k; `vpsignw(v, y)` negates v where y < 0, so
    y = (word | 1) << k carries it in bit 15 and is never 0 (the OR keeps a set bit), except for
    k = 15 whose sign *is* bit 0: that one uses (word << 15) | 1.
    """
    m4 = splat_v32i8(15)
    one = splat_v16i16(1)
    c0 = zero_v16i16()  # rows 0-15
    c1 = zero_v16i16()  # rows 16-31
    for g in range(KK // 8):
        x = as_v16i16(load_v32i8(wb, sb + g * 32))  # bit 15 - k of lane L: row (k%2)*16 + L
        y = vor(x, one)
        for h in range(4):
            w = load_v32i8(wb, ib + (4 * g + h) * 32)
            hi = vand(srl16(w, 4), m4)
            lo = vand(w, m4)
            to = lb + (4 * g + h) * 64
            a0 = shuffle_bytes(load_bcast128(lut, to), hi)
            a1 = shuffle_bytes(load_bcast128(lut, to + 16), hi)
            b0 = shuffle_bytes(load_bcast128(lut, to + 32), lo)
            b1 = shuffle_bytes(load_bcast128(lut, to + 48), lo)
            c0 = vadd(c0, sign16(as_v16i16(unpacklo8(a0, a1)), y))
            y = vadd(y, y)
            c1 = vadd(c1, sign16(as_v16i16(unpackhi8(a0, a1)), y))
            y = vadd(y, y)
            c0 = vadd(c0, sign16(as_v16i16(unpacklo8(b0, b1)), y))
            y = vadd(y, y)
            if h == 3:
                y = vor(sll16(x, 15), one)
            c1 = vadd(c1, sign16(as_v16i16(unpackhi8(b0, b1)), y))
            y = vadd(y, y)
    acc_lo_i32(cbuf, co, c0)
    acc_hi_i32(cbuf, co + 32, c0)
    acc_lo_i32(cbuf, co + 64, c1)
    acc_hi_i32(cbuf, co + 96, c1)


@kernel()
def _lookup16(lut, to, hi, lo):  # noqa: ANN001, ANN202
    """int16 table values for both nibbles of a chunk: (high-nibble rows 0-15, 16-31,
    low-nibble rows 0-15, 16-31), from the two tables at byte `to` of lut."""
    a0 = shuffle_bytes(load_bcast128(lut, to), hi)
    a1 = shuffle_bytes(load_bcast128(lut, to + 16), hi)
    b0 = shuffle_bytes(load_bcast128(lut, to + 32), lo)
    b1 = shuffle_bytes(load_bcast128(lut, to + 48), lo)
    return (as_v16i16(unpacklo8(a0, a1)), as_v16i16(unpackhi8(a0, a1)),
            as_v16i16(unpacklo8(b0, b1)), as_v16i16(unpackhi8(b0, b1)))


@kernel()
def _tl2_three_block2(wb, lut, ib, sb, lb0, lb1, KK, cbuf, co0, co1):  # noqa: ANN001, ANN202
    """`_tl2_three_block` for two tokens at once: nibbles and sign operands are shared."""
    m4 = splat_v32i8(15)
    one = splat_v16i16(1)
    c0, c1, d0, d1 = zero_v16i16(), zero_v16i16(), zero_v16i16(), zero_v16i16()
    for g in range(KK // 8):
        x = as_v16i16(load_v32i8(wb, sb + g * 32))
        y0 = vor(x, one)
        for h in range(4):
            w = load_v32i8(wb, ib + (4 * g + h) * 32)
            hi = vand(srl16(w, 4), m4)
            lo = vand(w, m4)
            y1 = vadd(y0, y0)
            y2 = vadd(y1, y1)
            y3 = vor(sll16(x, 15), one) if h == 3 else vadd(y2, y2)
            to = (4 * g + h) * 64
            u0, u1, u2, u3 = _lookup16(lut, lb0 + to, hi, lo)
            c0 = vadd(c0, vadd(sign16(u0, y0), sign16(u2, y2)))
            c1 = vadd(c1, vadd(sign16(u1, y1), sign16(u3, y3)))
            u0, u1, u2, u3 = _lookup16(lut, lb1 + to, hi, lo)
            d0 = vadd(d0, vadd(sign16(u0, y0), sign16(u2, y2)))
            d1 = vadd(d1, vadd(sign16(u1, y1), sign16(u3, y3)))
            y0 = vadd(y3, y3)
    acc_lo_i32(cbuf, co0, c0)
    acc_hi_i32(cbuf, co0 + 32, c0)
    acc_lo_i32(cbuf, co0 + 64, c1)
    acc_hi_i32(cbuf, co0 + 96, c1)
    acc_lo_i32(cbuf, co1, d0)
    acc_hi_i32(cbuf, co1 + 32, d0)
    acc_lo_i32(cbuf, co1 + 64, d1)
    acc_hi_i32(cbuf, co1 + 96, d1)


@kernel()
def _tl2_two_block(wb, lut, base, lb, cbuf, co):  # noqa: ANN001, ANN202
    """cbuf[32 rows at byte co] += one 32-row x 32-column tile of the two part (pair indices)."""
    m4 = splat_v32i8(15)
    c0 = zero_v16i16()
    c1 = zero_v16i16()
    for qq in range(8):
        w = load_v32i8(wb, base + qq * 32)
        hi = vand(srl16(w, 4), m4)
        lo = vand(w, m4)
        to = lb + qq * 64
        a0 = shuffle_bytes(load_bcast128(lut, to), hi)
        a1 = shuffle_bytes(load_bcast128(lut, to + 16), hi)
        b0 = shuffle_bytes(load_bcast128(lut, to + 32), lo)
        b1 = shuffle_bytes(load_bcast128(lut, to + 48), lo)
        c0 = vadd(c0, vadd(as_v16i16(unpacklo8(a0, a1)), as_v16i16(unpacklo8(b0, b1))))
        c1 = vadd(c1, vadd(as_v16i16(unpackhi8(a0, a1)), as_v16i16(unpackhi8(b0, b1))))
    acc_lo_i32(cbuf, co, c0)
    acc_hi_i32(cbuf, co + 32, c0)
    acc_lo_i32(cbuf, co + 64, c1)
    acc_hi_i32(cbuf, co + 96, c1)


@kernel()
def _tl2_tile(wb, lut, a, M, K, BM, BK, cbuf, pf):  # noqa: ANN001, ANN202
    """cbuf[n, BM] = Σ t·q for row tile a (int32)."""
    n, E = lut.shape[0], lut.shape[1]
    two_k = K % BK
    three_k = K - two_k
    S, NB, KK = BM // 32, three_k // BK, BK // 3
    sign_base = M * three_k // 6
    two_base = sign_base + M * three_k // 24
    for b in range(NB):
        for s in range(S):
            chunk = (a * NB + b) * S + s
            ib, sb = chunk * (KK // 2 * 32), sign_base + chunk * (KK // 8 * 32)
            for x in range(0, KK // 2 * 32, 64):
                prefetch(wb, ib + x + pf)
            for x in range(0, KK // 8 * 32, 64):
                prefetch(wb, sb + x + pf // 4)
            for j in range(0, n - 1, 2):  # token pairs share the weight decode
                _tl2_three_block2(wb, lut, ib, sb, (j * E + b * KK) * 32, ((j + 1) * E + b * KK) * 32, KK, cbuf,
                                  (j * BM + s * 32) * 4, ((j + 1) * BM + s * 32) * 4)
            if n % 2:
                j = n - 1
                _tl2_three_block(wb, lut, ib, sb, (j * E + b * KK) * 32, KK, cbuf, (j * BM + s * 32) * 4)
    for b in range(two_k // 32):
        for s in range(S):
            base = two_base + ((a * (two_k // 32) + b) * S + s) * 256
            for j in range(n):
                _tl2_two_block(wb, lut, base, (j * E + three_k // 3 + b * 16) * 32, cbuf, (j * BM + s * 32) * 4)


@kernel(parallel=True)
def tl2_avx2(wb, lut, M, K, BM, BK, out_i, out_f, s, scale, pf):  # noqa: ANN001, ANN201
    """Σ_k t·q from TL2 bytes wb and `build_lut_tl2` tables into out_i[n, M] (int32), or, when
    out_i has no rows, rescaled into out_f[n, M] (see `emit_rows`); row tiles in parallel."""
    n = lut.shape[0]
    for a in prange(M // BM):
        cbuf = np.zeros((n, BM), np.int32)
        _tl2_tile(wb, lut, a, M, K, BM, BK, cbuf, pf)
        emit_rows(cbuf, a, out_i, out_f, s, scale)


@kernel()
def tl2_avx2_serial(wb, lut, M, K, BM, BK, out_i, out_f, s, scale, pf):  # noqa: ANN001, ANN201
    """`tl2_avx2` without a parallel region (one thread: no launch, no barrier)."""
    cbuf = np.empty((lut.shape[0], BM), np.int32)
    for a in range(M // BM):
        cbuf[:] = 0
        _tl2_tile(wb, lut, a, M, K, BM, BK, cbuf, pf)
        emit_rows(cbuf, a, out_i, out_f, s, scale)


@kernel()
def _tl2_stack_tile(data, offsets, Ms, BMs, row0s, tiles, t, lut, K, BK, out_f, s, scales, pf):  # noqa: ANN001, ANN202
    """Row tile t of a stack: part p = tiles[t, 0], its tile a = tiles[t, 1], rescaled into
    out_f's columns from row0s[p]."""
    p, a = tiles[t, 0], tiles[t, 1]
    BM = BMs[p]
    cbuf = np.zeros((lut.shape[0], BM), np.int32)
    _tl2_tile(data[offsets[p] : offsets[p + 1]], lut, a, Ms[p], K, BM, BK, cbuf, pf)
    c0, sc = row0s[p] + a * BM, scales[p]
    for j in range(lut.shape[0]):
        sj = s[j]
        for r in range(BM):
            out_f[j, c0 + r] = np.float32(np.float32(cbuf[j, r]) / sj) * sc


@kernel(parallel=True)
def tl2_avx2_stack(data, offsets, Ms, BMs, row0s, tiles, lut, K, BK, out_f, s, scales, pf):  # noqa: ANN001, ANN201
    """Several TL2 weights sharing K and BK (Q, K, V) in one parallel region over all row tiles."""
    for t in prange(tiles.shape[0]):
        _tl2_stack_tile(data, offsets, Ms, BMs, row0s, tiles, t, lut, K, BK, out_f, s, scales, pf)


@kernel()
def tl2_avx2_stack_serial(data, offsets, Ms, BMs, row0s, tiles, lut, K, BK, out_f, s, scales, pf):  # noqa: ANN001, ANN201
    for t in range(tiles.shape[0]):
        _tl2_stack_tile(data, offsets, Ms, BMs, row0s, tiles, t, lut, K, BK, out_f, s, scales, pf)


# ---- TL1 ------------------------------------------------------------------------------------

@kernel()
def _pair_vals(w, m4, ta0, ta1, tb0, tb1):  # noqa: ANN001, ANN202
    """Table values of both nibbles of 32 index bytes, summed as int16: rows 0-7 and 8-15 of the
    16-row slot in each 128-bit lane. ta*/tb*: low/high-byte planes for high/low nibbles."""
    h = vand(srl16(w, 4), m4)
    low = vand(w, m4)
    a0, a1 = shuffle_bytes(ta0, h), shuffle_bytes(ta1, h)
    b0, b1 = shuffle_bytes(tb0, low), shuffle_bytes(tb1, low)
    return (vadd(as_v16i16(unpacklo8(a0, a1)), as_v16i16(unpacklo8(b0, b1))),
            vadd(as_v16i16(unpackhi8(a0, a1)), as_v16i16(unpackhi8(b0, b1))))


@kernel()
def _tl1_block(wb, base, lut, lb, T, bm, cbuf, co):  # noqa: ANN001, ANN202
    """cbuf[bm rows at byte co] += one bm-row x BK block at byte `base` of wb.

    A step t is 64 bytes = four 16-row x 2-pair slots; each 32-byte load holds two. bm 32: the
    two lanes are the same rows, pairs 2 apart (grouped tables, plain loads); bm 64: the same
    pairs, rows 16 apart (plain tables, broadcast loads).
    """
    m4 = splat_v32i8(15)
    lo0, hi0, lo1, hi1 = zero_v16i16(), zero_v16i16(), zero_v16i16(), zero_v16i16()
    for t in range(T):
        if bm == 32:
            p0 = lb + t * 128
            ta0, ta1 = load_v32i8(lut, p0), load_v32i8(lut, p0 + 32)
            tb0, tb1 = load_v32i8(lut, p0 + 64), load_v32i8(lut, p0 + 96)
        else:
            p0 = lb + t * 64
            ta0, ta1 = load_bcast128(lut, p0), load_bcast128(lut, p0 + 16)
            tb0, tb1 = load_bcast128(lut, p0 + 32), load_bcast128(lut, p0 + 48)
        lo, hi = _pair_vals(load_v32i8(wb, base + t * 64), m4, ta0, ta1, tb0, tb1)
        lo0, hi0 = vadd(lo0, lo), vadd(hi0, hi)
        lo, hi = _pair_vals(load_v32i8(wb, base + t * 64 + 32), m4, ta0, ta1, tb0, tb1)
        lo1, hi1 = vadd(lo1, lo), vadd(hi1, hi)
    # byte offsets in cbuf of each lane's rows, for the first and the second load
    ro1, r2 = (0, 64) if bm == 32 else (64, 128)
    acc_lo_i32(cbuf, co, lo0)
    acc_hi_i32(cbuf, co + ro1, lo0)
    acc_lo_i32(cbuf, co + 32, hi0)
    acc_hi_i32(cbuf, co + ro1 + 32, hi0)
    acc_lo_i32(cbuf, co + r2, lo1)
    acc_hi_i32(cbuf, co + ro1 + r2, lo1)
    acc_lo_i32(cbuf, co + r2 + 32, hi1)
    acc_hi_i32(cbuf, co + ro1 + r2 + 32, hi1)


@kernel()
def _tl1_tile(wb, lut, a, M, K, BM, BK, bm, cbuf, pf):  # noqa: ANN001, ANN202
    n = lut.shape[0]
    tok_bytes = K * 16  # table bytes per token (16 per weight: 32 per pair)
    T, S, NB = BK // (256 // bm), BM // bm, K // BK
    for b in range(NB):
        for s in range(S):
            base = ((a * NB + b) * S + s) * (bm * BK // 4)
            for x in range(0, bm * BK // 4, 64):
                prefetch(wb, base + x + pf)
            for j in range(n):
                _tl1_block(wb, base, lut, j * tok_bytes + b * BK * 16, T, bm, cbuf, (j * BM + s * bm) * 4)


@kernel(parallel=True)
def tl1_avx2(wb, lut, M, K, BM, BK, bm, out_i, out_f, s, scale, pf):  # noqa: ANN001, ANN201
    """Σ_k t·q from TL1 bytes wb and `build_lut_tl1` tables into out_i[n, M] (int32), or, when
    out_i has no rows, rescaled into out_f[n, M] (see `emit_rows`); row tiles in parallel."""
    n = lut.shape[0]
    for a in prange(M // BM):
        cbuf = np.zeros((n, BM), np.int32)
        _tl1_tile(wb, lut, a, M, K, BM, BK, bm, cbuf, pf)
        emit_rows(cbuf, a, out_i, out_f, s, scale)


@kernel()
def tl1_avx2_serial(wb, lut, M, K, BM, BK, bm, out_i, out_f, s, scale, pf):  # noqa: ANN001, ANN201
    """`tl1_avx2` without a parallel region (one thread: no launch, no barrier)."""
    cbuf = np.empty((lut.shape[0], BM), np.int32)
    for a in range(M // BM):
        cbuf[:] = 0
        _tl1_tile(wb, lut, a, M, K, BM, BK, bm, cbuf, pf)
        emit_rows(cbuf, a, out_i, out_f, s, scale)
