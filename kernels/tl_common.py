"""Tile parameters and sizes shared by bitnet.cpp's lookup-table formats TL1 and TL2.

bitnet.cpp bakes one (BM, BK, bm) triple per weight shape into generated C code and into
`include/kernel_config.ini`; the converter lays the bytes out with the same triple, so a TL file is
only readable with the triple it was written with (bitnet-cpp.md §2.15, §4.2, §4.3). The shipped
tables are reproduced here verbatim; `tile_configs` enumerates every triple the layout constraints
allow for a shape and `choose_tile_config` picks one.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from ._jit import has_avx2, kernel, kernel_isa

if TYPE_CHECKING:
    from .tl1 import TL1Weight
    from .tl2 import TL2Weight

TLKind = Literal["tl1", "tl2"]

GGML_TYPE_TL1 = 38
GGML_TYPE_TL2 = 39
TL_TAIL_BYTES = 32  # hidden `<name>_scale` tensor: f32 scale then 28 zero bytes
TL2_TWO_BK = 32  # TL2's "two" part (K % BK last columns) always uses 32-column tiles
MAX_EXACT_BK = 256  # int16 block sums stay exact: TL1 BK/2*254, TL2 BK/3*381 <= 32767

__all__ = [
    "GGML_TYPE_TL1",
    "GGML_TYPE_TL2",
    "TL_TAIL_BYTES",
    "TileConfig",
    "SHIPPED_TL1",
    "SHIPPED_TL2",
    "tl_nbytes",
    "tl_packed_nbytes",
    "tl_scale_offset",
    "check_tile_config",
    "tile_configs",
    "choose_tile_config",
    "shipped_tile_config",
    "scale_tail",
    "quantize_activations_tl",
    "quantize_activations_tl_ref",
    "emit_rows",
    "prepare_tl",
    "tl_linear",
    "resolve_isa",
]


@dataclass(frozen=True)
class TileConfig:
    """bitnet.cpp tile triple: BM rows per tile, BK columns per K-block, bm rows per SIMD block."""

    BM: int
    BK: int
    bm: int


def _t(BM: int, BK: int, bm: int) -> TileConfig:
    return TileConfig(BM, BK, bm)


# codegen `--model` name -> {(M, K): TileConfig}, from setup_env.py / preset_kernels (§2.15).
SHIPPED_TL1: dict[str, dict[tuple[int, int], TileConfig]] = {
    "bitnet_b1_58-large": {
        (1536, 4096): _t(256, 128, 32), (1536, 1536): _t(128, 64, 64), (4096, 1536): _t(256, 128, 32),
    },
    "bitnet_b1_58-3B": {
        (3200, 8640): _t(160, 64, 32), (3200, 3200): _t(320, 128, 64), (8640, 3200): _t(320, 64, 32),
    },
    "Llama3-8B-1.58-100B-tokens": {
        (14336, 4096): _t(256, 128, 64), (4096, 14336): _t(256, 128, 32),
        (1024, 4096): _t(128, 64, 64), (4096, 4096): _t(128, 64, 32),
    },
}
# The large model's (4096, 1536) TL2 preset says bm=64, which the converter cannot lay out
# (it indexes pairs of triplets with by = 192 / bm = 3); it is kept verbatim and flagged invalid.
SHIPPED_TL2: dict[str, dict[tuple[int, int], TileConfig]] = {
    "bitnet_b1_58-large": {
        (1536, 4096): _t(256, 96, 32), (1536, 1536): _t(128, 192, 32), (4096, 1536): _t(256, 96, 64),
    },
    "bitnet_b1_58-3B": {
        (3200, 8640): _t(160, 96, 32), (3200, 3200): _t(320, 96, 32), (8640, 3200): _t(320, 96, 32),
    },
    "Llama3-8B-1.58-100B-tokens": {
        (14336, 4096): _t(256, 96, 32), (4096, 14336): _t(128, 96, 32),
        (1024, 4096): _t(256, 96, 32), (4096, 4096): _t(128, 96, 32),
    },
}


def _c_div(a: int, b: int) -> int:
    """C integer division (truncates toward zero), as ggml's size formula uses."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _pad32(n: int) -> int:
    return (n + 31) // 32 * 32


def tl_packed_nbytes(kind: TLKind, M: int, K: int) -> int:
    """Bytes of the packed weight region before the 32-byte scale tail (TL2: the fork's formula)."""
    if kind == "tl1":
        return M * K // 4
    if kind == "tl2":
        # (K - 256) * M / 3 * 5 / 8 + 256 * M / 2 * 4 / 8, C integers left to right (§3.2)
        return _c_div(_c_div((K - 256) * M, 3) * 5, 8) + 256 * M // 2 * 4 // 8
    raise ValueError(f"unknown TL kind {kind!r}")


def tl_scale_offset(kind: TLKind, M: int, K: int) -> int:
    """Byte offset of the f32 weight scale inside the tensor (where bitnet.cpp reads it)."""
    return _pad32(tl_packed_nbytes(kind, M, K))


