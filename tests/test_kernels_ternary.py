"""Ternary linear and activation kernels, bit for bit against the NumPy references.

Every kernel family this CPU can run is covered: the portable plain-Numba path always, the AVX2
intrinsics path when the CPU has AVX2, with every GEMM register block and odd shapes.
"""
from __future__ import annotations

import numpy as np
import pytest

from bitnet_kernels import (
    pack_i2s,
    prepare_i2s,
    quantize_activations,
    quantize_activations_ref,
    rms_norm,
    rms_norm_quantize,
    rms_norm_ref,
    set_num_threads,
    stack_ternary,
    ternary_linear,
    ternary_linear_ref,
)
from bitnet_kernels import params as P
from bitnet_kernels._jit import has_avx2, kernel_isa
from bitnet_kernels.i2s_common import interleave4

ISAS = ["portable"] + (["avx2"] if has_avx2() else [])
SHAPES = [(1, 128), (37, 384), (130, 256), (5, 2304)]  # M odd, not a multiple of tiles; K % 128 == 0


@pytest.fixture(scope="module")
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def _case(rng: np.random.Generator, M: int, K: int, n: int):
    t = rng.integers(-1, 2, size=(M, K)).astype(np.int8)
    scale = np.float32(rng.uniform(0.1, 2.0))
    x = (rng.standard_normal((n, K)) * rng.uniform(0.1, 10)).astype(np.float32)
    x[0, rng.integers(K)] = 60.0  # an outlier, so rows get different scales
    q, s = quantize_activations_ref(x)
    return t, scale, q, s


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("M,K", SHAPES)
@pytest.mark.parametrize("n", [1, 3, 9])
def test_ternary_linear_bit_exact(rng, isa: str, threads: int, M: int, K: int, n: int) -> None:
    t, scale, q, s = _case(rng, M, K, n)
    set_num_threads(threads)
    w = prepare_i2s(pack_i2s(t, scale), M, K, isa=isa)
    assert w.isa == isa and w.scale == scale
    y = ternary_linear(w, q, s)
    assert y.dtype == np.float32 and y.shape == (n, M)
    assert np.array_equal(y, ternary_linear_ref(t, scale, q, s))


@pytest.mark.skipif(not has_avx2(), reason="the AVX2 tiles need AVX2")
@pytest.mark.parametrize("block", ["2x4", "4x2", "1x4"])
@pytest.mark.parametrize("tok_block", [4, 5, 128])
@pytest.mark.parametrize("chunks", [1, 3])
def test_every_gemm_tile_config(rng, block: str, tok_block: int, chunks: int) -> None:
    M, K, n = 19, 2176, 11  # 17 blocks: crosses the 16-block int16 flush
    t, scale, q, s = _case(rng, M, K, n)
    q[:, :] = np.where(rng.random(q.shape) < 0.5, -128, 127)  # extreme sums: no int16 overflow
    set_num_threads(2)
    P.set_params("i2_s", M, K, "gemm", 2, {"block": block, "tok_block": tok_block, "chunks": chunks})
    P.set_params("i2_s", M, K, "gemm", 1, {"block": block, "tok_block": tok_block})
    try:
        w = prepare_i2s(pack_i2s(t, scale), M, K, isa="avx2")
        ref = ternary_linear_ref(t, scale, q, s)
        assert np.array_equal(ternary_linear(w, q, s), ref)
        set_num_threads(1)
        assert np.array_equal(ternary_linear(w, q, s), ref)
    finally:
        P.clear()


@pytest.mark.parametrize("isa", ISAS)
def test_gemv_prefetch_and_chunks(rng, isa: str) -> None:
    M, K = 67, 640
    t, scale, q, s = _case(rng, M, K, 1)
    w = prepare_i2s(pack_i2s(t, scale), M, K, isa=isa)
    set_num_threads(2)
    for pf, chunks in [(0, 1), (4096, 5)]:
        P.set_params("i2_s", M, K, "gemv", 2, {"pf": pf, "chunks": chunks})
        assert np.array_equal(ternary_linear(w, q, s), ternary_linear_ref(t, scale, q, s))
    P.clear()


@pytest.mark.skipif(not has_avx2(), reason="the AVX2 GEMV needs AVX2")
@pytest.mark.parametrize("threads", [1, 2])
def test_gemv_extreme_activations_cross_the_int16_window(rng, threads: int) -> None:
    M, K = 23, 2176  # 5 groups of 4 rows and 3 rows after them; 17 blocks: two 8-block windows and 1
    t, scale, q, s = _case(rng, M, K, 1)
    t[:4] = 1  # all codes 2: the largest int16 sums (a 9-block window would overflow)
    t[4:8] = np.where(rng.random((4, K)) < 0.5, -1, 1)
    for x in (-128, 127):
        q[:, :] = x
        set_num_threads(threads)
        w = prepare_i2s(pack_i2s(t, scale), M, K, isa="avx2")
        assert np.array_equal(ternary_linear(w, q, s), ternary_linear_ref(t, scale, q, s))


