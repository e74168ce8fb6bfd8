"""Plain NumPy references: I2_S packing, ternarization, activation quantization, ternary matmul.

Every fast kernel in this package is tested bit for bit against these functions. The numerics
follow bitnet.cpp (docs: bitnet-cpp.md §4.1.1 and §5); see docs/kernels.md for the byte layout.
"""
from __future__ import annotations

import numpy as np

I2S_BLOCK = 128  # values per I2_S block
I2S_BLOCK_BYTES = 32  # bytes per I2_S block (2 bits per value)
I2S_TAIL_BYTES = 32  # per-tensor tail: f32 scale, then zeros

__all__ = [
    "I2S_BLOCK",
    "I2S_BLOCK_BYTES",
    "I2S_TAIL_BYTES",
    "i2s_nbytes",
    "pack_i2s",
    "unpack_i2s",
    "ternarize_absmean",
    "ternarize_sign",
    "quantize_activations_ref",
    "ternary_linear_ref",
    "rms_norm_ref",
]


def i2s_nbytes(M: int, K: int) -> int:
    """Size in bytes of an I2_S tensor of shape (M, K): packed codes plus the 32-byte tail."""
    return M * K // 4 + I2S_TAIL_BYTES


def _check_i2s_shape(M: int, K: int) -> None:
    if M <= 0 or K <= 0 or K % I2S_BLOCK:
        raise ValueError(f"I2_S needs K to be a positive multiple of {I2S_BLOCK}, got M={M}, K={K}")