def tl_nbytes(ggml_type: int | TLKind, M: int, K: int) -> int:
    """ggml_nbytes of a TL1 (38) / TL2 (39) tensor of shape (M, K), hidden scale tail included."""
    kind = _kind(ggml_type)
    if kind == "tl1":
        return M * K // 4 + TL_TAIL_BYTES
    return tl_scale_offset(kind, M, K) + TL_TAIL_BYTES


def _kind(ggml_type: int | str) -> TLKind:
    if ggml_type in (GGML_TYPE_TL1, "tl1"):
        return "tl1"
    if ggml_type in (GGML_TYPE_TL2, "tl2"):
        return "tl2"
    raise ValueError(f"not a TL type: {ggml_type!r}")


def _tl1_problem(M: int, K: int, c: TileConfig) -> str | None:
    if c.bm not in (32, 64):
        return "bm must be 32 or 64"
    by = 256 // c.bm  # weights per inner K step
    if c.BM <= 0 or c.BM % c.bm or M % c.BM:
        return "need BM % bm == 0 and M % BM == 0"
    if c.BK <= 0 or c.BK % by or K % c.BK:
        return f"need BK % {by} == 0 and K % BK == 0"
    if c.BK > MAX_EXACT_BK:
        return f"BK > {MAX_EXACT_BK} could overflow bitnet.cpp's int16 block sums"
    return None


def _tl2_problem(M: int, K: int, c: TileConfig) -> str | None:
    if c.bm != 32:
        return "TL2 needs bm == 32"
    if c.BM <= 0 or c.BM % 32 or M % c.BM:
        return "need BM % 32 == 0 and M % BM == 0"
    if c.BK <= 0 or c.BK % 24 or c.BK > K:
        return "need BK % 24 == 0 (3-weight groups, 24-weight sign words) and BK <= K"
    if c.BK > MAX_EXACT_BK:
        return f"BK > {MAX_EXACT_BK} could overflow bitnet.cpp's int16 block sums"
    two_k = K % c.BK
    if two_k % TL2_TWO_BK or two_k > 256:
        return "need (K % BK) % 32 == 0 and K % BK <= 256"
    three_k = K - two_k
    used = M * three_k // 6 + M * three_k // 24 + M * two_k // 4
    if used > tl_packed_nbytes("tl2", M, K):
        return "packed bytes exceed bitnet.cpp's TL2 size formula"
    return None


def check_tile_config(kind: TLKind, M: int, K: int, c: TileConfig) -> None:
    """Raise ValueError when (BM, BK, bm) cannot lay out an (M, K) TL1/TL2 weight."""
    problem = _tl1_problem(M, K, c) if kind == "tl1" else _tl2_problem(M, K, c)
    if problem:
        raise ValueError(f"{kind.upper()} tile {c.BM}/{c.BK}/{c.bm} invalid for {M}x{K}: {problem}")


def tile_configs(kind: TLKind, M: int, K: int, *, max_BM: int | None = None) -> list[TileConfig]:
    """Every (BM, BK, bm) the layout constraints allow for (M, K), BM capped at `max_BM`."""
    out = []
    for bm in ((32, 64) if kind == "tl1" else (32,)):
        bms = [BM for BM in range(bm, M + 1, bm) if M % BM == 0 and (max_BM is None or BM <= max_BM)]
        step = 256 // bm if kind == "tl1" else 24
        for BK in range(step, MAX_EXACT_BK + 1, step):
            for BM in bms:
                c = TileConfig(BM, BK, bm)
                if (_tl1_problem if kind == "tl1" else _tl2_problem)(M, K, c) is None:
                    out.append(c)
    return out


def shipped_tile_config(kind: TLKind, M: int, K: int) -> TileConfig | None:
    """The tile triple bitnet.cpp ships for (M, K), if any table lists that shape validly."""
    for table in (SHIPPED_TL1 if kind == "tl1" else SHIPPED_TL2).values():
        c = table.get((M, K))
        if c is not None and (_tl1_problem if kind == "tl1" else _tl2_problem)(M, K, c) is None:
            return c
    return None