@pytest.mark.parametrize("M", [1, 8, 11])
def test_interleave4_layout(M: int) -> None:
    K = 256
    codes = np.arange(M * K // 4, dtype=np.uint32).astype(np.uint8)
    out = interleave4(codes, M, K)
    kb = K // 4
    for r in range(M):
        for b in range(K // 128):
            at = (r - r % 4) * kb + b * 128 + r % 4 * 32 if r < M // 4 * 4 else r * kb + b * 32
            assert np.array_equal(out[at : at + 32], codes[r * kb + b * 32 : r * kb + b * 32 + 32])
    assert np.array_equal(interleave4(out, M, K, inverse=True), codes)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("rows", [(5, 3, 8), (8, 4, 6)])  # parts that split 4-row groups, and not
def test_stack_ternary_keeps_each_scale(rng, isa: str, rows: tuple[int, ...]) -> None:
    parts = [_case(rng, M, 256, 2) for M in rows]
    q, s = parts[0][2], parts[0][3]
    ws = [prepare_i2s(pack_i2s(t, sc), t.shape[0], 256, isa=isa) for t, sc, _, _ in parts]
    y = ternary_linear(stack_ternary(ws), q, s)
    ref = np.concatenate([ternary_linear_ref(t, sc, q, s) for t, sc, _, _ in parts], axis=1)
    assert np.array_equal(y, ref)


def test_prepare_i2s_reads_a_readonly_memory_view(rng) -> None:
    from bitnet_kernels.i2s_common import _interleave4

    t, scale, q, s = _case(rng, 9, 128, 1)
    raw = pack_i2s(t, scale)
    prepare_i2s(raw, 9, 128)
    compiled = len(_interleave4.signatures)
    raw.flags.writeable = False
    w = prepare_i2s(raw, 9, 128)
    assert len(_interleave4.signatures) == compiled  # a mapped file compiles nothing new at load
    assert np.array_equal(ternary_linear(w, q, s), ternary_linear_ref(t, scale, q, s))
    with pytest.raises(ValueError):
        prepare_i2s(raw, 9, 100)


def test_isa_override(monkeypatch) -> None:
    monkeypatch.setenv("BITNET_KERNELS", "portable")
    assert kernel_isa() == "portable"
    monkeypatch.setenv("BITNET_KERNELS", "auto")
    assert kernel_isa() == ("avx2" if has_avx2() else "portable")


@pytest.mark.parametrize("n,K", [(1, 128), (4, 2560), (3, 77)])
def test_quantize_activations_bit_exact(rng, n: int, K: int) -> None:
    x = (rng.standard_normal((n, K)) * 3).astype(np.float32)
    x[-1] = 0.0  # all-zero row: the 1e-5 floor
    q, s = quantize_activations(x)
    qr, sr = quantize_activations_ref(x)
    assert np.array_equal(q, qr) and np.array_equal(s, sr)
    # exact ties of x*s land on .5 and must round to even
    xt = np.array([[127.0, 2.5, -3.5, 0.5, -0.5]], np.float32)
    assert quantize_activations(xt)[0].tolist() == [[127, 2, -4, 0, 0]]


@pytest.mark.parametrize("K", [384, 77])
def test_rms_norm_and_fused_quantize_bit_exact(rng, K: int) -> None:
    x = (rng.standard_normal((3, K)) * 4).astype(np.float32)
    w = rng.uniform(0.5, 2.0, K).astype(np.float32)
    y = rms_norm(x, w, 1e-5)
    assert np.array_equal(y, rms_norm_ref(x, w, 1e-5))
    q, s = rms_norm_quantize(x, w, 1e-5)
    qr, sr = quantize_activations_ref(rms_norm_ref(x, w, 1e-5))
    assert np.array_equal(q, qr) and np.array_equal(s, sr)
    # the norm itself: close to the float64 definition
    exact = x / np.sqrt((x.astype(np.float64) ** 2).mean(axis=1, keepdims=True) + 1e-5) * w
    assert np.allclose(y, exact, rtol=1e-5, atol=1e-6)


def test_adaptive_threads_fall_back_to_serial_when_parallel_is_slow() -> None:
    from bitnet_kernels.threads import Adaptive

    a = Adaptive(probe_every=8, max_interval=8)
    a.enabled = True
    key = ("i2_s", 1, 1, "gemv")
    picks = []
    for _ in range(64):
        par = a.use_parallel(key)
        picks.append(par)
        a.record(key, par, 10e-3 if par else 1e-3)  # a busy core: the parallel call waits 10 ms
    assert picks[0] and not picks[1]  # starts parallel, measures serial next
    assert sum(picks[8:]) <= 64 // 8  # afterwards only probes run parallel
    calm = Adaptive(probe_every=8, max_interval=8)
    calm.enabled = True
    picks = []
    for _ in range(64):
        par = calm.use_parallel(key)
        picks.append(par)
        calm.record(key, par, 1e-4 if par else 2e-4)
    assert sum(picks[8:]) >= 56 - 8  # parallel wins when it is faster


def test_portable_mode_never_imports_avx2_modules() -> None:
    import os
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, bitnet_kernels as bk\n"
        "t = np.ones((8, 128), np.int8)\n"
        "w = bk.prepare_i2s(bk.pack_i2s(t, 1.0), 8, 128)\n"
        "q, s = bk.quantize_activations(np.ones((2, 128), np.float32))\n"
        "assert w.isa == 'portable' and np.array_equal(bk.ternary_linear(w, q, s), bk.ternary_linear_ref(t, 1.0, q, s))\n"
        "d = bk.prepare_dense(np.zeros(8 * 256 * 2, np.uint8), 1, (8, 256))\n"
        "bk.dense_linear(d, np.ones((1, 256), np.float32))\n"
        "bad = [m for m in sys.modules if m.endswith(('_avx2', 'gemm_avx2'))]\n"
        "assert d.isa == 'portable' and not bad, bad\n"
    )
    env = {**os.environ, "BITNET_KERNELS": "portable"}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]


