"""Activation quantization (bitnet.cpp §5.2) and RMSNorm, alone or fused, in plain Numba.

These touch K floats per token (a few µs), so plain loops are enough; fusing RMSNorm with the
quantization saves one pass over x and one output array.
"""
from __future__ import annotations

import numpy as np

from ._jit import kernel

__all__ = ["quantize_activations", "rms_norm", "rms_norm_quantize"]


@kernel()
def _quantize_row(x, q, i):  # noqa: ANN001, ANN202
    """Quantize x[K] (f32) into q[i]; returns s. absmax is exact in f32, 127/A is taken in f64."""
    K = x.shape[0]
    amax = np.float32(0.0)
    for k in range(K):
        a = abs(x[k])
        if a > amax:
            amax = a
    A = max(np.float64(amax), 1e-5)
    s = np.float32(127.0 / A)
    for k in range(K):
        v = np.rint(x[k] * s)  # f32 product, round half to even
        q[i, k] = np.int8(min(max(v, np.float32(-128.0)), np.float32(127.0)))
    return s


@kernel()
def _quantize(x):  # noqa: ANN001, ANN202
    n, K = x.shape
    q = np.empty((n, K), np.int8)
    s = np.empty(n, np.float32)
    for i in range(n):
        s[i] = _quantize_row(x[i], q, i)
    return q, s


def quantize_activations(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row absmax int8: (q int8[n, K], s f32[n]), bit-exact with `quantize_activations_ref`."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x.reshape(1, -1)
    return _quantize(x)


@kernel()
def _rms_row(x, w, eps, y):  # noqa: ANN001, ANN202
    """ggml's RMSNorm: f32 squares summed in f64, mean as f32, 1/sqrt in f32, then x*scale*w.

    The f64 sum runs in 4 interleaved lanes (k mod 4) added as (0+1)+(2+3): a sequential f64
    chain is latency-bound (3x the cost of the quantization it feeds); `rms_norm_ref` matches.
    """
    K = x.shape[0]
    if K % 4:
        acc = 0.0
        for k in range(K):
            acc += np.float64(x[k] * x[k])
    else:
        a0 = a1 = a2 = a3 = 0.0
        for k in range(0, K, 4):
            a0 += np.float64(x[k] * x[k])
            a1 += np.float64(x[k + 1] * x[k + 1])
            a2 += np.float64(x[k + 2] * x[k + 2])
            a3 += np.float64(x[k + 3] * x[k + 3])
        acc = (a0 + a1) + (a2 + a3)
    mean = np.float32(acc / K)
    scale = np.float32(1.0) / np.sqrt(mean + eps)
    for k in range(K):
        y[k] = x[k] * scale * w[k]


@kernel()
def _rms_norm(x, w, eps):  # noqa: ANN001, ANN202
    n, K = x.shape
    y = np.empty((n, K), np.float32)
    for i in range(n):
        _rms_row(x[i], w, eps, y[i])
    return y


@kernel()
def _rms_norm_quantize(x, w, eps):  # noqa: ANN001, ANN202
    n, K = x.shape
    q = np.empty((n, K), np.int8)
    s = np.empty(n, np.float32)
    buf = np.empty(K, np.float32)  # one normalized row, stays in L1
    for i in range(n):
        _rms_row(x[i], w, eps, buf)
        s[i] = _quantize_row(buf, q, i)
    return q, s


def _prep(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return (x.reshape(1, -1) if x.ndim == 1 else x), np.ascontiguousarray(w, dtype=np.float32)


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    """RMSNorm f32[n, K] times the norm weight w[K], as ggml computes it (`rms_norm_ref`)."""
    x, w = _prep(x, w)
    return _rms_norm(x, w, np.float32(eps))


def rms_norm_quantize(x: np.ndarray, w: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """`quantize_activations(rms_norm(x, w, eps))` in one pass: (q int8[n, K], s f32[n])."""
    x, w = _prep(x, w)
    return _rms_norm_quantize(x, w, np.float32(eps))