def choose_tile_config(kind: TLKind, M: int, K: int) -> TileConfig:
    """A valid tile triple for (M, K): the shipped one if a table lists the shape, else ours.

    bitnet.cpp records the triple nowhere in the file, so this rule must stay fixed for files we
    write. Ours was the fastest family on a Zen3 (AVX2): TL1 bm 64 (one table per 128-bit lane
    pair), TL2 BK 192; BK nearest 128 (TL1) / 192 (TL2); the largest BM <= 256 that still gives
    >= 8 row tiles (an even split over threads), else the largest BM <= 256.
    """
    shipped = shipped_tile_config(kind, M, K)
    if shipped is not None:
        return shipped
    configs = tile_configs(kind, M, K, max_BM=256)
    if not configs:
        raise ValueError(f"no valid {kind.upper()} tile configuration for {M}x{K}")
    pref_bk, pref_bm = (128, 64) if kind == "tl1" else (192, 32)

    def rank(c: TileConfig) -> tuple:
        return (c.bm != pref_bm, abs(c.BK - pref_bk), -c.BK, M // c.BM < 8, -c.BM)

    return min(configs, key=rank)


def scale_tail(scale: float) -> np.ndarray:
    """The hidden `<name>_scale` tensor's bytes: little-endian f32 then 28 zero bytes."""
    tail = np.zeros(TL_TAIL_BYTES, dtype=np.uint8)
    tail[:4] = np.frombuffer(np.float32(scale).astype("<f4").tobytes(), dtype=np.uint8)
    return tail


def quantize_activations_tl_ref(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """bitnet.cpp's TL1/TL2 activation quantization (bitnet-cpp.md §5.2), per row of x (NumPy).

    s = float32(127) / float32(max|x|) with **no** 1e-5 floor (unlike I2_S);
    q = round_half_even(float32(x * s)); |x * s| <= 127 so no clamp is needed. An all-zero row
    (which bitnet.cpp turns into NaNs) gives q = 0 and s = inf, hence y = 0.

    Args:
        x: f32[n, K]

    Returns:
        (q int8[n, K], s f32[n])
    """
    x = np.asarray(x, dtype=np.float32)
    absmax = np.abs(x).max(axis=1)  # [n] float32
    with np.errstate(divide="ignore"):
        s = (np.float32(127.0) / absmax).astype(np.float32)  # [n]
    with np.errstate(invalid="ignore"):
        prod = x * s[:, None]  # float32 product; 0 * inf -> nan only on all-zero rows
    q = np.rint(np.where(np.isfinite(prod), prod, 0)).clip(-127, 127).astype(np.int8)
    return q, s


@kernel()
def emit_rows(cbuf, a, out_i, out_f, s, scale):  # noqa: ANN001, ANN201
    """Write row tile a's int32 sums cbuf[n, BM]: to out_i (int32) if it has rows, else to
    out_f as float32(Σ) / s[n] * scale, the order bitnet.cpp rescales in."""
    n, BM = cbuf.shape
    if out_i.shape[0] > 0:
        for j in range(n):
            for r in range(BM):
                out_i[j, a * BM + r] = cbuf[j, r]
    else:
        for j in range(n):
            sj = s[j]
            for r in range(BM):
                out_f[j, a * BM + r] = np.float32(np.float32(cbuf[j, r]) / sj) * scale


@kernel()
def _quantize_tl(x, q, s):  # noqa: ANN001, ANN202
    n, K = x.shape
    for i in range(n):
        amax = np.float32(0.0)
        for k in range(K):
            amax = max(amax, abs(x[i, k]))
        si = np.float32(np.float32(127.0) / amax) if amax > 0 else np.float32(np.inf)
        s[i] = si
        for k in range(K):
            # float32 product, then round half to even; an all-zero row stays 0
            q[i, k] = np.int8(np.rint(np.float32(x[i, k] * si))) if amax > 0 else np.int8(0)


def quantize_activations_tl(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`quantize_activations_tl_ref` as a Numba kernel (bit-identical). x: f32[n, K] ->
    (q int8[n, K], s f32[n])."""
    x = np.ascontiguousarray(np.atleast_2d(x), dtype=np.float32)
    q = np.empty(x.shape, np.int8)
    s = np.empty(x.shape[0], np.float32)
    _quantize_tl(x, q, s)
    return q, s


def prepare_tl(raw: np.ndarray, ggml_type: int | TLKind, M: int, K: int, *, isa: str | None = None) -> TL1Weight | TL2Weight:
    """A TL1Weight / TL2Weight for a model file's TL tensor bytes, with the tile triple the
    writer used (`choose_tile_config`); zero-copy."""
    kind = _kind(ggml_type)
    c = choose_tile_config(kind, M, K)
    if kind == "tl1":
        from .tl1 import prepare_tl1

        return prepare_tl1(raw, M, K, c.BM, c.BK, c.bm, isa=isa)
    from .tl2 import prepare_tl2

    return prepare_tl2(raw, M, K, c.BM, c.BK, c.bm, isa=isa)


def tl_linear(w: TL1Weight | TL2Weight, q: np.ndarray, s: np.ndarray, *, tables: np.ndarray | None = None) -> np.ndarray:
    """`tl1_linear` or `tl2_linear` by weight type: f32[n, M] = float32(Σ t·q) / s * w_scale."""
    from .tl1 import TL1Weight, tl1_linear
    from .tl2 import tl2_linear

    return (tl1_linear if isinstance(w, TL1Weight) else tl2_linear)(w, q, s, tables=tables)


@functools.lru_cache(maxsize=None)
def _cpu_isa() -> tuple[str, bool]:
    return kernel_isa(), has_avx2()  # querying LLVM takes ~0.1 ms: once per process


def resolve_isa(isa: str | None) -> str:
    """The kernel family to use: `isa` if given (AVX2 only on CPUs that have it), else the best here."""
    best, avx2 = _cpu_isa()
    isa = isa or best
    if isa not in ("avx2", "portable"):
        raise ValueError(f"unknown kernel family {isa!r}: use 'avx2' or 'portable'")
    if isa == "avx2" and not avx2:
        raise ValueError("this CPU has no AVX2; use isa='portable'")  # LLVM would abort, not raise
    return isa
