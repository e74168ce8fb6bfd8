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


def test_softmax_exp_within_two_ulp_of_float64():
    from bitnet_kernels.attention import _softmax_numerators

    x = np.concatenate([np.linspace(-90, 0, 20001), [0.0, -1e-7, -0.5, -87.0, -86.9]]).astype(np.float32)
    s, bits = x.copy(), np.empty(x.size, np.int32)
    total = _softmax_numerators(s, x.size, bits)  # max is 0, so s becomes exp(x)
    want = np.exp(x.astype(np.float64))
    ok = x > -87.0
    assert np.all(np.abs(s[ok] - want[ok]) <= 2 * np.spacing(want[ok].astype(np.float32)))
    assert np.all(s[~ok] <= np.float32(2e-38)) and s[np.argmax(x)] == 1.0
    assert abs(total - want.sum()) <= 1e-5 * want.sum()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("H,Hkv,hd,start,n", [(4, 2, 16, 0, 80), (8, 4, 64, 200, 1)])  # prefill, decode
def test_rope_attend_parallel_equals_serial(threads, H, Hkv, hd, start, n):
    from bitnet_kernels.attention import PARALLEL_WORK

    assert n * H * (start + n) * hd >= PARALLEL_WORK  # the parallel path when threads > 1
    rng = np.random.default_rng(7)
    qkv = rng.standard_normal((n, (H + 2 * Hkv) * hd)).astype(np.float32)
    angles = rng.uniform(0, 6, (n, hd // 2)).astype(np.float32)
    cos, sin = np.cos(angles), np.sin(angles)
    past = rng.standard_normal((2, Hkv, start + n, hd)).astype(np.float32)
    outs = []
    old = K.get_num_threads()
    K.threads.ADAPTIVE.reset()
    try:
        for t in (1, threads):
            K.set_num_threads(t)
            kc, vc = past[0].copy(), past[1].copy()
            outs.append(K.rope_attend(qkv.copy(), cos, sin, True, hd, kc, vc, start, H, Hkv))
    finally:
        K.set_num_threads(old)
    assert np.array_equal(outs[0], outs[1])