def pack_i2s(t: np.ndarray, scale: float) -> np.ndarray:
    """Pack ternary values into bitnet.cpp's canonical I2_S bytes.

    Blocks of 128 flattened values take 32 bytes; value j of a block goes to byte j % 32 at bit
    shift 6 - 2 * (j // 32) (MSB-first groups), as code t + 1. A 32-byte tail follows: the f32
    scale (little-endian) then 28 zero bytes.

    Args:
        t: int8[M, K] with values in {-1, 0, 1}; K a multiple of 128.
        scale: the per-tensor weight scale.

    Returns:
        uint8[M * K // 4 + 32]
    """
    M, K = t.shape
    _check_i2s_shape(M, K)
    if np.any(np.abs(t.astype(np.int16)) > 1):
        raise ValueError("pack_i2s: values must be in {-1, 0, 1}")
    codes = (t.astype(np.uint8) + 1).reshape(-1, 4, 32)  # [blocks, group, lane]; int8 -1 wraps to 0
    packed = (codes[:, 0] << 6) | (codes[:, 1] << 4) | (codes[:, 2] << 2) | codes[:, 3]  # [blocks, 32]
    out = np.zeros(i2s_nbytes(M, K), dtype=np.uint8)
    out[: M * K // 4] = packed.reshape(-1)
    out[M * K // 4 : M * K // 4 + 4] = np.frombuffer(np.float32(scale).astype("<f4").tobytes(), np.uint8)
    return out


def unpack_i2s(raw: np.ndarray, M: int, K: int) -> tuple[np.ndarray, np.float32]:
    """Decode canonical I2_S bytes into (t int8[M, K], scale float32). Code 3 decodes to 0."""
    _check_i2s_shape(M, K)
    raw = np.asarray(raw, dtype=np.uint8).reshape(-1)
    n = M * K // 4
    if raw.size < n + 4:
        raise ValueError(f"I2_S data too short: {raw.size} bytes, need {n + 4} for {M}x{K}")
    b = raw[:n].reshape(-1, 1, 32)  # [blocks, 1, lane]
    shifts = np.array([6, 4, 2, 0], dtype=np.uint8).reshape(1, 4, 1)
    codes = (b >> shifts) & 3  # [blocks, group, lane]
    lut = np.array([-1, 0, 1, 0], dtype=np.int8)
    t = lut[codes].reshape(M, K)
    scale = raw[n : n + 4].copy().view("<f4")[0].astype(np.float32)
    return t, np.float32(scale)


def ternarize_absmean(W: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """BitNet b1.58 absmean ternarization (bitnet-cpp.md §5.1) of a float matrix.

    m = max(mean|W|, 1e-5) (mean accumulated in float64, rounded to float32);
    t = clamp(round_half_even(W * float32(1 / m)), -1, 1) in float32, which is the
    `weight_quant` code the HF and bitnet.cpp converters run.

    Returns:
        (t int8[M, K], m float32)
    """
    W = np.asarray(W, dtype=np.float32)
    m = np.float32(max(np.float32(np.abs(W).mean(dtype=np.float64)), np.float32(1e-5)))
    inv = np.float32(np.float32(1.0) / m)
    t = np.clip(np.rint(W * inv), -1, 1).astype(np.int8)
    return t, m


def ternarize_sign(W: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """llama-quantize's I2_S rule: |w| < 1e-6 -> 0 else sign(w); scale = max|w| (float32)."""
    W = np.asarray(W, dtype=np.float32)
    t = np.where(np.abs(W) < 1e-6, 0, np.sign(W)).astype(np.int8)
    scale = np.float32(np.abs(W).max()) if W.size else np.float32(0)
    return t, scale


def quantize_activations_ref(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row absmax int8 quantization as bitnet.cpp's `quantize_row_i8_s` (§5.2).

    A = max(max|x|, 1e-5) in float64; s = float32(127 / A);
    q = clamp(round_half_even(float32(x * s)), -128, 127).

    Args:
        x: f32[n, K]

    Returns:
        (q int8[n, K], s f32[n])
    """
    x = np.asarray(x, dtype=np.float32)
    absmax = np.abs(x).max(axis=1).astype(np.float64)  # [n]
    s = (127.0 / np.maximum(absmax, 1e-5)).astype(np.float32)  # [n]
    prod = x * s[:, None]  # float32 product
    q = np.clip(np.rint(prod), -128, 127).astype(np.int8)
    return q, s


def ternary_linear_ref(t: np.ndarray, scale: float, q: np.ndarray, s: np.ndarray) -> np.ndarray:
    """y[n, m] = float32(sum_k t[m, k] * q[n, k]) / s[n] * scale, all in float32, in that order.

    Args:
        t: int8[M, K] ternary weights; q: int8[n, K] activations; s: f32[n] activation scales.

    Returns:
        f32[n, M]
    """
    dot = q.astype(np.int32) @ t.astype(np.int32).T  # [n, M], exact
    y = dot.astype(np.float32) / np.asarray(s, dtype=np.float32)[:, None]
    return (y * np.float32(scale)).astype(np.float32)


def rms_norm_ref(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    """RMSNorm times the norm weight, as ggml: f32 squares summed in float64, mean cast to f32,
    scale = 1 / sqrt(mean + eps) in f32, y = (x * scale) * w in f32. x: f32[n, K] -> f32[n, K].

    Summation order (fixed, so kernels match bit for bit): when K % 4 == 0, four lanes k mod 4,
    each summed in order, combined as (l0 + l1) + (l2 + l3); otherwise one sequential sum."""
    x = np.asarray(x, dtype=np.float32)
    n, K = x.shape
    sq = (x * x).astype(np.float64)
    if K % 4 == 0:
        lanes = np.cumsum(sq.reshape(n, K // 4, 4), axis=1)[:, -1]  # cumsum: sequential per lane
        total = (lanes[:, 0] + lanes[:, 1]) + (lanes[:, 2] + lanes[:, 3])
    else:
        total = np.cumsum(sq, axis=1)[:, -1]
    mean = (total / K).astype(np.float32)
    scale = np.float32(1.0) / np.sqrt(mean + np.float32(eps))
    return (x * scale[:, None]) * np.asarray(w, dtype=np.float32)
