"""GGML tensor type ids and file-type ids as bitnet.cpp's llama.cpp fork numbers them.

`gguf` 0.19 knows mainline ggml's ids only: it lacks I2_S (36) and TL1 (38), and calls 39 MXFP4,
which the fork calls TL2. `GGMLType` is the union we read; 39 means TL2 in every file we write,
and the reader decides it by context when reading (see reader.py and docs/formats.md).
"""
from __future__ import annotations

from enum import IntEnum
from math import prod
from typing import Sequence

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

__all__ = [
    "GGMLType",
    "FileType",
    "FILE_TYPE_OF",
    "TERNARY_TYPES",
    "tensor_nbytes",
    "tl2_packed_nbytes",
    "pad_to",
]

ALIGNMENT = 32  # GGUF's default data alignment; bitnet.cpp never changes it


class GGMLType(IntEnum):
    """Tensor type ids: mainline ggml's plus the fork's I2_S, TL1 and TL2."""

    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q5_0 = 6
    Q5_1 = 7
    Q8_0 = 8
    Q8_1 = 9
    Q2_K = 10
    Q3_K = 11
    Q4_K = 12
    Q5_K = 13
    Q6_K = 14
    Q8_K = 15
    IQ2_XXS = 16
    IQ2_XS = 17
    IQ3_XXS = 18
    IQ1_S = 19
    IQ4_NL = 20
    IQ3_S = 21
    IQ2_S = 22
    IQ4_XS = 23
    I8 = 24
    I16 = 25
    I32 = 26
    I64 = 27
    F64 = 28
    IQ1_M = 29
    BF16 = 30
    TQ1_0 = 34
    TQ2_0 = 35
    I2_S = 36  # fork: 2-bit ternary, 128-value blocks, one f32 scale in a 32-byte tail
    TL1 = 38  # fork: ARM LUT layout, hidden f32 scale after the packed bytes
    TL2 = 39  # fork: x86 LUT layout (mainline's MXFP4 reuses this id)


class FileType(IntEnum):
    """`general.file_type` values (LLAMA_FTYPE) as the fork numbers them."""

    ALL_F32 = 0
    MOSTLY_F16 = 1
    MOSTLY_Q8_0 = 7
    MOSTLY_BF16 = 32
    MOSTLY_TQ1_0 = 36
    MOSTLY_TQ2_0 = 37
    MOSTLY_TL1 = 38  # mainline: MOSTLY_MXFP4_MOE
    MOSTLY_TL2 = 39  # mainline: MOSTLY_NVFP4
    MOSTLY_I2_S = 40  # mainline: MOSTLY_Q1_0; the official 2B-4T file uses 40


# The file type a converter records for its main linear-weight type.
FILE_TYPE_OF: dict[GGMLType, FileType] = {
    GGMLType.F32: FileType.ALL_F32,
    GGMLType.F16: FileType.MOSTLY_F16,
    GGMLType.BF16: FileType.MOSTLY_BF16,
    GGMLType.Q8_0: FileType.MOSTLY_Q8_0,
    GGMLType.TQ1_0: FileType.MOSTLY_TQ1_0,
    GGMLType.TQ2_0: FileType.MOSTLY_TQ2_0,
    GGMLType.TL1: FileType.MOSTLY_TL1,
    GGMLType.TL2: FileType.MOSTLY_TL2,
    GGMLType.I2_S: FileType.MOSTLY_I2_S,
}

TERNARY_TYPES = frozenset({GGMLType.I2_S, GGMLType.TL1, GGMLType.TL2, GGMLType.TQ1_0, GGMLType.TQ2_0})
FLOAT_TYPES = (GGMLType.F32, GGMLType.F16, GGMLType.BF16)
DENSE_TYPES = FLOAT_TYPES + (GGMLType.Q8_0, GGMLType.Q6_K)  # what the embedding / LM head may be

# (values per block, bytes per block) for the block types; the fork types are computed below.
_BLOCK_SIZES: dict[GGMLType, tuple[int, int]] = {
    GGMLType(int(t)): size for t, size in GGML_QUANT_SIZES.items() if int(t) in GGMLType._value2member_map_
    and t != GGMLQuantizationType.MXFP4
}


def pad_to(n: int, align: int = ALIGNMENT) -> int:
    """Round `n` up to a multiple of `align`."""
    return (n + align - 1) // align * align


def tl2_packed_nbytes(M: int, K: int) -> int:
    """The fork's TL2 packed size S (C integer arithmetic, left to right), before padding and scale."""
    return ((K - 256) * M // 3 * 5 // 8) + (256 * M // 2 * 4 // 8)


def tensor_nbytes(ggml_type: int, shape: Sequence[int]) -> int:
    """Bytes a tensor of `ggml_type` and numpy-order `shape` (rows, cols) = (ne1, ne0) occupies.

    I2_S and TL1: M·K/4 + 32 (TL1's 32 hold the hidden scale); TL2: pad32(S) + 32. Block types
    need the innermost dimension to be a multiple of the block size. Raises ValueError otherwise.
    """
    t = GGMLType(int(ggml_type))
    shape = tuple(int(d) for d in shape)
    if not shape or any(d <= 0 for d in shape):
        raise ValueError(f"bad shape {shape} for a {t.name} tensor")
    K = shape[-1]
    M = prod(shape[:-1])
    if t in (GGMLType.I2_S, GGMLType.TL1):
        if (M * K) % 4:
            raise ValueError(f"{t.name} needs a multiple of 4 values, shape {shape} has {M * K}")
        return M * K // 4 + 32
    if t == GGMLType.TL2:
        if K < 256 or (M * K) % 4:
            raise ValueError(f"TL2 needs at least 256 columns, shape {shape}")
        return pad_to(tl2_packed_nbytes(M, K)) + 32
    block, size = _BLOCK_SIZES[t]
    if K % block:
        raise ValueError(f"{t.name} needs rows of a multiple of {block} values, shape {shape} has {K}")
    return M * (K // block) * size
