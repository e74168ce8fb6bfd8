"""RoPE, KV-cache store and causal GQA attention in one call per layer (fp32 throughout)."""
from __future__ import annotations

import math

import numba
import numpy as np

from ._jit import kernel
from .threads import get_num_threads, run_threaded

__all__ = ["rope_attend", "rope_attend_ref"]

PARALLEL_WORK = 1 << 16  # query-head-key-dim products (~10 µs) from which two threads pay off

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
def _dots(q, kc, T, scale, s):  # noqa: ANN001, ANN202
    # s[t] = scale * (q . kc[t]) for t < T; four keys per pass over q (one q load feeds 4 FMAs)
    hd = q.shape[0]
    t = 0
    while t + 4 <= T:
        a0 = a1 = a2 = a3 = np.float32(0.0)
        for j in range(hd):
            qj = q[j]
            a0 += qj * kc[t, j]
            a1 += qj * kc[t + 1, j]
            a2 += qj * kc[t + 2, j]
            a3 += qj * kc[t + 3, j]
        s[t], s[t + 1], s[t + 2], s[t + 3] = a0 * scale, a1 * scale, a2 * scale, a3 * scale
        t += 4
    while t < T:
        a0 = np.float32(0.0)
        for j in range(hd):
            a0 += q[j] * kc[t, j]
        s[t] = a0 * scale
        t += 1


@kernel(fastmath=_FM)
def _softmax_numerators(s, T, bits):  # noqa: ANN001, ANN202
    """s[t] = exp(s[t] - max s) for t < T; returns their sum.

    Cephes' expf (range reduction by ln 2 in two parts, degree-6 polynomial, max error 1.3 ulp,
    as accurate as the libm call it replaces) written as plain float and int32 arithmetic so
    LLVM vectorizes it; 2^n is built in `bits` and read back as float32.
    """
    m = np.float32(-3.0e38)
    for t in range(T):
        m = max(m, s[t])
    for t in range(T):
        x = max(s[t] - m, np.float32(-87.0))  # exp(-87) ~ 1.6e-38: below it, the weight is 0 to f32 anyway
        n = (x * np.float32(1.4426950408889634) + np.float32(12582912.0)) - np.float32(12582912.0)  # round(x/ln2)
        r = (x - n * np.float32(0.693359375)) - n * np.float32(-2.12194440e-4)
        p = np.float32(1.9875691500e-4)
        p = p * r + np.float32(1.3981999507e-3)
        p = p * r + np.float32(8.3334519073e-3)
        p = p * r + np.float32(4.1665795894e-2)
        p = p * r + np.float32(1.6666665459e-1)
        p = p * r + np.float32(5.0000001201e-1)
        s[t] = p * r * r + r + np.float32(1.0)
        bits[t] = (np.int32(n) + 127) << 23
    two_n = bits.view(np.float32)
    total = np.float32(0.0)
    for t in range(T):
        e = s[t] * two_n[t]
        s[t] = e
        total += e
    return total


@kernel(fastmath=_FM)
def _weighted_values(p, vc, T, inv, out):  # noqa: ANN001, ANN202
    # out = sum_t p[t] * inv * vc[t]; four values per pass over out
    hd = out.shape[0]
    for j in range(hd):
        out[j] = 0.0
    t = 0
    while t + 4 <= T:
        p0, p1, p2, p3 = p[t] * inv, p[t + 1] * inv, p[t + 2] * inv, p[t + 3] * inv
        for j in range(hd):
            out[j] += p0 * vc[t, j] + p1 * vc[t + 1, j] + p2 * vc[t + 2, j] + p3 * vc[t + 3, j]
        t += 4
    while t < T:
        w = p[t] * inv
        for j in range(hd):
            out[j] += w * vc[t, j]
        t += 1


@kernel(fastmath=_FM)
def _attend_head(q, kc, vc, T, scale, scores, bits, out):  # noqa: ANN001, ANN202
    # q: [hd]; kc, vc: [n_ctx, hd] (one kv head); attends over positions [0, T); out: [hd]
    _dots(q, kc, T, scale, scores)
    total = _softmax_numerators(scores, T, bits)
    _weighted_values(scores, vc, T, np.float32(1.0) / total, out)


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
def _attend_rows(qkv, kc, vc, start, H, Hkv, hd, out, first, step):  # noqa: ANN001, ANN202
    # (head, query) pairs in head-major order, first, first + step, ...: a thread gets every
    # step-th query of each head (causal rows of every length; for one token, every step-th head),
    # and the query heads sharing a KV head run back to back on its cached K and V.
    n = qkv.shape[0]
    g = H // Hkv
    scale = np.float32(1.0 / math.sqrt(hd))
    scores = np.empty(start + n, np.float32)
    bits = np.empty(start + n, np.int32)
    for p in range(first, H * n, step):
        h, i = p // n, p % n
        _attend_head(qkv[i, h * hd : (h + 1) * hd], kc[h // g], vc[h // g], start + i + 1, scale,
                     scores, bits, out[i, h * hd : (h + 1) * hd])


@kernel(fastmath=_FM)
def _attend_serial(qkv, kc, vc, start, H, Hkv, hd, out):  # noqa: ANN001, ANN202
    _attend_rows(qkv, kc, vc, start, H, Hkv, hd, out, 0, 1)


@kernel(parallel=True, fastmath=_FM)
def _attend_parallel(qkv, kc, vc, start, H, Hkv, hd, out, nchunks):  # noqa: ANN001, ANN202
    for c in numba.prange(nchunks):
        _attend_rows(qkv, kc, vc, start, H, Hkv, hd, out, c, nchunks)


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
    threads = get_num_threads()
    # Timed per context-length class; a short context is a few µs, too little for a parallel region.
    run_threaded(("rope_attend", n_head, hd, n > 1, (start + n).bit_length()),
                 lambda *a: _attend_parallel(*a, threads), _attend_serial,
                 qkv, kc, vc, start, n_head, n_head_kv, hd, out,
                 worth_it=n * n_head * (start + n) * hd >= PARALLEL_WORK)
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
