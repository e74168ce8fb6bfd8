"""rope_attend (Numba) against its NumPy reference: prefill, decode, GQA, both RoPE styles."""
from __future__ import annotations

import numpy as np
import pytest

import bitnet_kernels as K


@pytest.mark.parametrize("neox", [True, False])
@pytest.mark.parametrize("H,Hkv,start,n", [(4, 2, 0, 7), (4, 4, 5, 1), (6, 2, 9, 3), (4, 1, 0, 70)])
def test_rope_attend_matches_reference(neox, H, Hkv, start, n):
    rng = np.random.default_rng(H * 100 + start + n)
    hd, n_ctx = 16, 96
    qkv = rng.standard_normal((n, (H + 2 * Hkv) * hd)).astype(np.float32)
    angles = rng.uniform(0, 6, (n, hd // 2)).astype(np.float32)
    cos, sin = np.cos(angles), np.sin(angles)
    kc = rng.standard_normal((Hkv, n_ctx, hd)).astype(np.float32)
    vc = rng.standard_normal((Hkv, n_ctx, hd)).astype(np.float32)
    kc2, vc2, qkv2 = kc.copy(), vc.copy(), qkv.copy()
    got = K.rope_attend(qkv, cos, sin, neox, hd, kc, vc, start, H, Hkv)
    want = K.rope_attend_ref(qkv2, cos, sin, neox, hd, kc2, vc2, start, H, Hkv)
    np.testing.assert_allclose(kc, kc2, rtol=1e-6, atol=1e-6)  # the same K, V were stored
    np.testing.assert_allclose(vc, vc2, rtol=0, atol=0)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_rope_attend_is_causal():
    rng = np.random.default_rng(0)
    H, Hkv, hd, n = 2, 1, 8, 5
    qkv = rng.standard_normal((n, (H + 2 * Hkv) * hd)).astype(np.float32)
    cos, sin = np.ones((n, hd // 2), np.float32), np.zeros((n, hd // 2), np.float32)
    kc, vc = np.zeros((Hkv, 16, hd), np.float32), np.zeros((Hkv, 16, hd), np.float32)
    out = K.rope_attend(qkv.copy(), cos, sin, True, hd, kc, vc, 0, H, Hkv)
    # The first token can only see itself: its output is its own V.
    v0 = qkv[0, (H + Hkv) * hd :]
    np.testing.assert_allclose(out[0, :hd], v0, rtol=1e-6)
