"""TL1 / TL2 (bitnet.cpp lookup-table formats): byte layout, tile tables, references, kernels."""
from __future__ import annotations

import numpy as np
import pytest

from bitnet_kernels import _jit
from bitnet_kernels.tl1 import (
    pack_tl1,
    prepare_tl1,
    tl1_accumulate_ref,
    tl1_linear,
    tl1_linear_ref,
    tl1_matmul_int,
    tl1_tables,
    unpack_tl1,
)
from bitnet_kernels.tl2 import (
    pack_tl2,
    prepare_tl2,
    tl2_accumulate_ref,
    tl2_linear,
    tl2_linear_ref,
    tl2_matmul_int,
    stack_tl2,
    tl2_linear_stack,
    tl2_tables,
    unpack_tl2,
)
from bitnet_kernels.tl_common import (
    SHIPPED_TL1,
    SHIPPED_TL2,
    TileConfig,
    check_tile_config,
    choose_tile_config,
    prepare_tl,
    quantize_activations_tl,
    quantize_activations_tl_ref,
    tile_configs,
    tl_linear,
    tl_nbytes,
)

SHAPES_TL1 = [(64, 128), (96, 192)]
SHAPES_TL2 = [(64, 288), (96, 256)]  # 256 % 96 = 64 and 288 % 192 = 96: "two" parts exercised
ISAS = ["portable", "avx2"]


def _ternary(rng: np.random.Generator, M: int, K: int) -> np.ndarray:
    return rng.integers(-1, 2, size=(M, K)).astype(np.int8)


def _exact(t: np.ndarray, q: np.ndarray) -> np.ndarray:
    return q.astype(np.int32) @ t.astype(np.int32).T  # [n, M]


def _shipped(table: dict) -> list[tuple[tuple[int, int], TileConfig]]:
    return [(mk, c) for shapes in table.values() for mk, c in shapes.items()]


# ---- sizes and tile tables ----------------------------------------------------------------

def test_tl_nbytes_matches_fork_formula() -> None:
    assert tl_nbytes(38, 2560, 2560) == 2560 * 2560 // 4 + 32
    # (2560-256)*2560/3*5/8 + 256*2560/2*4/8 = 1228800 + 163840, already 32-aligned, + 32
    assert tl_nbytes(39, 2560, 2560) == 1_392_672
    # 3200x8640: 8384*3200/3 = 8942933 (trunc), *5/8 = 5589333; + 204800 = 5794133 -> pad32 5794144
    assert tl_nbytes(39, 3200, 8640) == 5_794_144 + 32
    with pytest.raises(ValueError):
        tl_nbytes(36, 128, 128)


def test_shipped_configs_are_valid_except_the_flagged_tl2_preset() -> None:
    for (M, K), c in _shipped(SHIPPED_TL1):
        check_tile_config("tl1", M, K, c)
    bad = []
    for (M, K), c in _shipped(SHIPPED_TL2):
        try:
            check_tile_config("tl2", M, K, c)
        except ValueError:
            bad.append((M, K, c.bm))
    assert bad == [(4096, 1536, 64)]  # bitnet_b1_58-large preset: bm=64 cannot be laid out


@pytest.mark.parametrize("kind", ["tl1", "tl2"])
@pytest.mark.parametrize("M,K", [(2560, 2560), (640, 2560), (6912, 2560), (2560, 6912), (3200, 8640)])
def test_choose_tile_config_is_valid(kind: str, M: int, K: int) -> None:
    c = choose_tile_config(kind, M, K)
    check_tile_config(kind, M, K, c)
    assert c in tile_configs(kind, M, K)
    if (M, K) == (3200, 8640):  # a shipped shape gets the shipped triple
        assert c == (SHIPPED_TL1 if kind == "tl1" else SHIPPED_TL2)["bitnet_b1_58-3B"][(M, K)]


