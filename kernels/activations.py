"""Activation quantization (bitnet.cpp §5.2) and RMSNorm, alone or fused, in plain Numba.

These touch K floats per token (a few µs), so plain loops are enough; fusing RMSNorm with the
quantization saves one pass over x and one output array. A prompt's rows are independent, so
for many rows the fused kernels split them over the threads (one parallel region per call).
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ._jit import kernel
from .threads import get_num_threads, run_threaded

__all__ = ["quantize_activations", "rms_norm", "rms_norm_quantize", "relu2_glu_quantize"]

PARALLEL_ROWS = 16  # fewer rows are a few µs of work: a parallel region would cost more


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
def _rms_norm_quantize_rows(x, w, eps, q, s, r0, r1):  # noqa: ANN001, ANN202
    buf = np.empty(x.shape[1], np.float32)  # one normalized row, stays in L1
    for i in range(r0, r1):
        _rms_row(x[i], w, eps, buf)
        s[i] = _quantize_row(buf, q, i)


@kernel()
def _rms_norm_quantize(x, w, eps, q, s):  # noqa: ANN001, ANN202
    _rms_norm_quantize_rows(x, w, eps, q, s, 0, x.shape[0])


@kernel(parallel=True)
def _rms_norm_quantize_par(x, w, eps, q, s, nchunks):  # noqa: ANN001, ANN202
    n = x.shape[0]
    per = (n + nchunks - 1) // nchunks
    for c in prange(nchunks):
        _rms_norm_quantize_rows(x, w, eps, q, s, min(n, c * per), min(n, (c + 1) * per))


@kernel()
def _relu2_glu_rows(gu, n_ff, w, use_norm, eps, q, s, r0, r1):  # noqa: ANN001, ANN202
    h = np.empty(n_ff, np.float32)
    for i in range(r0, r1):
        for k in range(n_ff):
            m = max(gu[i, k], np.float32(0.0))
            h[k] = (m * m) * gu[i, n_ff + k]  # np.square(np.maximum(gate, 0)) * up
        if use_norm:
            _rms_row(h, w, eps, h)
        s[i] = _quantize_row(h, q, i)


@kernel()
def _relu2_glu(gu, n_ff, w, use_norm, eps, q, s):  # noqa: ANN001, ANN202
    _relu2_glu_rows(gu, n_ff, w, use_norm, eps, q, s, 0, gu.shape[0])


@kernel(parallel=True)
def _relu2_glu_par(gu, n_ff, w, use_norm, eps, q, s, nchunks):  # noqa: ANN001, ANN202
    n = gu.shape[0]
    per = (n + nchunks - 1) // nchunks
    for c in prange(nchunks):
        _relu2_glu_rows(gu, n_ff, w, use_norm, eps, q, s, min(n, c * per), min(n, (c + 1) * per))


def _prep(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return (x.reshape(1, -1) if x.ndim == 1 else x), np.ascontiguousarray(w, dtype=np.float32)


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    """RMSNorm f32[n, K] times the norm weight w[K], as ggml computes it (`rms_norm_ref`)."""
    x, w = _prep(x, w)
    return _rms_norm(x, w, np.float32(eps))


def _rows(key: tuple, n: int, serial, parallel, *args) -> None:  # noqa: ANN001
    """`serial(*args)`, or `parallel(*args, threads)` over the threads for a prompt's many rows."""
    threads = get_num_threads()
    run_threaded(key, lambda *a: parallel(*a, threads), serial, *args, worth_it=n >= PARALLEL_ROWS)


def rms_norm_quantize(x: np.ndarray, w: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """`quantize_activations(rms_norm(x, w, eps))` in one pass: (q int8[n, K], s f32[n])."""
    x, w = _prep(x, w)
    n, K = x.shape
    q, s, eps = np.empty((n, K), np.int8), np.empty(n, np.float32), np.float32(eps)
    _rows(("rms_norm_quantize", K), n, _rms_norm_quantize, _rms_norm_quantize_par, x, w, eps, q, s)
    return q, s


def relu2_glu_quantize(gate_up: np.ndarray, n_ff: int, sub_norm: np.ndarray | None,
                       eps: float) -> tuple[np.ndarray, np.ndarray]:
    """The FFN's hidden activations, quantized: h = relu(gate)² · up, RMS-normed by `sub_norm`
    (when given), then per-row int8 — bit-exact with `quantize_activations(rms_norm(h, ...))`.

    Args:
        gate_up: f32[n, 2*n_ff], gate then up (the stacked projection's output).
    """
    gu = np.ascontiguousarray(gate_up, dtype=np.float32)
    n = gu.shape[0]
    if gu.shape[1] != 2 * n_ff:
        raise ValueError(f"relu2_glu_quantize: expected f32[n, {2 * n_ff}], got {list(gu.shape)}")
    use_norm = sub_norm is not None
    w = np.ascontiguousarray(sub_norm if use_norm else np.ones(1), dtype=np.float32)
    q, s, eps = np.empty((n, n_ff), np.int8), np.empty(n, np.float32), np.float32(eps)
    _rows(("relu2_glu_quantize", n_ff), n, _relu2_glu, _relu2_glu_par, gu, n_ff, w, use_norm, eps, q, s)
    return q, s
