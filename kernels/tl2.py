"""TL2: bitnet.cpp's 1.67-bit lookup-table format (ggml type 39) — packing, NumPy reference, kernels.

The first `three_k = K - K % BK` columns form triplets `v = 9*t0 + 3*t1 + t2`; a nibble holds
|v| (0..13) and a separate bit plane holds the sign, so 3 weights cost 5 bits. The last
`two_k = K % BK` columns use TL1's pair indices in 32-column tiles. Layout: bitnet-cpp.md §4.3 and
docs/formats-tl.md; numerics §5.3. The kernels read the file's bytes in place (no load cost).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import prange

from ._jit import kernel
from .threads import run_threaded
from .tl_common import (
    TL2_TWO_BK,
    TileConfig,
    check_tile_config,
    emit_rows,
    quantize_activations_tl_ref,
    resolve_isa,
    scale_tail,
    tl_packed_nbytes,
    tl_scale_offset,
)

__all__ = [
    "pack_tl2",
    "unpack_tl2",
    "tl2_lut_ref",
    "tl2_accumulate_ref",
    "tl2_linear_ref",
    "TL2Weight",
    "prepare_tl2",
    "tl2_matmul_int",
    "tl2_linear",
    "tl2_tables",
    "TL2Stack",
    "stack_tl2",
    "tl2_linear_stack",
]

# Stored position p of a 32-row sub-tile holds row _ROWS[p]: 8-row groups in order 0, 2, 1, 3,
# so that vpunpck{l,h}bw on the two 128-bit lanes yields rows 0-15 and 16-31 in order.
_ROWS = np.r_[0:8, 16:24, 8:16, 24:32]


def _split(K: int, BK: int) -> tuple[int, int]:
    return K - K % BK, K % BK  # (three_k, two_k)


def _digits() -> np.ndarray:
    """int16[16, 3]: balanced-ternary digits (d0, d1, d2) of v = 9*d0 + 3*d1 + d2, v = 0..13."""
    v = np.arange(16) + 13
    d = np.stack([v // 9, v // 3 % 3, v % 3], axis=1) - 1
    d[14:] = 0  # unused table entries
    return d.astype(np.int16)


def pack_tl2(t: np.ndarray, scale: float, BM: int, BK: int, bm: int = 32) -> np.ndarray:
    """bitnet.cpp TL2 bytes of ternary t[M, K]: [three-index | three-sign | two-index], zero pad
    to the fork's size formula, pad to 32, then the 32-byte scale tail (§3.4).

    Returns:
        uint8[tl_nbytes(39, M, K)]
    """
    M, K = t.shape
    check_tile_config("tl2", M, K, TileConfig(BM, BK, bm))
    t = np.asarray(t, dtype=np.int8)
    if np.any(np.abs(t.astype(np.int16)) > 1):
        raise ValueError("pack_tl2: values must be in {-1, 0, 1}")
    three_k, two_k = _split(K, BK)
    A, S, NB, KK = M // BM, BM // 32, three_k // BK, BK // 3
    t3 = t[:, :three_k].astype(np.int16).reshape(M, three_k // 3, 3)
    v = 9 * t3[..., 0] + 3 * t3[..., 1] + t3[..., 2]  # [M, three_k/3]
    mag = np.abs(v).astype(np.uint8)
    x = mag.reshape(A, S, 32, NB, KK // 2, 2).transpose(0, 3, 1, 4, 2, 5)  # [A,NB,S,Q,32,2]
    index = ((x[..., 0] << 4) | x[..., 1])[..., _ROWS]
    neg = (v < 0).astype(np.uint16).reshape(A, S, 2, 16, NB, KK // 8, 8)  # row = half*16 + L
    neg = neg.transpose(0, 4, 1, 5, 6, 2, 3).reshape(A, NB, S, KK // 8, 16, 16)  # [.., i=2j+half, L]
    words = (neg << (15 - np.arange(16, dtype=np.uint16))[:, None]).sum(axis=-2, dtype=np.uint16)
    parts = [index.reshape(-1), words.astype("<u2").view(np.uint8).reshape(-1)]
    if two_k:
        t2 = t[:, three_k:].astype(np.int16)
        idx = (3 * t2[:, 0::2] + t2[:, 1::2] + 4).astype(np.uint8)  # [M, two_k/2]
        y = idx.reshape(A, S, 32, two_k // TL2_TWO_BK, 8, 2).transpose(0, 3, 1, 4, 2, 5)
        parts.append(((y[..., 0] << 4) | y[..., 1])[..., _ROWS].reshape(-1))
    out = np.zeros(tl_scale_offset("tl2", M, K) + 32, dtype=np.uint8)
    packed = np.concatenate(parts)
    out[: packed.size] = packed
    out[-32:] = scale_tail(scale)
    return out


def unpack_tl2(raw: np.ndarray, M: int, K: int, BM: int, BK: int, bm: int = 32) -> tuple[np.ndarray, np.float32]:
    """Inverse of `pack_tl2`: (t int8[M, K], scale float32). Magnitudes 14, 15 decode to 0."""
    check_tile_config("tl2", M, K, TileConfig(BM, BK, bm))
    raw = np.asarray(raw, dtype=np.uint8).reshape(-1)
    so = tl_scale_offset("tl2", M, K)
    if raw.size < so + 4:
        raise ValueError(f"TL2 data too short: {raw.size} bytes, need {so + 4} for {M}x{K}")
    three_k, two_k = _split(K, BK)
    A, S, NB, KK = M // BM, BM // 32, three_k // BK, BK // 3
    n_idx, n_sign = M * three_k // 6, M * three_k // 24
    inv = np.argsort(_ROWS)  # row -> stored position
    b = raw[:n_idx].reshape(A, NB, S, KK // 2, 32)[..., inv]
    mag = np.stack([b >> 4, b & 15], axis=-1).transpose(0, 2, 4, 1, 3, 5).reshape(M, three_k // 3)
    words = raw[n_idx : n_idx + n_sign].copy().view("<u2").reshape(A, NB, S, KK // 8, 1, 16)
    bits = (words >> (15 - np.arange(16, dtype=np.uint16))[:, None]) & 1  # [A,NB,S,Q8,i,L]
    neg = bits.reshape(A, NB, S, KK // 8, 8, 2, 16).transpose(0, 2, 5, 6, 1, 3, 4).reshape(M, three_k // 3)
    d = _digits()[mag.astype(np.intp)] * np.where(neg == 1, -1, 1)[..., None].astype(np.int16)
    t = np.empty((M, K), dtype=np.int8)
    t[:, :three_k] = d.reshape(M, three_k)
    if two_k:
        c = raw[n_idx + n_sign : n_idx + n_sign + M * two_k // 4]
        c = c.reshape(A, two_k // TL2_TWO_BK, S, 8, 32)[..., inv]
        idx = np.stack([c >> 4, c & 15], axis=-1).transpose(0, 2, 4, 1, 3, 5).reshape(M, two_k // 2)
        valid = idx <= 8
        t[:, three_k::2] = np.where(valid, idx // 3 - 1, 0)
        t[:, three_k + 1 :: 2] = np.where(valid, idx % 3 - 1, 0)
    return t, np.float32(raw[so : so + 4].copy().view("<f4")[0])


def tl2_lut_ref(q: np.ndarray, three_k: int) -> tuple[np.ndarray, np.ndarray]:
    """Three-tables lut3[n, three_k/3, 16] (entry v = d0*q0 + d1*q1 + d2*q2) and TL1-style
    pair tables lut2[n, (K - three_k)/2, 16] for the two part (§5.3), int16."""
    q = np.asarray(q, dtype=np.int16)
    d = _digits()  # [16, 3]
    q3 = q[:, :three_k].reshape(q.shape[0], -1, 3)  # [n, three_k/3, 3]
    lut3 = q3[..., 0, None] * d[:, 0] + q3[..., 1, None] * d[:, 1] + q3[..., 2, None] * d[:, 2]
    e = np.arange(16)
    d0 = np.where(e < 9, e // 3 - 1, 0).astype(np.int16)
    d1 = np.where(e < 9, e % 3 - 1, 0).astype(np.int16)
    q2 = q[:, three_k:]
    lut2 = q2[:, 0::2, None] * d0 + q2[:, 1::2, None] * d1
    return lut3.astype(np.int16), lut2.astype(np.int16)


def tl2_accumulate_ref(t: np.ndarray, q: np.ndarray, BK: int) -> np.ndarray:
    """Integer LUT accumulation Σ ±lut3[|v|] + Σ lut2[idx] as int32[n, M] (= Σ_k t·q exactly)."""
    M, K = t.shape
    three_k, _ = _split(K, BK)
    t16 = t.astype(np.int16)
    t3 = t16[:, :three_k].reshape(M, -1, 3)
    v = 9 * t3[..., 0] + 3 * t3[..., 1] + t3[..., 2]  # [M, three_k/3]
    mag, sign = np.abs(v).astype(np.intp), np.where(v < 0, -1, 1).astype(np.int32)
    idx2 = (3 * t16[:, three_k::2] + t16[:, three_k + 1 :: 2] + 4).astype(np.intp)  # [M, two_k/2]
    lut3, lut2 = tl2_lut_ref(q, three_k)
    c3, c2 = np.arange(mag.shape[1]), np.arange(idx2.shape[1])
    out = np.empty((q.shape[0], M), dtype=np.int32)
    for j in range(q.shape[0]):
        acc = (lut3[j][c3[None, :], mag].astype(np.int32) * sign).sum(axis=1)
        out[j] = acc + lut2[j][c2[None, :], idx2].astype(np.int32).sum(axis=1)
    return out


def tl2_linear_ref(t: np.ndarray, scale: float, x: np.ndarray, BK: int) -> np.ndarray:
    """bitnet.cpp's TL2 linear layer: per-row TL activation quantization over the full K (no
    floor), LUT sums of both parts, y = float32(Σ) / s * w_scale in float32. Returns f32[n, M]."""
    q, s = quantize_activations_tl_ref(np.atleast_2d(x))
    acc = tl2_accumulate_ref(t, q, BK)
    return (acc.astype(np.float32) / s[:, None] * np.float32(scale)).astype(np.float32)


@dataclass(frozen=True)
class TL2Weight:
    """A TL2 weight ready for the kernels: the file's packed bytes (used in place) plus params."""

    data: np.ndarray  # uint8[tl_packed_nbytes], zero-copy view of the file
    M: int
    K: int
    tile: TileConfig
    scale: np.float32
    isa: str  # "avx2" or "portable"


