"""Embedding / LM-head kernels: exact row decoding against gguf-py, f32 dots against float64."""
from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as QT
from gguf.quants import dequantize, quantize

from bitnet_kernels import dense_linear, embed_rows, prepare_dense, set_num_threads
from bitnet_kernels._jit import has_avx2

ISAS = ["portable"] + (["avx2"] if has_avx2() else [])
M, K = 45, 512


def _f16_bits(rng: np.random.Generator) -> np.ndarray:
    w = (rng.standard_normal((M, K)) * 0.05).astype(np.float16)
    w.reshape(-1)[:6] = [6.1e-5, -3.0e-7, 0.0, -0.0, 65504.0, 1.0e-6]  # normal edge, subnormals, signed zero, max
    return w


def _q6_k_bytes(rng: np.random.Generator) -> np.ndarray:
    blocks = rng.integers(0, 256, size=(M * K // 256, 210), dtype=np.uint8)
    blocks[:, 208:210] = (rng.uniform(1e-3, 2e-2, M * K // 256).astype(np.float16)).view(np.uint8).reshape(-1, 2)
    return blocks.reshape(M, -1)


@pytest.fixture(scope="module")
def weights() -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """GGML type -> (data as the file holds it, exact f32 values)."""
    rng = np.random.default_rng(7)
    f32 = (rng.standard_normal((M, K)) * 0.05).astype(np.float32)
    f16 = _f16_bits(rng)
    bf16 = (f32.view(np.uint32) >> 16).astype(np.uint16)
    q8 = quantize(f32, QT.Q8_0)
    q6 = _q6_k_bytes(rng)
    return {
        0: (f32, f32),
        1: (f16, f16.astype(np.float32)),
        30: (bf16, (bf16.astype(np.uint32) << 16).view(np.float32)),
        8: (q8, dequantize(q8, QT.Q8_0)),
        14: (q6, dequantize(q6, QT.Q6_K)),
    }


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("gtype", [0, 1, 30, 8, 14])
def test_embed_rows_exact(weights, isa: str, gtype: int) -> None:
    data, exact = weights[gtype]
    w = prepare_dense(data, gtype, (M, K), isa=isa)
    ids = np.array([0, 44, 3, 3, 17])
    rows = embed_rows(w, ids)
    assert rows.dtype == np.float32 and rows.shape == (5, K)
    assert np.array_equal(rows.view(np.uint32), exact[ids].view(np.uint32))  # bit for bit, -0.0 included
    with pytest.raises(IndexError):
        embed_rows(w, np.array([M]))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("gtype", [0, 1, 30, 8, 14])
@pytest.mark.parametrize("threads", [1, 2])
def test_dense_linear_matches_float64(weights, isa: str, gtype: int, threads: int) -> None:
    data, exact = weights[gtype]
    exact = np.where(np.abs(exact) > 100, 0, exact).astype(np.float32)  # keep 65504 out of the dot
    data = data.copy()
    if gtype == 1:
        data.reshape(-1)[4] = 0.0
    w = prepare_dense(data, gtype, (M, K), isa=isa)
    rng = np.random.default_rng(gtype)
    x = rng.standard_normal((3, K)).astype(np.float32)
    set_num_threads(threads)
    y = dense_linear(w, x)
    ref = x.astype(np.float64) @ exact.astype(np.float64).T
    tol = 1e-5 * (np.abs(x).astype(np.float64) @ np.abs(exact).astype(np.float64).T) + 1e-6
    if gtype == 14 and isa == "avx2":  # activations as int16 per 256-block: error <= max|x| / 65534 each
        tol += np.abs(x).max(axis=1, keepdims=True) / 65534 * np.abs(exact).astype(np.float64).sum(axis=1)
    assert y.shape == (3, M) and y.dtype == np.float32
    assert np.all(np.abs(y - ref) <= tol)
    # one token gives the same bits as the same token inside a batch, at any thread count
    y1 = dense_linear(w, x[1])
    assert np.array_equal(y1[0], y[1])
    set_num_threads(1 if threads == 2 else 2)
    assert np.array_equal(dense_linear(w, x), y)


def test_prepare_dense_accepts_raw_bytes_and_rejects_bad_input(weights) -> None:
    data, exact = weights[1]
    w = prepare_dense(data.view(np.uint8).reshape(-1), 1, (M, K))
    assert np.array_equal(embed_rows(w, np.array([2]))[0], exact[2])
    with pytest.raises(ValueError):
        prepare_dense(data, 14, (M, 100))
    with pytest.raises(ValueError):
        prepare_dense(data.reshape(-1)[:10], 1, (M, K))
    with pytest.raises(ValueError):
        prepare_dense(data, 2, (M, K))
