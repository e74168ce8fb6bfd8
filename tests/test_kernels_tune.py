"""Tuning cache, presets, warm-up, the generated GEMM module, and the benchmark script's plumbing."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bitnet_kernels import params as P
from bitnet_kernels import tune as T


@pytest.fixture()
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BITNET_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("BITNET_TUNE_CACHE", raising=False)  # the default file under the cache dir
    P.clear()
    yield tmp_path
    P.clear()


def test_tune_writes_cache_keyed_by_host_and_load_applies_it(cache_dir: Path) -> None:
    seen = []
    res = T.tune([(64, 256)], threads=1, quant="i2_s", ns=(1, 3), progress=lambda d, t, label: seen.append((d, t)))
    assert seen and seen[-1][0] == seen[-1][1]  # progress reached 100 %
    keys = set(res["entries"])
    assert keys == {"i2_s|64x256|gemv|t1", "i2_s|64x256|gemm|t1"}
    data = json.loads((cache_dir / "kernels-tuned.json").read_text())
    host = T.host_key()
    assert set(data["hosts"][host]) == keys
    for part in ("numba-", "|"):
        assert part in host
    P.clear()
    assert P.lookup("i2_s", 64, 256, "gemv", 1) == P.DEFAULTS[("i2_s", "gemv")]
    assert T.load_tuned() == 2
    assert P.lookup("i2_s", 64, 256, "gemv", 1) == {**P.DEFAULTS[("i2_s", "gemv")], **res["entries"]["i2_s|64x256|gemv|t1"]["params"]}


def test_other_hosts_entries_are_ignored(cache_dir: Path) -> None:
    other = {"hosts": {"some other cpu": {"i2_s|64x256|gemv|t1": {"params": {"pf": 1}}}}}
    (cache_dir / "kernels-tuned.json").write_text(json.dumps(other))
    assert T.load_tuned() == 0
    (cache_dir / "kernels-tuned.json").write_text("not json")
    assert T.load_tuned() == 0


def test_every_candidate_is_valid_for_the_kernels() -> None:
    for kind in ("gemv", "gemm"):
        for threads in (1, 2):
            cands = T.candidates("i2_s", kind, threads)
            assert cands and all(c.get("chunks", 1) >= 1 for c in cands)


def test_shipped_presets_are_well_formed() -> None:
    folder = Path(T.__file__).with_name("presets")
    files = sorted(folder.glob("*.json"))
    assert files, "no presets shipped"
    for f in files:
        entries = json.loads(f.read_text())["entries"]
        assert entries and T._apply(entries) == len(entries)
    P.clear()


def test_warmup_compiles_and_leaves_no_scratch_params() -> None:
    assert T.warmup() > 0
    assert not any(k[1:3] == (8, 256) for k in P._table)


def test_generated_gemm_module_is_current() -> None:
    from bitnet_kernels import _gemm_codegen

    assert _gemm_codegen.target().read_text() == _gemm_codegen.render()


def test_benchmark_table_formats(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "kernels.py"
    spec = importlib.util.spec_from_file_location("bench_kernels", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    row = mod.bench_one(mod.kernel_table()["i2s"], 64, 256, 1, 1, 2, np.random.default_rng(0))
    assert row["us"] > 0 and row["gbs"] > 0 and row["weight_bytes"] == 64 * 256 // 4 + 64 * 4
    text = mod.format_table({"cpu": "x", "isa": "y", "tuned_entries": 0, "bandwidth": {1: {"median": 1.0, "best": 2.0}},
                             "rows": [{**row, "kernel": "i2s", "threads": 1, "pct_bw": 50.0}]})
    assert "| i2s" in text and "50%" in text


def test_tune_without_shapes_tunes_what_was_prepared(cache_dir: Path) -> None:
    import bitnet_kernels as bk

    T.SEEN_SHAPES.clear()
    rng = np.random.default_rng(0)
    bk.prepare_i2s(bk.pack_i2s(rng.integers(-1, 2, size=(12, 128), dtype=np.int8), 1.0), 12, 128)
    bk.prepare_dense(np.zeros(20 * 64 * 2, np.uint8), 1, (20, 64))
    res = T.tune(threads=1, ns=(1,))
    assert set(res["entries"]) == {"i2_s|12x128|gemv|t1", "f16|20x64|gemv|t1"}