def test_adaptive_threads_recover_from_a_cold_first_parallel_call() -> None:
    """The first parallel call pays page faults (10x slower); parallel must still win afterwards."""
    from bitnet_kernels.threads import Adaptive

    a = Adaptive(probe_every=16, max_interval=2048)
    a.enabled = True
    key = ("f16", 2, 2, "gemv")
    picks = []
    for call in range(40):
        par = a.use_parallel(key)
        picks.append(par)
        a.record(key, par, (0.150 if call == 0 else 0.020) if par else 0.045)
    assert picks[3] and picks[4:].count(False) <= 2  # parallel from the 4th call; rare serial probes


@pytest.mark.parametrize("n", [1, 3, 40])
@pytest.mark.parametrize("norm", [True, False])
def test_relu2_glu_quantize_bit_exact(rng, n: int, norm: bool) -> None:
    from bitnet_kernels import relu2_glu_quantize

    n_ff = 96
    gu = (rng.standard_normal((n, 2 * n_ff)) * 3).astype(np.float32)
    w = rng.uniform(0.5, 2.0, n_ff).astype(np.float32) if norm else None
    h = np.square(np.maximum(gu[:, :n_ff], np.float32(0))) * gu[:, n_ff:]
    qr, sr = quantize_activations_ref(rms_norm_ref(h, w, 1e-5) if norm else h)
    q, s = relu2_glu_quantize(gu, n_ff, w, 1e-5)
    assert np.array_equal(q, qr) and np.array_equal(s, sr)
    with pytest.raises(ValueError, match="expected"):
        relu2_glu_quantize(gu[:, 1:], n_ff, w, 1e-5)


@pytest.mark.parametrize("threads", [1, 2])
def test_rms_norm_quantize_many_rows_bit_exact(rng, threads: int) -> None:
    import bitnet_kernels as bk

    x = (rng.standard_normal((37, 256)) * 4).astype(np.float32)
    w = rng.uniform(0.5, 2.0, 256).astype(np.float32)
    old = bk.get_num_threads()
    bk.set_num_threads(threads)
    try:
        q, s = rms_norm_quantize(x, w, 1e-5)
    finally:
        bk.set_num_threads(old)
    qr, sr = quantize_activations_ref(rms_norm_ref(x, w, 1e-5))
    assert np.array_equal(q, qr) and np.array_equal(s, sr)


def test_weights_prepared_before_tuning_use_the_new_parameters(rng) -> None:
    import bitnet_kernels as bk

    M, K = 64, 256
    t = rng.integers(-1, 2, size=(M, K), dtype=np.int8)
    w = bk.prepare_i2s(bk.pack_i2s(t, 0.5), M, K)
    q, s = quantize_activations(rng.standard_normal((3, K)).astype(np.float32))
    want = ternary_linear_ref(t, np.float32(0.5), q, s)
    threads = bk.get_num_threads()
    try:
        assert np.array_equal(bk.ternary_linear(w, q, s), want)
        before = w._plans[("gemm", threads)].params
        other = {"tok_block": 32 if before.get("tok_block") != 32 else 128, "chunks": 1}
        P.set_params("i2_s", M, K, "gemm", threads, other)
        assert np.array_equal(bk.ternary_linear(w, q, s), want)
        assert w._plans[("gemm", threads)].params["tok_block"] == other["tok_block"]
    finally:
        P.remove(M, K)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n", [1, 5])
def test_kernel_call_is_what_ternary_linear_runs(rng, isa: str, threads: int, n: int) -> None:
    from bitnet_kernels.linear import kernel_call

    t, scale, q, s = _case(rng, 37, 384, n)
    set_num_threads(threads)
    w = prepare_i2s(pack_i2s(t, scale), 37, 384, isa=isa)
    out = np.full((n, 37), np.nan, np.float32)
    kernel_call(w, n)(q, s, out)
    assert np.array_equal(out, ternary_linear_ref(t, scale, q, s))
