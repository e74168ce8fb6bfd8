"""Q6_K quantization in NumPy (ggml's `quantize_row_q6_K_ref`), for `--quant-embd q6_k`.

gguf 0.19 can dequantize Q6_K but not quantize it. Block = 256 values, 210 bytes:
ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16] (int8, one per 16 values), d (f16).
"""
from __future__ import annotations

import numpy as np

QK_K = 256
BLOCK_BYTES = 210
_EPS = 1e-15  # ggml's GROUP_MAX_EPS


def _nearest_int(x: np.ndarray) -> np.ndarray:
    return np.rint(x).astype(np.int32)  # round half to even, as ggml's magic-number rounding


def _make_qx_quants(x: np.ndarray, nmax: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """ggml's make_qx_quants(rmse_type=1) on rows of 16: (scale[n], L[n, 16] in [0, 2*nmax))."""
    amax_idx = np.abs(x).argmax(axis=1)
    mx = x[np.arange(x.shape[0]), amax_idx]  # signed value of largest magnitude  [n]
    live = np.abs(mx) >= _EPS
    safe = np.where(live, mx, 1.0).astype(np.float32)
    w = x * x  # rmse_type 1 weights

    wx = w * x

    def trial(iscale: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # float32 throughout: rint keeps integral values exact and avoids int/float64 round trips
        lv = np.clip(np.rint(iscale[:, None] * x), -nmax, nmax - 1)  # [n, 16]
        sumlx = (wx * lv).sum(axis=1)
        suml2 = (w * lv * lv).sum(axis=1)
        return lv, sumlx, suml2

    lv, sumlx, suml2 = trial(np.float32(-nmax) / safe)
    scale = np.where(suml2 > 0, sumlx / np.where(suml2 > 0, suml2, 1), 0).astype(np.float32)
    best = scale * sumlx
    for step in range(-9, 10):
        if step == 0:
            continue
        lv2, sumlx2, suml22 = trial(np.float32(-(nmax + 0.1 * step)) / safe)
        better = (suml22 > 0) & (sumlx2 * sumlx2 > best * suml22)
        lv = np.where(better[:, None], lv2, lv)
        scale = np.where(better, sumlx2 / np.where(suml22 > 0, suml22, 1), scale).astype(np.float32)
        best = np.where(better, scale * sumlx2, best)
    scale = np.where(live, scale, 0).astype(np.float32)
    return scale, np.where(live[:, None], lv + nmax, 0).astype(np.int32)


def quantize_q6_k(a: np.ndarray) -> np.ndarray:
    """Q6_K bytes of a float32 array whose last dimension is a multiple of 256: uint8[..., n/256*210]."""
    a = np.asarray(a, dtype=np.float32)
    if a.shape[-1] % QK_K:
        raise ValueError(f"Q6_K needs rows of a multiple of {QK_K} values, got {a.shape[-1]}")
    blocks = a.reshape(-1, QK_K)  # [nb, 256]
    nb = blocks.shape[0]
    sub_scale, _ = _make_qx_quants(blocks.reshape(-1, 16))
    sub_scale = sub_scale.reshape(nb, 16)
    idx = np.abs(sub_scale).argmax(axis=1)
    max_scale = sub_scale[np.arange(nb), idx]  # [nb]
    live = np.abs(max_scale) >= _EPS
    iscale = np.where(live, np.float32(-128.0) / np.where(live, max_scale, 1), 0).astype(np.float32)
    d16 = np.where(live, np.float32(1.0) / np.where(live, iscale, 1), 0).astype(np.float16)
    scales = np.minimum(127, _nearest_int(iscale[:, None] * sub_scale)).astype(np.int8)  # [nb, 16]
    dsub = d16.astype(np.float32)[:, None] * scales.astype(np.float32)  # [nb, 16]
    x = blocks.reshape(nb, 16, 16)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.clip(_nearest_int(np.where(dsub[..., None] != 0, x / dsub[..., None], 0)), -32, 31) + 32
    q = np.where(dsub[..., None] != 0, q, 0).astype(np.uint8).reshape(nb, 2, 4, 32)  # [nb, half, quarter, l]
    ql = np.concatenate([q[:, :, 0] & 0xF | (q[:, :, 2] & 0xF) << 4, q[:, :, 1] & 0xF | (q[:, :, 3] & 0xF) << 4], axis=2)
    qh = (q[:, :, 0] >> 4) | (q[:, :, 1] >> 4) << 2 | (q[:, :, 2] >> 4) << 4 | (q[:, :, 3] >> 4) << 6  # [nb, 2, 32]
    out = np.concatenate([ql.reshape(nb, 128), qh.reshape(nb, 64), scales.view(np.uint8),
                          d16.reshape(nb, 1).view(np.uint8)], axis=1)
    return out.reshape(*a.shape[:-1], a.shape[-1] // QK_K * BLOCK_BYTES)
