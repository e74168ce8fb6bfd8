"""Bit-exact checks of the NumPy references against hand-written rules from bitnet-cpp.md."""
from __future__ import annotations

import numpy as np
import pytest

from bitnet_kernels import (
    pack_i2s,
    quantize_activations_ref,
    ternarize_absmean,
    ternarize_sign,
    ternary_linear_ref,
    unpack_i2s,
)


def _ternary(rng: np.random.Generator, M: int, K: int) -> np.ndarray:
    return rng.integers(-1, 2, size=(M, K)).astype(np.int8)


def test_pack_i2s_layout_matches_spec_byte_by_byte() -> None:
    rng = np.random.default_rng(1)
    t = _ternary(rng, 3, 256)
    raw = pack_i2s(t, 0.75)
    assert raw.dtype == np.uint8 and raw.shape == (3 * 256 // 4 + 32,)
    flat = t.reshape(-1).astype(np.int64) + 1
    for i in range(3 * 256):  # value i: block i//128, byte i%32 of the block, shift 6 - 2*((i%128)//32)
        b, j = divmod(i, 128)
        byte = raw[32 * b + j % 32]
        assert (byte >> (6 - 2 * (j // 32))) & 3 == flat[i]
    tail = raw[3 * 64 :]
    assert tail[:4].view("<f4")[0] == np.float32(0.75)
    assert not tail[4:].any()


@pytest.mark.parametrize("M,K", [(1, 128), (7, 384), (33, 1280)])
def test_pack_unpack_roundtrip(M: int, K: int) -> None:
    rng = np.random.default_rng(M * K)
    t = _ternary(rng, M, K)
    t2, scale = unpack_i2s(pack_i2s(t, 1.25), M, K)
    assert np.array_equal(t2, t) and isinstance(scale, np.float32) and scale == np.float32(1.25)


def test_unpack_maps_code_3_to_zero_and_rejects_bad_shapes() -> None:
    raw = np.full(32 + 32, 0xFF, dtype=np.uint8)
    t, _ = unpack_i2s(raw, 1, 128)
    assert not t.any()
    with pytest.raises(ValueError):
        pack_i2s(np.zeros((2, 100), np.int8), 1.0)
    with pytest.raises(ValueError):
        unpack_i2s(raw[:20], 1, 128)


def test_ternarize_absmean_rule() -> None:
    rng = np.random.default_rng(2)
    W = rng.standard_normal((16, 128)).astype(np.float32)
    t, m = ternarize_absmean(W)
    assert m.dtype == np.float32 and m == np.float32(np.abs(W.astype(np.float64)).mean())
    expected = np.clip(np.rint(W * np.float32(1 / m)), -1, 1)
    assert np.array_equal(t, expected.astype(np.int8))
    assert set(np.unique(t)) <= {-1, 0, 1}
    _, m0 = ternarize_absmean(np.zeros((2, 128), np.float32))
    assert m0 == np.float32(1e-5)


def test_ternarize_sign_rule() -> None:
    W = np.array([[0.5, -0.5, 5e-7, -2e-7, 0.0, 3.0]], dtype=np.float32)
    t, scale = ternarize_sign(W)
    assert t.tolist() == [[1, -1, 0, 0, 0, 1]] and scale == np.float32(3.0)


def test_quantize_activations_ref_rounding_and_floor() -> None:
    x = np.array([[127.0, 0.5, 1.5, -2.5, -127.0], [0, 0, 0, 0, 0]], dtype=np.float32)
    q, s = quantize_activations_ref(x)
    assert s[0] == np.float32(1.0)
    assert q[0].tolist() == [127, 0, 2, -2, -127]  # half to even
    assert s[1] == np.float32(127 / 1e-5) and not q[1].any()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 256)).astype(np.float32) * 3
    q, s = quantize_activations_ref(x)
    absmax = np.abs(x).max(axis=1).astype(np.float64)
    assert np.array_equal(s, (127.0 / absmax).astype(np.float32))
    assert np.array_equal(q, np.clip(np.rint(x * s[:, None]), -128, 127).astype(np.int8))


def test_ternary_linear_ref_op_order() -> None:
    rng = np.random.default_rng(4)
    t = _ternary(rng, 5, 128)
    q = rng.integers(-128, 128, size=(3, 128)).astype(np.int8)
    s = np.array([0.7, 1.3, 40.0], np.float32)
    y = ternary_linear_ref(t, np.float32(0.37), q, s)
    for n in range(3):
        for m in range(5):
            d = int(np.dot(t[m].astype(np.int64), q[n].astype(np.int64)))
            assert y[n, m] == np.float32(np.float32(d) / s[n]) * np.float32(0.37)
    assert y.dtype == np.float32 and y.shape == (3, 5)