def test_tile_configs_enumerate_exactly_the_constraints() -> None:
    got = set(tile_configs("tl2", 64, 288))
    want = {TileConfig(BM, BK, 32) for BM in (32, 64) for BK in range(24, 257, 24)
            if (288 % BK) % 32 == 0 and 288 % BK <= 256 and BK <= 288}
    assert got == want and TileConfig(64, 192, 32) in got  # 288 % 192 = 96: a two part
    for c in tile_configs("tl1", 64, 128):
        assert c.bm in (32, 64) and 64 % c.BM == 0 and c.BM % c.bm == 0
        assert 128 % c.BK == 0 and c.BK % (256 // c.bm) == 0
    with pytest.raises(ValueError):
        check_tile_config("tl1", 64, 128, TileConfig(64, 128, 16))  # bm 16 fails in bitnet.cpp too


# ---- byte layout --------------------------------------------------------------------------

def test_pack_tl1_hand_example() -> None:
    t = np.zeros((32, 8), np.int8)  # BM=32, BK=8, bm=32: one block, by=8, 2 row groups x 2 couples
    t[0, 0], t[0, 1] = 1, -1  # pair idx 3*1 - 1 + 4 = 6, high nibble of byte 0
    t[17, 4:8] = [-1, -1, 1, 1]  # pairs 2, 3 of row 17 (u=1, v=1, w=1): byte ((1*2)+1)*16+1 = 49
    raw = pack_tl1(t, 0.5, 32, 8, 32)
    assert raw.shape == (32 * 8 // 4 + 32,)
    assert raw[0] == 0x64 and raw[49] == 0x08
    rest = np.delete(raw[:64], [0, 49])
    assert np.all(rest == 0x44)  # zero pairs are idx 4
    assert raw[64:68].view("<f4")[0] == np.float32(0.5) and not raw[68:].any()


def test_pack_tl2_hand_example() -> None:
    t = np.zeros((32, 24), np.int8)  # BM=32, BK=24: 8 triplets, 4 index chunks, 1 sign chunk
    t[0, 0:3] = [1, 0, -1]  # v = 8: high nibble of row 0, chunk 0 (stored position 0)
    t[0, 3:6] = [-1, -1, -1]  # v = -13: low nibble, sign bit 15-2 of lane 0
    t[9, 6:9] = [0, 0, 1]  # v = 1: chunk 1, row 9 stored at position 17
    t[20, 21:24] = [0, -1, 0]  # v = -3: chunk 3 low nibble, row 20 at position 12, bit 0 of lane 4
    raw = pack_tl2(t, 2.0, 32, 24)
    # size formula for K < 256 (C truncation): (24-256)*32/3*5/8 + 2048 = 502 -> pad 512
    assert raw.shape == (512 + 32,)
    idx = raw[:128].copy()
    assert idx[0] == 0x8D and idx[32 + 17] == 0x10 and idx[3 * 32 + 12] == 0x03
    idx[[0, 49, 108]] = 0
    assert not idx.any()
    sign = raw[128:160].view("<u2")
    assert sign[0] == 1 << 13 and sign[4] == 1 and not np.delete(sign, [0, 4]).any()
    assert not raw[160:512].any()
    assert raw[512:516].view("<f4")[0] == np.float32(2.0) and not raw[516:].any()


def _roundtrip_cases() -> list[tuple[str, int, int, TileConfig]]:
    cases = [(k, M, K, c) for k, shapes in (("tl1", SHAPES_TL1), ("tl2", SHAPES_TL2))
             for M, K in shapes for c in tile_configs(k, M, K)]
    for (M, K), c in _shipped(SHIPPED_TL1):  # shipped triples on 2x2-tile shapes
        cases.append(("tl1", 2 * c.BM, 2 * c.BK, c))
    for (M, K), c in _shipped(SHIPPED_TL2):
        if c.bm == 32:  # same K % BK remainder as the real shape
            cases.append(("tl2", 2 * c.BM, 2 * c.BK + K % c.BK, c))
    return cases


def test_pack_unpack_roundtrip_every_config() -> None:
    rng = np.random.default_rng(7)
    cases = _roundtrip_cases()
    assert len(cases) > 60
    for kind, M, K, c in cases:
        t = _ternary(rng, M, K)
        if kind == "tl1":
            raw = pack_tl1(t, 0.25, c.BM, c.BK, c.bm)
            t2, s = unpack_tl1(raw, M, K, c.BM, c.BK, c.bm)
        else:
            raw = pack_tl2(t, 0.25, c.BM, c.BK)
            t2, s = unpack_tl2(raw, M, K, c.BM, c.BK)
        assert raw.shape == (tl_nbytes(kind, M, K),), (kind, M, K, c)
        assert raw[-32:-28].view("<f4")[0] == np.float32(0.25) and not raw[-28:].any()
        np.testing.assert_array_equal(t2, t, err_msg=f"{kind} {M}x{K} {c}")
        assert s == np.float32(0.25)


def test_pack_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        pack_tl1(np.full((32, 8), 2, np.int8), 1.0, 32, 8, 32)
    with pytest.raises(ValueError):
        pack_tl2(np.zeros((32, 48), np.int8), 1.0, 32, 24, bm=64)
    with pytest.raises(ValueError):
        unpack_tl2(np.zeros(10, np.uint8), 32, 24, 32, 24)


# ---- references ---------------------------------------------------------------------------

def test_tl_activation_quant_has_no_floor() -> None:
    x = np.array([[2.0, -1.0, 0.0, 0.5], [0.0, 0.0, 0.0, 0.0]], np.float32) * np.float32(2.0**-24)
    for quantize in (quantize_activations_tl_ref, quantize_activations_tl):
        q, s = quantize(x)
        assert s[0] == np.float32(127 * 2.0**23)  # absmax 2^-23 < 1e-5: I2_S would use 127 / 1e-5
        assert q[0].tolist() == [127, -64, 0, 32]  # -63.5 rounds half to even, 31.75 to nearest
        assert np.isinf(s[1]) and not q[1].any()


def test_tl_activation_quant_kernel_matches_reference() -> None:
    rng = np.random.default_rng(8)
    x = (rng.standard_normal((5, 2560)) * rng.uniform(1e-3, 30, (5, 1))).astype(np.float32)
    x[2] = np.clip(x[2], -100, 100)
    x[2, :7] = [127.0, 0.5, -0.5, 1.5, -2.5, 126.5, -126.5]  # s = 1 exactly: .5 ties go to even
    x[3] = np.float32(1e-6) * np.sign(x[3])  # below I2_S's floor
    q0, s0 = quantize_activations_tl_ref(x)
    q1, s1 = quantize_activations_tl(x)
    np.testing.assert_array_equal(s1, s0)
    np.testing.assert_array_equal(q1, q0)
    assert q1[2, :7].tolist() == [127, 0, 0, 2, -2, 126, -126]


def test_lut_references_equal_exact_dot() -> None:
    rng = np.random.default_rng(3)
    t = _ternary(rng, 64, 288)
    q = rng.integers(-127, 128, size=(3, 288)).astype(np.int8)
    np.testing.assert_array_equal(tl1_accumulate_ref(t, q), _exact(t, q))
    for BK in (96, 192):  # no two part / a 96-column two part
        np.testing.assert_array_equal(tl2_accumulate_ref(t, q, BK), _exact(t, q))


def test_linear_refs_follow_bitnet_cpp_rescale() -> None:
    rng = np.random.default_rng(4)
    t = _ternary(rng, 64, 192)
    x = rng.standard_normal((2, 192)).astype(np.float32)
    q, s = quantize_activations_tl(x)
    want = (_exact(t, q).astype(np.float32) / s[:, None] * np.float32(0.3)).astype(np.float32)
    np.testing.assert_array_equal(tl1_linear_ref(t, 0.3, x), want)
    np.testing.assert_array_equal(tl2_linear_ref(t, 0.3, x, 96), want)


# ---- kernels ------------------------------------------------------------------------------

@pytest.fixture()
def parallel_kernels():
    """Run AVX2 TL kernels through their parallel variant (two threads, no adaptive switch)."""
    from bitnet_kernels import threads

    old = threads.get_num_threads()
    threads.set_num_threads(2)
    with threads.ADAPTIVE.disabled():
        yield threads.get_num_threads()
    threads.set_num_threads(old)


def _isa_or_dispatch(isa: str) -> bool:
    """True when `isa` can run here; without AVX2 the dispatcher must pick the portable path."""
    if isa == "avx2" and not _jit.has_avx2():
        assert _jit.kernel_isa() == "portable"
        return False
    return True


@pytest.mark.parametrize("isa", ISAS)
def test_tl1_kernels_bit_exact_every_config(isa: str, parallel_kernels: int) -> None:
    if not _isa_or_dispatch(isa):
        return
    rng = np.random.default_rng(11)
    for M, K in SHAPES_TL1:
        t = _ternary(rng, M, K)
        q = rng.integers(-127, 128, size=(3, K)).astype(np.int8)
        want = _exact(t, q)
        for c in tile_configs("tl1", M, K):
            w = prepare_tl1(pack_tl1(t, 0.5, c.BM, c.BK, c.bm), M, K, c.BM, c.BK, c.bm)
            for n in (1, 3):  # GEMV and GEMM
                got = tl1_matmul_int(w, q[:n], isa=isa)
                np.testing.assert_array_equal(got, want[:n], err_msg=f"{isa} {M}x{K} {c} n={n}")


@pytest.mark.parametrize("isa", ISAS)
def test_tl2_kernels_bit_exact_every_config(isa: str, parallel_kernels: int) -> None:
    if not _isa_or_dispatch(isa):
        return
    rng = np.random.default_rng(12)
    for M, K in SHAPES_TL2:
        t = _ternary(rng, M, K)
        q = rng.integers(-127, 128, size=(3, K)).astype(np.int8)
        want = _exact(t, q)
        for c in tile_configs("tl2", M, K):
            w = prepare_tl2(pack_tl2(t, 0.5, c.BM, c.BK), M, K, c.BM, c.BK)
            for n in (1, 3):
                got = tl2_matmul_int(w, q[:n], isa=isa)
                np.testing.assert_array_equal(got, want[:n], err_msg=f"{isa} {M}x{K} {c} n={n}")


@pytest.mark.parametrize("isa", ISAS)
def test_linear_kernels_match_references(isa: str) -> None:
    if not _isa_or_dispatch(isa):
        return
    rng = np.random.default_rng(13)
    M, K = 64, 288
    t = _ternary(rng, M, K)
    x = rng.standard_normal((2, K)).astype(np.float32) * 3
    q, s = quantize_activations_tl(x)
    w1 = prepare_tl1(pack_tl1(t, 0.7, 32, 96, 32), M, K, 32, 96, 32)
    w2 = prepare_tl2(pack_tl2(t, 0.7, 64, 192), M, K, 64, 192)
    np.testing.assert_array_equal(tl1_linear(w1, q, s, isa=isa), tl1_linear_ref(t, 0.7, x))
    np.testing.assert_array_equal(tl2_linear(w2, q, s, isa=isa), tl2_linear_ref(t, 0.7, x, 192))
    if isa == "avx2":  # one table build shared by weights of the same K (and K % BK for TL2)
        y1 = tl1_linear(w1, q, s, isa=isa, tables=tl1_tables(q, 32))
        y2 = tl2_linear(w2, q, s, isa=isa, tables=tl2_tables(q, K, 192))
        np.testing.assert_array_equal(y1, tl1_linear_ref(t, 0.7, x))
        np.testing.assert_array_equal(y2, tl2_linear_ref(t, 0.7, x, 192))
        with pytest.raises(ValueError):
            tl2_linear(w2, q, s, isa=isa, tables=tl2_tables(q, K, 96))  # other split point
        with pytest.raises(ValueError):
            tl1_linear(w1, q, s, isa=isa, tables=tl1_tables(q, 64))  # other table layout


def test_serial_avx2_kernels_match() -> None:
    """One thread runs the kernels without a parallel region; same results."""
    if not _isa_or_dispatch("avx2"):
        return
    from bitnet_kernels import threads

    rng = np.random.default_rng(14)
    t = _ternary(rng, 128, 288)
    q = rng.integers(-127, 128, size=(3, 288)).astype(np.int8)
    old = threads.get_num_threads()
    threads.set_num_threads(1)
    try:
        for c in (TileConfig(64, 96, 32), TileConfig(128, 96, 64)):
            w1 = prepare_tl1(pack_tl1(t, 1.0, c.BM, c.BK, c.bm), 128, 288, c.BM, c.BK, c.bm)
            np.testing.assert_array_equal(tl1_matmul_int(w1, q, isa="avx2"), _exact(t, q))
        w2 = prepare_tl2(pack_tl2(t, 1.0, 64, 192), 128, 288, 64, 192)
        np.testing.assert_array_equal(tl2_matmul_int(w2, q, isa="avx2"), _exact(t, q))
    finally:
        threads.set_num_threads(old)


@pytest.mark.parametrize("isa", ISAS)
def test_stacked_weights_match_separate_calls(isa: str, parallel_kernels: int) -> None:
    if not _isa_or_dispatch(isa):
        return
    rng = np.random.default_rng(15)
    K, BK = 288, 192
    parts = []
    for M, BM, scale in ((128, 64, 0.5), (64, 32, 0.25), (96, 32, 2.0)):  # Q, K, V-like
        t = _ternary(rng, M, K)
        parts.append(prepare_tl2(pack_tl2(t, scale, BM, BK), M, K, BM, BK, isa=isa))
    st = stack_tl2(parts, nbins=2)
    assert sorted(map(tuple, st.tiles.tolist())) == [(p, a) for p, w in enumerate(parts) for a in range(w.M // w.tile.BM)]
    x = rng.standard_normal((3, K)).astype(np.float32)
    q, s = quantize_activations_tl(x)
    want = np.concatenate([tl2_linear(w, q, s) for w in parts], axis=1)
    for n in (1, 3):
        np.testing.assert_array_equal(tl2_linear_stack(st, q[:n], s[:n]), want[:n])
    with pytest.raises(ValueError):
        stack_tl2([parts[0], prepare_tl2(pack_tl2(_ternary(rng, 32, K), 1.0, 32, 96), 32, K, 32, 96)])


def test_prepare_tl_uses_the_writers_tile_choice() -> None:
    rng = np.random.default_rng(16)
    M, K = 128, 2560  # not in bitnet.cpp's tables: our fixed rule
    t = _ternary(rng, M, K)
    x = rng.standard_normal((2, K)).astype(np.float32)
    q, s = quantize_activations_tl(x)
    for kind, code in (("tl1", 38), ("tl2", 39)):
        c = choose_tile_config(kind, M, K)
        raw = pack_tl1(t, 0.5, c.BM, c.BK, c.bm) if kind == "tl1" else pack_tl2(t, 0.5, c.BM, c.BK)
        w = prepare_tl(raw, code, M, K)
        assert w.tile == c
        want = (_exact(t, q).astype(np.float32) / s[:, None] * np.float32(0.5)).astype(np.float32)
        np.testing.assert_array_equal(tl_linear(w, q, s), want)


def test_prepare_uses_file_bytes_in_place() -> None:
    t = _ternary(np.random.default_rng(5), 64, 128)
    raw = pack_tl1(t, 1.5, 64, 128, 32)
    w = prepare_tl1(raw, 64, 128, 64, 128, 32)
    assert np.shares_memory(w.data, raw) and w.scale == np.float32(1.5)
    raw2 = pack_tl2(t, 1.5, 64, 96)
    raw2.setflags(write=False)  # model files are read-only memory maps
    w2 = prepare_tl2(raw2, 64, 128, 64, 96)
    assert np.shares_memory(w2.data, raw2) and w2.scale == np.float32(1.5)
    q = np.random.default_rng(6).integers(-127, 128, size=(1, 128)).astype(np.int8)
    np.testing.assert_array_equal(tl2_matmul_int(w2, q), _exact(t, q))
