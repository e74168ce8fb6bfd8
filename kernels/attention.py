"""RoPE, KV-cache store and causal GQA attention in one call per layer (fp32 throughout)."""
from __future__ import annotations

import math

import numba
import numpy as np

from ._jit import kernel
from .threads import get_num_threads

__all__ = ["rope_attend", "rope_attend_ref"]

# Reassociation lets LLVM vectorize the dot products; nothing else is relaxed (no -inf tricks).
_FM = {"reassoc", "contract"}


@kernel(fastmath=_FM)
def _rope(x, cos, sin, neox, rope_dim):  # noqa: ANN001, ANN202
    # x: [heads, hd] rotated in place; cos, sin: [rope_dim/2]
    half = rope_dim // 2
    for h in range(x.shape[0]):
        for i in range(half):
            if neox:
                a, b = x[h, i], x[h, i + half]
                x[h, i] = a * cos[i] - b * sin[i]
                x[h, i + half] = b * cos[i] + a * sin[i]
            else:
                a, b = x[h, 2 * i], x[h, 2 * i + 1]
                x[h, 2 * i] = a * cos[i] - b * sin[i]
                x[h, 2 * i + 1] = b * cos[i] + a * sin[i]


@kernel(fastmath=_FM)
def _attend_head(q, kc, vc, T, scale, scores, out):  # noqa: ANN001, ANN202
    # q: [hd]; kc, vc: [n_ctx, hd] (one kv head); attends over positions [0, T); out: [hd]
    hd = q.shape[0]
    m = np.float32(-3.0e38)
    for t in range(T):
        acc = np.float32(0.0)
        for j in range(hd):
            acc += q[j] * kc[t, j]
        acc *= scale
        scores[t] = acc
        m = max(m, acc)
    total = np.float32(0.0)
    for t in range(T):
        e = np.float32(math.exp(scores[t] - m))
        scores[t] = e
        total += e
    for j in range(hd):
        out[j] = 0.0
    for t in range(T):
        w = scores[t] / total
        for j in range(hd):
            out[j] += w * vc[t, j]


@kernel(fastmath=_FM)
def _rope_store(qkv, cos, sin, neox, rope_dim, kc, vc, start, H, Hkv, hd):  # noqa: ANN001, ANN202
    # qkv: [n, (H + 2*Hkv)*hd] -> q rotated in place, k rotated and v copied into the cache.
    n = qkv.shape[0]
    nq, nkv = H * hd, Hkv * hd
    for i in range(n):
        q = qkv[i, :nq].reshape(H, hd)
        k = qkv[i, nq : nq + nkv].reshape(Hkv, hd)
        v = qkv[i, nq + nkv :].reshape(Hkv, hd)
        _rope(q, cos[i], sin[i], neox, rope_dim)
        _rope(k, cos[i], sin[i], neox, rope_dim)
        for h in range(Hkv):
            kc[h, start + i, :] = k[h]
            vc[h, start + i, :] = v[h]


@kernel(fastmath=_FM)
def _attend_serial(qkv, kc, vc, start, H, Hkv, hd, out):  # noqa: ANN001, ANN202
    n = qkv.shape[0]
    g = H // Hkv
    scale = np.float32(1.0 / math.sqrt(hd))
    scores = np.empty(start + n, np.float32)
    for i in range(n):
        for h in range(H):
            _attend_head(qkv[i, h * hd : (h + 1) * hd], kc[h // g], vc[h // g], start + i + 1, scale,
                         scores, out[i, h * hd : (h + 1) * hd])


@kernel(parallel=True, fastmath=_FM)
def _attend_parallel(qkv, kc, vc, start, H, Hkv, hd, out):  # noqa: ANN001, ANN202
    n = qkv.shape[0]
    g = H // Hkv
    scale = np.float32(1.0 / math.sqrt(hd))
    for ih in numba.prange(n * H):
        i, h = ih // H, ih % H
        scores = np.empty(start + i + 1, np.float32)
        _attend_head(qkv[i, h * hd : (h + 1) * hd], kc[h // g], vc[h // g], start + i + 1, scale,
                     scores, out[i, h * hd : (h + 1) * hd])


def rope_attend(qkv: np.ndarray, cos: np.ndarray, sin: np.ndarray, neox: bool, rope_dim: int,
                kc: np.ndarray, vc: np.ndarray, start: int, n_head: int, n_head_kv: int) -> np.ndarray:
    """Rotate Q and K, store K and V at positions start.., and attend causally.

    Args:
        qkv: f32[n, (n_head + 2*n_head_kv) * hd], the stacked Q, K, V projections (rotated in place).
        cos, sin: f32[n, rope_dim/2] for positions start..start+n.
        kc, vc: f32[n_head_kv, n_ctx, hd], one layer of the KV cache.
    Returns:
        f32[n, n_head * hd].
    """
    n = qkv.shape[0]
    hd = kc.shape[2]
    _rope_store(qkv, cos, sin, neox, rope_dim, kc, vc, start, n_head, n_head_kv, hd)
    out = np.empty((n, n_head * hd), np.float32)
    # Decode is a few µs of work: a parallel region would cost more than it saves.
    if n * (start + n) >= 4096 and get_num_threads() > 1:
        _attend_parallel(qkv, kc, vc, start, n_head, n_head_kv, hd, out)
    else:
        _attend_serial(qkv, kc, vc, start, n_head, n_head_kv, hd, out)
    return out


def rope_attend_ref(qkv: np.ndarray, cos: np.ndarray, sin: np.ndarray, neox: bool, rope_dim: int,
                    kc: np.ndarray, vc: np.ndarray, start: int, n_head: int, n_head_kv: int) -> np.ndarray:
    """NumPy reference of `rope_attend` (same arguments and effects)."""
    n = qkv.shape[0]
    hd = kc.shape[2]
    nq, nkv = n_head * hd, n_head_kv * hd
    q = qkv[:, :nq].reshape(n, n_head, hd).copy()
    k = qkv[:, nq : nq + nkv].reshape(n, n_head_kv, hd).copy()
    v = qkv[:, nq + nkv :].reshape(n, n_head_kv, hd)
    for x in (q, k):
        c, s = cos[:, None, :], sin[:, None, :]
        half = rope_dim // 2
        if neox:
            a, b = x[..., :half].copy(), x[..., half:rope_dim].copy()
            x[..., :half], x[..., half:rope_dim] = a * c - b * s, b * c + a * s
        else:
            a, b = x[..., 0:rope_dim:2].copy(), x[..., 1:rope_dim:2].copy()
            x[..., 0:rope_dim:2], x[..., 1:rope_dim:2] = a * c - b * s, b * c + a * s
    kc[:, start : start + n] = k.transpose(1, 0, 2)
    vc[:, start : start + n] = v.transpose(1, 0, 2)
    T = start + n
    g = n_head // n_head_kv
    keys = np.repeat(kc[:, :T], g, axis=0)  # [n_head, T, hd]
    vals = np.repeat(vc[:, :T], g, axis=0)
    scores = np.einsum("nhd,htd->hnt", q, keys) / np.float32(np.sqrt(hd))
    future = np.arange(T)[None, :] > (start + np.arange(n))[:, None]
    scores[:, future] = -np.inf
    p = np.exp(scores - scores.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.einsum("hnt,htd->nhd", p, vals).reshape(n, nq).astype(np.float32)
