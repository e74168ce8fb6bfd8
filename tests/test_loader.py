"""The loader's copy of ternary projections into the kernels' layout: one copy per linear, into
memory made resident ahead of time, with each part's scale and the `bitnet` arch's multipliers."""
from __future__ import annotations

import sys

import numpy as np
import pytest

import bitnet_kernels as K
from bitnet_cli import loader
from bitnet_cli.modelfile import GGMLType, TensorRecord
from bitnet_cli.residency import WeightArena


class _File:
    """Just what `loader._linear` reads of a ModelFile."""

    def __init__(self, tensors: dict[str, TensorRecord], arrays: dict[str, np.ndarray]) -> None:
        self.tensors, self.arrays, self.released = tensors, arrays, []

    def array(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def release(self, name: str) -> None:
        self.released.append(name)


def _record(name: str, gtype: GGMLType, shape: tuple[int, ...], data: np.ndarray) -> TensorRecord:
    return TensorRecord(name, gtype, shape, 0, data.nbytes, data)


def _projections(rng: np.random.Generator, rows: list[int], K_: int, extras: list[float | None]):
    tensors, arrays, ts = {}, {}, []
    for i, (M, extra) in enumerate(zip(rows, extras)):
        t = rng.integers(-1, 2, size=(M, K_), dtype=np.int8)
        scale = float(rng.uniform(0.5, 2.0))
        tensors[f"p{i}.weight"] = _record(f"p{i}.weight", GGMLType.I2_S, (M, K_), K.pack_i2s(t, scale))
        if extra is not None:
            arrays[f"p{i}.scale"] = np.array([extra], np.float32)
            tensors[f"p{i}.scale"] = _record(f"p{i}.scale", GGMLType.F32, (1,), arrays[f"p{i}.scale"].view(np.uint8))
        ts.append((t, np.float32(scale) * np.float32(1.0 if extra is None else extra)))
    return _File(tensors, arrays), ts


@pytest.mark.parametrize("use_arena", [False, True])
@pytest.mark.parametrize("extras", [[None, None, None], [1.5, None, 0.25]])
def test_stacked_linear_matches_the_parts(use_arena: bool, extras: list[float | None]) -> None:
    rng = np.random.default_rng(7)
    rows, K_ = [16, 8, 8], 256
    mf, ts = _projections(rng, rows, K_, extras)
    arena = WeightArena(WeightArena.size_for([M * K_ // 4 for M in rows])) if use_arena else None
    w = loader._linear(mf, ["p0", "p1", "p2"], rows, K_, arena=arena)
    assert w.M == sum(rows) and w.parts == tuple(rows)
    if arena is not None and w.isa == "avx2":
        assert np.shares_memory(w.data, arena.buf)
    q, s = K.quantize_activations(rng.standard_normal((3, K_)).astype(np.float32))
    ref = np.concatenate([K.ternary_linear_ref(t, sc, q, s) for t, sc in ts], axis=1)
    assert np.array_equal(K.ternary_linear(w, q, s), ref)
    assert {"p0.weight", "p1.weight", "p2.weight"} <= set(mf.released)


def test_prepare_i2s_stacked_is_stack_ternary_with_one_copy() -> None:
    rng = np.random.default_rng(3)
    for rows in ([8, 4, 6], [5, 3, 8]):  # the second splits 4-row groups: the two-copy way
        ts = [(rng.integers(-1, 2, size=(M, 384), dtype=np.int8), float(rng.uniform(0.5, 2))) for M in rows]
        raws = [K.pack_i2s(t, sc) for t, sc in ts]
        a = K.prepare_i2s_stacked(raws, rows, 384)
        b = K.stack_ternary([K.prepare_i2s(r, M, 384) for r, M in zip(raws, rows)])
        assert np.array_equal(a.data, b.data) and np.array_equal(a.row_scale, b.row_scale) and a.parts == b.parts


def test_only_the_stacked_shape_is_recorded_for_tuning() -> None:
    """`bitnet setup` tunes the shapes the loader prepared: a part of a stacked weight is never
    run alone, so tuning it would be wasted time."""
    from bitnet_kernels.tune import SEEN_SHAPES

    rng = np.random.default_rng(4)
    rows, K_ = [12, 20, 20], 384
    raws = [K.pack_i2s(rng.integers(-1, 2, size=(M, K_), dtype=np.int8), 1.0) for M in rows]
    SEEN_SHAPES.clear()
    K.prepare_i2s_stacked(raws, rows, K_)
    assert list(SEEN_SHAPES) == [("i2_s", sum(rows), K_)]


def test_weight_arena_hands_out_aligned_pieces_and_checks_its_size() -> None:
    arena = WeightArena(WeightArena.size_for([100, 64, 1]))
    pieces = [arena.take(100), arena.take(64), arena.take(1)]
    assert [p.size for p in pieces] == [100, 64, 1]
    assert all(p.ctypes.data % WeightArena.ALIGN == 0 for p in pieces)
    assert not np.shares_memory(pieces[0], pieces[1])
    with pytest.raises(ValueError):
        arena.take(1)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="MADV_POPULATE_WRITE is Linux")
def test_weight_arena_populate_makes_it_resident() -> None:
    def _rss_bytes() -> int:
        import os

        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    arena = WeightArena(32 << 20)
    before = _rss_bytes()
    thread = arena.populate()
    assert thread is not None
    thread.join()
    assert _rss_bytes() - before >= 16 << 20
    arena.take(1 << 20)
    arena.release_rest()
    assert _rss_bytes() - before < 8 << 20
