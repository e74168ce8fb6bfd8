"""TL1: bitnet.cpp's 2-bit lookup-table format (ggml type 38) — packing, NumPy reference, kernels.

Two consecutive weights form a pair index `3*t0 + t1 + 4` (0..8, one nibble); nibbles are tiled
by (BM, BK, bm) exactly as `convert-hf-to-gguf-bitnet.py` does (bitnet-cpp.md §4.2; drawing in
docs/formats-tl.md). A matmul looks each index up in a 9-entry table of `d0*q0 + d1*q1` built per
activation pair (§5.3). The kernels read the file's bytes in place, so loading costs nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import prange

from ._jit import kernel
from .threads import run_threaded
from .tl_common import (
    TileConfig,
    check_tile_config,
    emit_rows,
    quantize_activations_tl_ref,
    resolve_isa,
    scale_tail,
    tl_nbytes,
)

__all__ = [
    "pack_tl1",
    "unpack_tl1",
    "tl1_lut_ref",
    "tl1_accumulate_ref",
    "tl1_linear_ref",
    "TL1Weight",
    "prepare_tl1",
    "tl1_matmul_int",
    "tl1_linear",
    "tl1_tables",
]


def _dims(M: int, K: int, BM: int, BK: int, bm: int) -> tuple[int, ...]:
    """(A, S, U, B, T, W): the index-matrix axes, outermost first (§4.2)."""
    check_tile_config("tl1", M, K, TileConfig(BM, BK, bm))
    by = 256 // bm  # weights per inner K step
    return M // BM, BM // bm, bm // 16, K // BK, BK // by, by // 4


def pack_tl1(t: np.ndarray, scale: float, BM: int, BK: int, bm: int) -> np.ndarray:
    """bitnet.cpp TL1 bytes of ternary t[M, K]: M*K/4 packed bytes, then the 32-byte scale tail.

    Byte order, outermost first: row tile a, K block b, sub-tile s, step t, 16-row group u,
    pair couple w, row v; byte = idx[row, 2c] << 4 | idx[row, 2c + 1] for pair column c.

    Returns:
        uint8[tl_nbytes(38, M, K)]
    """
    M, K = t.shape
    A, S, U, B, T, W = _dims(M, K, BM, BK, bm)
    t = np.asarray(t, dtype=np.int8)
    if np.any(np.abs(t.astype(np.int16)) > 1):
        raise ValueError("pack_tl1: values must be in {-1, 0, 1}")
    idx = (3 * t[:, 0::2].astype(np.int16) + t[:, 1::2] + 4).astype(np.uint8)  # [M, K/2]
    x = idx.reshape(A, S, U, 16, B, T, W, 2).transpose(0, 4, 1, 5, 2, 6, 3, 7)  # [A,B,S,T,U,W,16,2]
    packed = (x[..., 0] << 4) | x[..., 1]
    return np.concatenate([packed.reshape(-1), scale_tail(scale)])


def unpack_tl1(raw: np.ndarray, M: int, K: int, BM: int, BK: int, bm: int) -> tuple[np.ndarray, np.float32]:
    """Inverse of `pack_tl1`: (t int8[M, K], scale float32). Unused indices 9..15 decode to 0."""
    A, S, U, B, T, W = _dims(M, K, BM, BK, bm)
    raw = np.asarray(raw, dtype=np.uint8).reshape(-1)
    n = M * K // 4
    if raw.size < n + 4:
        raise ValueError(f"TL1 data too short: {raw.size} bytes, need {n + 4} for {M}x{K}")
    b = raw[:n].reshape(A, B, S, T, U, W, 16)
    x = np.stack([b >> 4, b & 15], axis=-1)  # [A,B,S,T,U,W,16,2]
    idx = x.transpose(0, 2, 4, 6, 1, 3, 5, 7).reshape(M, K // 2)
    valid = idx <= 8
    t = np.empty((M, K), dtype=np.int8)
    t[:, 0::2] = np.where(valid, idx // 3 - 1, 0)
    t[:, 1::2] = np.where(valid, idx % 3 - 1, 0)
    scale = raw[n : n + 4].copy().view("<f4")[0]
    return t, np.float32(scale)


def tl1_lut_ref(q: np.ndarray) -> np.ndarray:
    """Per-pair tables (§5.3): lut[n, p, idx] = (idx//3 - 1)*q[2p] + (idx%3 - 1)*q[2p+1], idx < 9.

    Args:
        q: int8[n, K]

    Returns:
        int16[n, K/2, 16] (entries 9..15 are zero)
    """
    q = np.asarray(q, dtype=np.int16)
    e = np.arange(16)
    d0 = np.where(e < 9, e // 3 - 1, 0).astype(np.int16)  # [16]
    d1 = np.where(e < 9, e % 3 - 1, 0).astype(np.int16)
    return q[:, 0::2, None] * d0 + q[:, 1::2, None] * d1  # [n, K/2, 16]


def tl1_accumulate_ref(t: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Integer LUT accumulation Σ_p lut[n, p, idx[m, p]] as int32[n, M] (equals Σ_k t·q exactly)."""
    idx = (3 * t[:, 0::2].astype(np.int16) + t[:, 1::2] + 4).astype(np.intp)  # [M, K/2]
    lut = tl1_lut_ref(q)  # [n, K/2, 16]
    cols = np.arange(idx.shape[1])
    out = np.empty((q.shape[0], t.shape[0]), dtype=np.int32)
    for j in range(q.shape[0]):
        out[j] = lut[j][cols[None, :], idx].astype(np.int32).sum(axis=1)  # [M]
    return out


def tl1_linear_ref(t: np.ndarray, scale: float, x: np.ndarray) -> np.ndarray:
    """bitnet.cpp's TL1 linear layer: TL activation quantization (no 1e-5 floor), LUT sums,
    then y = float32(Σ) / s * w_scale in float32.

    Args:
        t: int8[M, K] ternary; x: f32[n, K].

    Returns:
        f32[n, M]
    """
    q, s = quantize_activations_tl_ref(np.atleast_2d(x))
    acc = tl1_accumulate_ref(t, q)  # [n, M]
    return (acc.astype(np.float32) / s[:, None] * np.float32(scale)).astype(np.float32)


@dataclass(frozen=True)
class TL1Weight:
    """A TL1 weight ready for the kernels: the file's packed bytes (used in place) plus params."""

    data: np.ndarray  # uint8[M*K/4], zero-copy view of the file
    M: int
    K: int
    tile: TileConfig
    scale: np.float32
    isa: str  # "avx2" or "portable"


def prepare_tl1(raw: np.ndarray, M: int, K: int, BM: int, BK: int, bm: int, *, isa: str | None = None) -> TL1Weight:
    """Wrap TL1 tensor bytes (tl_nbytes(38, M, K) of them) for `tl1_linear`; no copy is made."""
    check_tile_config("tl1", M, K, TileConfig(BM, BK, bm))
    raw = np.asarray(raw, dtype=np.uint8).reshape(-1)
    if raw.size < tl_nbytes(38, M, K) - 28:
        raise ValueError(f"TL1 data too short: {raw.size} bytes for {M}x{K}")
    n = M * K // 4
    scale = np.float32(raw[n : n + 4].copy().view("<f4")[0])
    return TL1Weight(raw[:n], M, K, TileConfig(BM, BK, bm), scale, resolve_isa(isa))


@kernel()
def _block_portable(wb, base, acc, qj, k0, r0, T, U, W):  # noqa: ANN001, ANN202
    """acc[r0:r0+bm] += one bm-row x BK block of TL1 bytes at `base` for one token qj[K].

    Every 16-byte group is 16 consecutive rows times two pairs, so the inner loop is plain
    int32 lane arithmetic that LLVM vectorizes; digits are decoded as idx//3 = (idx*11)>>5.
    """
    by = 4 * W
    G = 16 * U if W == 1 else 16  # bm 64: a step's bm rows are contiguous bytes with the same pairs
    for t in range(T):
        for w in range(W):
            k = k0 + t * by + 4 * w
            q0, q1, q2, q3 = np.int32(qj[k]), np.int32(qj[k + 1]), np.int32(qj[k + 2]), np.int32(qj[k + 3])
            for u in range(0, U, G // 16):
                off = base + ((t * U + u) * W + w) * 16
                src = wb[off : off + G]  # slices keep signed-index wraparound out of the loop
                dst = acc[r0 + u * 16 : r0 + u * 16 + G]
                for v in range(G):
                    byte = np.int32(src[v])
                    hi, lo = byte >> 4, byte & 15
                    hd, ld = (hi * 11) >> 5, (lo * 11) >> 5
                    dst[v] = np.int32(dst[v] + hd * q0 + (hi - 3 * hd) * q1 + ld * q2 + (lo - 3 * ld) * q3)


@kernel(parallel=True)
def _tl1_portable(wb, q, qsum, M, K, BM, BK, bm, out_i, out_f, s_act, scale):  # noqa: ANN001, ANN202
    """Σ_k t·q over the native TL1 bytes (digits decoded arithmetically, no gathers), written by
    `emit_rows` to out_i (int32) or rescaled to out_f.

    idx = 3*(t0+1) + (t1+1), so Σ idx//3*q0 + idx%3*q1 over pairs minus Σ_k q is the dot product.
    """
    n = q.shape[0]
    by = 256 // bm
    T, W, U, S, NB = BK // by, by // 4, bm // 16, BM // bm, K // BK
    for a in prange(M // BM):
        acc = np.zeros((n, BM), np.int32)
        for b in range(NB):
            for s in range(S):
                base = ((a * NB + b) * S + s) * (bm * BK // 4)
                for j in range(n):
                    _block_portable(wb, base, acc[j], q[j], b * BK, s * bm, T, U, W)
        for j in range(n):
            for r in range(BM):
                acc[j, r] -= qsum[j]
        emit_rows(acc, a, out_i, out_f, s_act, scale)


def tl1_tables(q: np.ndarray, bm: int) -> np.ndarray:
    """AVX2 per-token tables for `q`: uint8[n, K/2, 32] for bm 64, uint8[n, K/8, 128] (pairs
    grouped by four) for bm 32. Weights with the same K and bm can share one build via
    `tl1_linear(..., tables=)`."""
    return _simd().build_lut_tl1(np.ascontiguousarray(np.atleast_2d(q), dtype=np.int8), bm == 32)


def _simd():  # noqa: ANN202
    """The AVX2 module, imported on first use only (compiling it needs an AVX2 CPU)."""
    from . import tl_simd

    return tl_simd


def _run(w: TL1Weight, q: np.ndarray, out_i: np.ndarray, out_f: np.ndarray, s: np.ndarray, isa: str | None, pf: int,
         tables: np.ndarray | None = None) -> None:
    c = w.tile
    if (resolve_isa(isa) if isa else w.isa) == "avx2":
        simd = _simd()
        lut = simd.build_lut_tl1(q, c.bm == 32) if tables is None else tables
        if lut.shape != ((q.shape[0], w.K // 8, 128) if c.bm == 32 else (q.shape[0], w.K // 2, 32)):
            raise ValueError(f"TL1 tables of shape {lut.shape} do not fit this {w.M}x{w.K} weight")
        run_threaded(("tl1", w.M, w.K, q.shape[0] > 1), simd.tl1_avx2, simd.tl1_avx2_serial,
                     w.data, lut, w.M, w.K, c.BM, c.BK, c.bm, out_i, out_f, s, w.scale, pf)
    else:
        qsum = q.sum(axis=1, dtype=np.int32)  # [n]
        _tl1_portable(w.data, q, qsum, w.M, w.K, c.BM, c.BK, c.bm, out_i, out_f, s, w.scale)


def tl1_matmul_int(w: TL1Weight, q: np.ndarray, *, isa: str | None = None, pf: int = 2048) -> np.ndarray:
    """Exact Σ_k t[m, k]·q[n, k] as int32[n, M] with the chosen kernel family ("avx2"/"portable")."""
    q = np.ascontiguousarray(np.atleast_2d(q), dtype=np.int8)  # [n, K]
    out = np.empty((q.shape[0], w.M), dtype=np.int32)
    _run(w, q, out, _NO_F32, _NO_S, isa, pf)
    return out


def tl1_linear(w: TL1Weight, q: np.ndarray, s: np.ndarray, *, isa: str | None = None, pf: int = 2048,
               tables: np.ndarray | None = None) -> np.ndarray:
    """y[n, M] = float32(Σ t·q) / s * w_scale in float32, with (q, s) from `quantize_activations_tl`.

    `tables`: optional prebuilt `tl1_tables(q, bm)` (AVX2 path) shared across weights.
    """
    q = np.ascontiguousarray(np.atleast_2d(q), dtype=np.int8)  # [n, K]
    y = np.empty((q.shape[0], w.M), dtype=np.float32)
    _run(w, q, _NO_I32, y, np.ascontiguousarray(s, dtype=np.float32).reshape(-1), isa, pf, tables)
    return y


_NO_I32 = np.empty((0, 0), np.int32)  # "no int32 output": the kernels rescale into float32
_NO_F32 = np.empty((0, 0), np.float32)
_NO_S = np.empty(0, np.float32)