def prepare_tl2(raw: np.ndarray, M: int, K: int, BM: int, BK: int, bm: int = 32, *, isa: str | None = None) -> TL2Weight:
    """Wrap TL2 tensor bytes (tl_nbytes(39, M, K) of them) for `tl2_linear`; no copy is made."""
    check_tile_config("tl2", M, K, TileConfig(BM, BK, bm))
    raw = np.asarray(raw, dtype=np.uint8).reshape(-1)
    so = tl_scale_offset("tl2", M, K)
    if raw.size < so + 4:
        raise ValueError(f"TL2 data too short: {raw.size} bytes for {M}x{K}")
    scale = np.float32(raw[so : so + 4].copy().view("<f4")[0])
    return TL2Weight(raw[: tl_packed_nbytes("tl2", M, K)], M, K, TileConfig(BM, BK, bm), scale, resolve_isa(isa))


@kernel()
def _three_portable(wb, ib, sb, acc, qj, c0, KK, wp):  # noqa: ANN001, ANN202
    """acc[32 stored positions] += one 32-row x BK three-part block (index bytes at ib, signs at
    sb) for one token qj; c0 = the block's first triplet column. Sums stay in stored row order
    (0-7, 16-23, 8-15, 24-31) so every loop runs over 32 contiguous bytes; wp: int32[32] scratch."""
    for qq in range(KK // 2):
        if qq % 4 == 0:  # new sign chunk: position p's u16 lane, shifted so its bit sits at 15 - i
            sg = wb[sb + (qq // 4) * 32 : sb + (qq // 4) * 32 + 32]
            for p in range(32):
                r = (p & 7) | ((p & 8) << 1) | ((p & 16) >> 1)
                L = r & 15
                wp[p] = ((np.int32(sg[2 * L]) | (np.int32(sg[2 * L + 1]) << 8)) << (r >> 4)) & 0xFFFF
        k = 3 * (c0 + 2 * qq)
        x0, x1, x2 = np.int32(qj[k]), np.int32(qj[k + 1]), np.int32(qj[k + 2])
        x3, x4, x5 = np.int32(qj[k + 3]), np.int32(qj[k + 4]), np.int32(qj[k + 5])
        sh = np.int32(15 - 4 * (qq % 4))  # high nibble's sign bit; the low nibble's is 2 lower
        src = wb[ib + qq * 32 : ib + qq * 32 + 32]
        for p in range(32):
            byte = np.int32(src[p])
            uh, ul = (byte >> 4) + 13, (byte & 15) + 13  # 9*(d0+1) + 3*(d1+1) + (d2+1)
            h3, l3 = (uh * 11) >> 5, (ul * 11) >> 5  # u // 3 (u <= 26)
            vh = (((uh * 57) >> 9) - 1) * x0 + (h3 - 3 * ((h3 * 11) >> 5) - 1) * x1 + (uh - 3 * h3 - 1) * x2
            vl = (((ul * 57) >> 9) - 1) * x3 + (l3 - 3 * ((l3 * 11) >> 5) - 1) * x4 + (ul - 3 * l3 - 1) * x5
            nh, nl = -((wp[p] >> sh) & 1), -((wp[p] >> (sh - 2)) & 1)  # 0 or -1
            acc[p] = np.int32(acc[p] + ((vh ^ nh) - nh) + ((vl ^ nl) - nl))


@kernel()
def _two_portable(wb, base, acc, qj, k0):  # noqa: ANN001, ANN202
    """acc[32 stored positions] += one 32-row x 32-column two-part tile for one token."""
    for qq in range(8):
        k = k0 + 4 * qq
        x0, x1, x2, x3 = np.int32(qj[k]), np.int32(qj[k + 1]), np.int32(qj[k + 2]), np.int32(qj[k + 3])
        src = wb[base + qq * 32 : base + qq * 32 + 32]
        for p in range(32):
            byte = np.int32(src[p])
            hi, lo = byte >> 4, byte & 15
            hd, ld = (hi * 11) >> 5, (lo * 11) >> 5  # //3 for 0..8
            acc[p] = np.int32(acc[p] + hd * x0 + (hi - 3 * hd) * x1 + ld * x2 + (lo - 3 * ld) * x3)


@kernel(parallel=True)
def _tl2_portable(wb, q, qsum2, M, K, BM, BK, out_i, out_f, s_act, scale):  # noqa: ANN001, ANN202
    """Σ_k t·q over the native TL2 bytes with plain integer code (portable), written by
    `emit_rows` to out_i (int32) or rescaled to out_f. The two part's pair digits are 0..2,
    so Σ of its q (qsum2) is subtracted at the end."""
    n = q.shape[0]
    two_k = K % BK
    three_k = K - two_k
    S, NB, KK, NB2 = BM // 32, three_k // BK, BK // 3, two_k // 32
    sign_base = M * three_k // 6
    two_base = sign_base + M * three_k // 24
    for a in prange(M // BM):
        acc = np.zeros((n, BM), np.int32)  # stored row order within each 32-row sub-tile
        wp = np.empty(32, np.int32)
        for b in range(NB):
            for s in range(S):
                chunk = (a * NB + b) * S + s
                for j in range(n):
                    _three_portable(wb, chunk * (KK // 2 * 32), sign_base + chunk * (KK // 8 * 32),
                                    acc[j, s * 32 : s * 32 + 32], q[j], b * KK, KK, wp)
        for b in range(NB2):
            for s in range(S):
                base = two_base + ((a * NB2 + b) * S + s) * 256
                for j in range(n):
                    _two_portable(wb, base, acc[j, s * 32 : s * 32 + 32], q[j], three_k + 32 * b)
        rows = np.empty((n, BM), np.int32)
        for j in range(n):
            for p in range(BM):
                r = (p & ~31) | (p & 7) | ((p & 8) << 1) | ((p & 16) >> 1)
                rows[j, r] = acc[j, p] - qsum2[j]
        emit_rows(rows, a, out_i, out_f, s_act, scale)


def tl2_tables(q: np.ndarray, K: int, BK: int) -> np.ndarray:
    """AVX2 per-token tables for `q` (uint8[n, three_k/3 + two_k/2, 32]); weights with the same K
    and K % BK (e.g. Q, K and V) can share one build via `tl2_linear(..., tables=)`."""
    return _simd().build_lut_tl2(np.ascontiguousarray(np.atleast_2d(q), dtype=np.int8), _split(K, BK)[0])


def _simd():  # noqa: ANN202
    """The AVX2 module, imported on first use only (compiling it needs an AVX2 CPU)."""
    from . import tl_simd

    return tl_simd


def _run(w: TL2Weight, q: np.ndarray, out_i: np.ndarray, out_f: np.ndarray, s: np.ndarray, isa: str | None, pf: int,
         tables: np.ndarray | None = None) -> None:
    c = w.tile
    three_k, two_k = _split(w.K, c.BK)
    if (resolve_isa(isa) if isa else w.isa) == "avx2":
        simd = _simd()
        lut = simd.build_lut_tl2(q, three_k) if tables is None else tables
        if lut.shape != (q.shape[0], three_k // 3 + two_k // 2, 32):
            raise ValueError(f"TL2 tables of shape {lut.shape} do not fit this {w.M}x{w.K} weight")
        run_threaded(("tl2", w.M, w.K, q.shape[0] > 1), simd.tl2_avx2, simd.tl2_avx2_serial,
                     w.data, lut, w.M, w.K, c.BM, c.BK, out_i, out_f, s, w.scale, pf)
    else:
        qsum2 = q[:, three_k:].sum(axis=1, dtype=np.int32)  # offset of the two part's 0..2 digits
        _tl2_portable(w.data, q, qsum2, w.M, w.K, c.BM, c.BK, out_i, out_f, s, w.scale)


def tl2_matmul_int(w: TL2Weight, q: np.ndarray, *, isa: str | None = None, pf: int = 2048) -> np.ndarray:
    """Exact Σ_k t[m, k]·q[n, k] as int32[n, M] with the chosen kernel family ("avx2"/"portable")."""
    q = np.ascontiguousarray(np.atleast_2d(q), dtype=np.int8)  # [n, K]
    out = np.empty((q.shape[0], w.M), dtype=np.int32)
    _run(w, q, out, _NO_F32, _NO_S, isa, pf)
    return out


def tl2_linear(w: TL2Weight, q: np.ndarray, s: np.ndarray, *, isa: str | None = None, pf: int = 2048,
               tables: np.ndarray | None = None) -> np.ndarray:
    """y[n, M] = float32(Σ t·q) / s * w_scale in float32, with (q, s) from `quantize_activations_tl`.

    `tables`: optional prebuilt `tl2_tables(q, K, BK)` (AVX2 path) shared across weights.
    """
    q = np.ascontiguousarray(np.atleast_2d(q), dtype=np.int8)  # [n, K]
    y = np.empty((q.shape[0], w.M), dtype=np.float32)
    _run(w, q, _NO_I32, y, np.ascontiguousarray(s, dtype=np.float32).reshape(-1), isa, pf, tables)
    return y


@dataclass(frozen=True)
class TL2Stack:
    """Several TL2 weights with the same K and BK (e.g. Q, K, V) computed in one call.

    `data` concatenates the parts' packed bytes (one copy); `tiles` lists (part, row tile) in an
    order whose equal-count thread chunks carry about equal rows.
    """

    parts: tuple[TL2Weight, ...]
    data: np.ndarray  # uint8[Σ packed bytes]
    offsets: np.ndarray  # int64[P + 1]: byte offset of each part in data
    Ms: np.ndarray  # int64[P]
    BMs: np.ndarray  # int64[P]
    row0s: np.ndarray  # int64[P]: first output column of each part
    scales: np.ndarray  # f32[P]
    tiles: np.ndarray  # int64[T, 2]
    M: int
    K: int
    BK: int
    isa: str


def stack_tl2(weights: list[TL2Weight], *, nbins: int | None = None) -> TL2Stack:
    """Stack TL2 weights that share K, BK and ISA; outputs come side by side in `tl2_linear_stack`."""
    import numba

    w0 = weights[0]
    if any(w.K != w0.K or w.tile.BK != w0.tile.BK or w.isa != w0.isa for w in weights):
        raise ValueError("stack_tl2: all parts need the same K, BK and ISA")
    Ms = np.array([w.M for w in weights], np.int64)
    tiles = sorted(((p, a) for p, w in enumerate(weights) for a in range(w.M // w.tile.BM)),
                   key=lambda pa: -weights[pa[0]].tile.BM)
    nbins = nbins or numba.config.NUMBA_NUM_THREADS
    order = [t for b in range(nbins) for t in tiles[b::nbins]]  # deal big tiles round-robin
    return TL2Stack(
        parts=tuple(weights),
        data=np.concatenate([w.data for w in weights]),
        offsets=np.cumsum([0] + [w.data.size for w in weights]).astype(np.int64),
        Ms=Ms, BMs=np.array([w.tile.BM for w in weights], np.int64),
        row0s=np.concatenate([[0], np.cumsum(Ms)[:-1]]).astype(np.int64),
        scales=np.array([w.scale for w in weights], np.float32),
        tiles=np.array(order, np.int64).reshape(-1, 2), M=int(Ms.sum()), K=w0.K, BK=w0.tile.BK, isa=w0.isa,
    )


def tl2_linear_stack(st: TL2Stack, q: np.ndarray, s: np.ndarray, *, pf: int = 2048,
                     tables: np.ndarray | None = None) -> np.ndarray:
    """The parts' `tl2_linear` outputs side by side, f32[n, Σ M], one parallel region (AVX2)."""
    q = np.ascontiguousarray(np.atleast_2d(q), dtype=np.int8)  # [n, K]
    s = np.ascontiguousarray(s, dtype=np.float32).reshape(-1)
    if st.isa != "avx2":
        return np.concatenate([tl2_linear(w, q, s, isa=st.isa) for w in st.parts], axis=1)
    simd = _simd()
    three_k, two_k = _split(st.K, st.BK)
    lut = simd.build_lut_tl2(q, three_k) if tables is None else tables
    if lut.shape != (q.shape[0], three_k // 3 + two_k // 2, 32):
        raise ValueError(f"TL2 tables of shape {lut.shape} do not fit this stack (K={st.K}, BK={st.BK})")
    y = np.empty((q.shape[0], st.M), dtype=np.float32)
    args = (st.data, st.offsets, st.Ms, st.BMs, st.row0s, st.tiles, lut, st.K, st.BK, y, s, st.scales, pf)
    run_threaded(("tl2-stack", st.M, st.K, q.shape[0] > 1), simd.tl2_avx2_stack, simd.tl2_avx2_stack_serial, *args)
    return y


_NO_I32 = np.empty((0, 0), np.int32)  # "no int32 output": the kernels rescale into float32
_NO_F32 = np.empty((0, 0), np.float32)
_NO_S = np.empty(0, np.float32)
