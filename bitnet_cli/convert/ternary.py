"""Ternary weights from any checkpoint layout: (t int8[M, K], scale f32) with W ≈ t · scale.

Scale semantics differ by HF linear class (losslessness.md): `autobitlinear` multiplies the
matmul by `weight_scale` (scale = weight_scale), `bitlinear` divides by it (scale = 1/weight_scale).
Master (float) weights are absmean-ternarized (bitnet-cpp.md §5.1).
"""
from __future__ import annotations

import numpy as np

from bitnet_kernels import ternarize_absmean

from bitnet_cli.convert.checkpoint import Checkpoint
from bitnet_cli.convert.families import Family
from bitnet_cli.convert.names import weight_scale_name
from bitnet_cli.errors import ModelFormatError


def unpack_hf_packed(packed: np.ndarray) -> np.ndarray:
    """HF packed uint8[R, K] -> int8[4R, K]: byte [r, c] holds rows r, r+R, r+2R, r+3R, LSB first.

    Codes are t + 1; code 3 never occurs in valid files and decodes to +2 as in transformers,
    so it is rejected by the caller's range check.
    """
    packed = np.asarray(packed, dtype=np.uint8)  # [R, K]
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8).reshape(4, 1, 1)
    codes = (packed[None, :, :] >> shifts) & 3  # [4, R, K]: group g holds rows g*R + r
    return (codes.astype(np.int8) - 1).reshape(4 * packed.shape[0], packed.shape[1])


def pack_hf_packed(t: np.ndarray) -> np.ndarray:
    """Inverse of `unpack_hf_packed` (for tests and fixtures): int8[M, K] -> uint8[M/4, K]."""
    M, K = t.shape
    if M % 4:
        raise ValueError("rows must be a multiple of 4")
    codes = (t.astype(np.int16) + 1).astype(np.uint8).reshape(4, M // 4, K)  # [group, r, K]
    return (codes[0] | (codes[1] << 2) | (codes[2] << 4) | (codes[3] << 6)).astype(np.uint8)


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's Q/K row permutation: HF rotate-half order -> interleaved-pair RoPE order.

    w: [n_head * head_dim, K]; within each head, rows (i, i + d/2) become neighbours (2i, 2i+1).
    """
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _scalar(ckpt: Checkpoint, name: str) -> np.float32:
    if name not in ckpt:
        raise ModelFormatError(f"packed weight without its scale tensor '{name}'", "the checkpoint is incomplete")
    a = ckpt.float32(name).reshape(-1)
    if a.size != 1:
        raise ModelFormatError(f"'{name}' has {a.size} values; expected one per-tensor scale")
    return np.float32(a[0])


def load_ternary(ckpt: Checkpoint, fam: Family, hf_name: str, n_head_perm: int | None) -> tuple[np.ndarray, np.float32]:
    """Read one projection as (t int8[M, K], scale f32); Q/K rows permuted when `n_head_perm`."""
    if fam.layout == "packed" and ckpt.dtype(hf_name) == "U8":
        t = unpack_hf_packed(ckpt.raw(hf_name))  # [M, K]
        if np.any(t > 1):
            raise ModelFormatError(f"'{hf_name}' holds the unused 2-bit code 3", "the packed weight is corrupt")
        ws = _scalar(ckpt, weight_scale_name(hf_name))
        if fam.scale_mode == "multiply":
            scale = ws
        else:
            if ws == 0:
                raise ModelFormatError(f"'{weight_scale_name(hf_name)}' is zero; a bitlinear scale divides")
            scale = np.float32(np.float32(1.0) / ws)
    else:
        w = ckpt.float32(hf_name)  # [M, K]
        if w.ndim != 2:
            raise ModelFormatError(f"'{hf_name}' has shape {w.shape}; expected a matrix")
        t, scale = ternarize_absmean(w)
    if n_head_perm:
        t = permute_qk(t, n_head_perm)
    return np.ascontiguousarray(t), np.float32(scale)
