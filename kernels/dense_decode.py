"""Exact row decoders for dense weights (F32, F16, BF16, Q8_0, Q6_K) in plain Numba, any CPU.

Every weight row is a uint8 view of its bytes. Numba has no CPU float16, so F16 is decoded with
integer bit operations (exact, subnormals and inf/nan included); BF16 is a 16-bit shift. Q8_0
and Q6_K follow ggml's block layouts and multiply in gguf-py's order, so rows match
`gguf.quants.dequantize` bit for bit.
"""
from __future__ import annotations

import math

import numpy as np

from ._jit import kernel

# Type codes used inside kernels (GGML type ids, so callers can pass them straight through).
F32, F16, Q8_0, Q6_K, BF16 = 0, 1, 8, 14, 30
Q8_0_BLOCK, Q8_0_BYTES = 32, 34  # f16 d, 32 x int8
Q6_K_BLOCK, Q6_K_BYTES = 256, 210  # ql[128], qh[64], scales int8[16], f16 d

_TWO_POW_112 = np.float32(2.0**112)


@kernel()
def f16_bits_to_f32(h, out):  # noqa: ANN001, ANN201
    """out[i] = float(f16 bits h[i]) exactly; h: uint16[n], out: f32[n]."""
    ou = out.view(np.uint32)
    for i in range(h.shape[0]):
        ou[i] = np.uint32(h[i] & 0x7FFF) << 13  # exponent/mantissa moved into f32 position
    for i in range(h.shape[0]):
        out[i] = out[i] * _TWO_POW_112  # rebias the exponent (exact; f16 subnormals too)
    for i in range(h.shape[0]):
        b = np.uint32(h[i])
        if b & 0x7C00 == 0x7C00:  # inf / nan
            ou[i] = np.uint32(0x7F800000) | ((b & 0x3FF) << 13)
        ou[i] |= (b & 0x8000) << 16


@kernel()
def bf16_bits_to_f32(h, out):  # noqa: ANN001, ANN201
    ou = out.view(np.uint32)
    for i in range(h.shape[0]):
        ou[i] = np.uint32(h[i]) << 16


@kernel()
def _f16_scalar(lo, hi):  # noqa: ANN001, ANN202
    """The f16 with little-endian bytes (lo, hi) as float32, exactly."""
    b = np.int64(lo) | (np.int64(hi) << 8)
    e = (b >> 10) & 0x1F
    m = b & 0x3FF
    if e == 0:
        v = math.ldexp(float(m), -24)
    elif e == 31:
        v = math.inf if m == 0 else math.nan
    else:
        v = math.ldexp(float(1024 + m), int(e) - 25)
    return np.float32(-v if b & 0x8000 else v)


@kernel()
def decode_q8_0(row, out):  # noqa: ANN001, ANN201
    """row: uint8[K/32*34] -> out f32[K]: d (f16) * int8, as gguf-py."""
    for b in range(out.shape[0] // Q8_0_BLOCK):
        o = b * Q8_0_BYTES
        d = _f16_scalar(row[o], row[o + 1])
        for j in range(Q8_0_BLOCK):
            out[b * Q8_0_BLOCK + j] = np.float32(np.int8(row[o + 2 + j])) * d


@kernel()
def decode_q6_k(row, out):  # noqa: ANN001, ANN201
    """row: uint8[K/256*210] -> out f32[K]: (d * scale) * (6-bit q - 32), as gguf-py."""
    for b in range(out.shape[0] // Q6_K_BLOCK):
        o = b * Q6_K_BYTES
        d = _f16_scalar(row[o + 208], row[o + 209])
        for h in range(2):
            for c in range(4):
                for l in range(32):
                    lo = (row[o + 64 * h + 32 * (c & 1) + l] >> (4 * (c >> 1))) & 0xF
                    hi = (row[o + 128 + 32 * h + l] >> (2 * c)) & 3
                    j = 128 * h + 32 * c + l
                    dsc = d * np.float32(np.int8(row[o + 192 + j // 16]))
                    out[b * Q6_K_BLOCK + j] = dsc * np.float32(np.int32(lo | (hi << 4)) - 32)


@kernel()
def decode_row(row, kind, out):  # noqa: ANN001, ANN201
    """Decode one weight row (its bytes) of GGML type `kind` into out f32[K]."""
    if kind == F32:
        out[:] = row.view(np.float32)
    elif kind == F16:
        f16_bits_to_f32(row.view(np.uint16), out)
    elif kind == BF16:
        bf16_bits_to_f32(row.view(np.uint16), out)
    elif kind == Q8_0:
        decode_q8_0(row, out)
    else:
        decode_q6_k(row, out)


@kernel()
def embed(data, kind, ids, out):  # noqa: ANN001, ANN201
    """out[i] = decoded row ids[i] of data[M, row_bytes]."""
    for i in range(ids.shape[0]):
        decode_row(data[ids[i]], kind, out[i])
