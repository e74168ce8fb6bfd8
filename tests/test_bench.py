"""`bitnet bench`: the test matrix, every output format, llama-bench's record fields, a real tiny model."""
from __future__ import annotations

import csv
import io
import json

import pytest

from bitnet_cli.bench import (
    RECORD_FIELDS,
    BenchResult,
    BenchTest,
    ModelInfo,
    compare_rows,
    format_csv,
    format_json,
    format_jsonl,
    format_md,
    format_params,
    format_ratios,
    format_size,
    parse_int_list,
    parse_pg,
    run_tests,
    make_tests,
)

# Fields llama-bench writes in every JSON record (anchors-style §3.2).
LLAMA_BENCH_FIELDS = (
    "model_filename", "model_type", "model_size", "model_n_params", "n_threads", "n_prompt", "n_gen",
    "n_depth", "test_time", "avg_ns", "stddev_ns", "avg_ts", "stddev_ts", "samples_ns", "samples_ts",
    "cpu_info", "backends", "build_commit",
)
MD_COLUMNS = ["model", "size", "params", "backend", "threads", "test", "t/s"]


class FakeRunner:
    """Takes `ns_per_token` per processed token; records every run (warm-ups included)."""

    def __init__(self, ns_per_token: int = 1000) -> None:
        self.info = ModelInfo("fake.gguf", "bitnet-b1.58 2B I2_S - 2 bpw ternary", 3 << 29, 2_412_820_480, 1 << 30)
        self.n_batch = 512
        self.ns, self.runs, self.threads = ns_per_token, [], []

    def set_threads(self, n: int) -> None:
        self.threads.append(n)

    def run(self, test: BenchTest) -> int:
        self.runs.append(test)
        return self.ns * test.n_tokens * (1 + len(self.runs) % 2)  # two different timings -> stddev > 0


def fake_results(**kw) -> list[BenchResult]:
    return run_tests(FakeRunner(), make_tests([8], [4], [(8, 4)]), [1, 2], repetitions=2, **kw)


def test_matrix_order_and_names():
    tests = make_tests([512, 0, 128], [64], [(256, 32)], depths=[0, 512])
    assert [t.name for t in tests] == [
        "pp512", "pp128", "tg64", "pp256+tg32", "pp512 @ d512", "pp128 @ d512", "tg64 @ d512", "pp256+tg32 @ d512",
    ]
    assert tests[3].n_tokens == 288


def test_comma_lists_and_pg_parse():
    assert parse_int_list("1,2, 4", "-t") == [1, 2, 4]
    assert parse_int_list(["128", "256,512"], "-p") == [128, 256, 512]
    assert parse_pg(["512,128"]) == [(512, 128)]
    with pytest.raises(ValueError, match="-t"):
        parse_int_list("1,x", "-t")
    with pytest.raises(ValueError, match="-pg"):
        parse_pg("512")


def test_run_tests_warms_up_and_repeats():
    runner = FakeRunner()
    results = run_tests(runner, make_tests([8], [4]), [1, 2], repetitions=3)
    assert [(r.test.name, r.n_threads) for r in results] == [("pp8", 1), ("tg4", 1), ("pp8", 2), ("tg4", 2)]
    assert runner.threads == [1, 2]
    assert len(runner.runs) == 4 * (1 + 3)  # one untimed warm-up + 3 timed runs per row
    assert all(len(r.samples_ns) == 3 for r in results)
    assert len(run_tests(FakeRunner(), make_tests([8], [4]), [1], repetitions=2, warmup=False)) == 2


def test_two_runners_alternate_test_by_test():
    ours, peer = FakeRunner(), FakeRunner(2000)
    peer.info = ModelInfo("peer.gguf", "bitnet 2B TQ2_0", 1, 1, 1, backend="llama.cpp", source="fake.gguf")
    order = []
    for r in (ours, peer):
        r.run = (lambda run, tag: lambda test: order.append((tag, test.name)) or run(test))(r.run, r.info.backend)
    results = run_tests([ours, peer], make_tests([8], [4]), [1], repetitions=1, warmup=False)
    assert order == [("Numba", "pp8"), ("llama.cpp", "pp8"), ("Numba", "tg4"), ("llama.cpp", "tg4")]
    assert [r.model.backend for r in results] == ["Numba", "Numba", "llama.cpp", "llama.cpp"]
    pairs = compare_rows(results)
    assert [(a.test.name, b.model.backend) for a, b in pairs] == [("pp8", "llama.cpp"), ("tg4", "llama.cpp")]
    assert format_ratios(pairs).splitlines()[2].rstrip(" |").endswith("2.00x")  # peer takes twice as long


def test_statistics_follow_llama_bench():
    r = BenchResult(FakeRunner().info, BenchTest(0, 100), 2, [1_000_000_000, 2_000_000_000])
    assert r.samples_ts == [100.0, 50.0]
    assert r.avg_ts == 75.0
    assert r.stddev_ts == pytest.approx(35.355, abs=1e-3)  # sample stddev (n - 1)
    assert r.avg_ns == 1.5e9


def test_md_table_has_llama_bench_columns():
    text = format_md(fake_results())
    lines = text.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == MD_COLUMNS
    assert lines[1].replace(" ", "").startswith("|-") and "-:|" in lines[1].replace(" ", "")
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert len(rows) == 6 and all(len(r) == 7 for r in rows)
    assert rows[0][:6] == ["bitnet-b1.58 2B I2_S - 2 bpw ternary", "1.50 GiB", "2.41 B", "Numba", "1", "pp8"]
    assert [r[5] for r in rows] == ["pp8", "tg4", "pp8+tg4"] * 2
    assert all(" ± " in r[6] for r in rows)


def test_md_verbose_adds_bandwidth_columns():
    results = fake_results(bandwidth={1: 10e9, 2: 20e9})
    lines = format_md(results, verbose=True).splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")][-2:] == ["GB/s", "% of BW"]
    rows = {(cells[4], cells[5]): cells for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])}
    # tg4: 1 GiB per token at 1e6 t/s, then 5e5 t/s -> 805 TB/s on average, against 10 GB/s
    assert rows[("1", "tg4")][-2:] == [f"{(1 << 30) * 750_000 / 1e9:.2f}", f"{100 * (1 << 30) * 750_000 / 10e9:.0f} %"]
    assert rows[("2", "pp8")][-2:] == ["-", "-"]  # prompt processing is compute-bound: no bandwidth figure


def test_csv_parses_with_full_header():
    rows = list(csv.DictReader(io.StringIO(format_csv(fake_results()))))
    assert len(rows) == 6
    assert tuple(rows[0].keys()) == RECORD_FIELDS
    assert rows[1]["n_gen"] == "4" and rows[1]["n_prompt"] == "0"
    assert len(rows[0]["samples_ns"].split(";")) == 2


def test_json_records_are_complete():
    records = json.loads(format_json(fake_results()))
    assert isinstance(records, list) and len(records) == 6
    for rec in records:
        assert set(LLAMA_BENCH_FIELDS) <= set(rec)
        assert len(rec["samples_ns"]) == len(rec["samples_ts"]) == 2
        assert rec["avg_ts"] > 0 and rec["test_time"].endswith("Z")
    assert {(r["n_prompt"], r["n_gen"], r["n_threads"]) for r in records} == {
        (8, 0, 1), (0, 4, 1), (8, 4, 1), (8, 0, 2), (0, 4, 2), (8, 4, 2)}


def test_jsonl_is_one_record_per_line():
    lines = format_jsonl(fake_results()).splitlines()
    assert len(lines) == 6
    assert all(set(LLAMA_BENCH_FIELDS) <= set(json.loads(line)) for line in lines)


def test_sizes_and_params_like_llama_bench():
    assert format_size(1_181_116_006) == "1.10 GiB"
    assert format_size(124_506_000) == "118.74 MiB"
    assert format_params(2_412_820_480) == "2.41 B"
    assert format_params(128_450_000) == "128.45 M"


# ---- a real tiny model through the CLI ----------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    from bitnet_cli.dummy import write_dummy_model

    path = tmp_path_factory.mktemp("bench") / "tiny-i2_s.gguf"
    write_dummy_model(path, "test-tiny-2b4t", "i2_s", 0)
    return path


def _bench(*args: str):
    from typer.testing import CliRunner

    from bitnet_cli.cli.app import app

    return CliRunner().invoke(app, ["bench", *args])


@pytest.fixture(scope="session")
def sweep(tiny_model):
    r = _bench("-m", str(tiny_model), "-p", "8,4", "-n", "3", "-t", "1,2", "-r", "2", "-o", "json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_tiny_model_sweep_yields_every_row(sweep):
    rows = {(rec["n_prompt"], rec["n_gen"], rec["n_threads"]) for rec in sweep}
    assert rows == {(8, 0, 1), (4, 0, 1), (0, 3, 1), (8, 0, 2), (4, 0, 2), (0, 3, 2)}
    assert len(sweep) == 6


def test_tiny_model_pp_and_tg_both_run(sweep):
    for rec in sweep:
        assert set(LLAMA_BENCH_FIELDS) <= set(rec)
        assert len(rec["samples_ns"]) == 2 and all(ns > 0 for ns in rec["samples_ns"])
        assert rec["avg_ts"] > 0 and rec["model_n_params"] > 0 and rec["model_size"] > 0
        assert rec["backends"] == "Numba"


@pytest.mark.parametrize("fmt", ["md", "csv", "jsonl"])
def test_tiny_model_other_formats(tiny_model, fmt):
    r = _bench("-m", str(tiny_model), "-p", "4", "-n", "2", "-t", "1", "-r", "2", "-o", fmt, "--no-warmup")
    assert r.exit_code == 0, r.output
    out = r.stdout.strip()
    if fmt == "md":
        assert [c.strip() for c in out.splitlines()[0].strip("|").split("|")] == MD_COLUMNS
        assert len(out.splitlines()) == 4
    elif fmt == "csv":
        assert len(list(csv.DictReader(io.StringIO(out)))) == 2
    else:
        assert [json.loads(line)["n_gen"] for line in out.splitlines()] == [0, 2]


def test_bad_output_format_is_a_user_error(tmp_path):
    r = _bench("-m", str(tmp_path / "x.gguf"), "-o", "xml")
    assert r.exit_code == 1 and "unknown output format 'xml'" in str(r.exception)


# ---- dummies, fit checks, bandwidth, plot, the llama.cpp copy -----------------------------------


def test_fit_problem_names_memory_and_disk(tmp_path, monkeypatch):
    from bitnet_cli import bench_suite

    monkeypatch.setattr(bench_suite, "mem_available", lambda: 4 << 30)
    assert bench_suite.fit_problem(1 << 30, tmp_path, on_disk=True) is None
    assert "in memory" in bench_suite.fit_problem(8 << 30, tmp_path, on_disk=True)
    monkeypatch.setattr(bench_suite, "mem_available", lambda: 1 << 60)
    assert "on disk" in bench_suite.fit_problem(1 << 59, tmp_path, on_disk=False)


def test_dummies_are_generated_once_and_cached(tmp_path, monkeypatch):
    from bitnet_cli import bench_suite

    monkeypatch.setenv("BITNET_CACHE_DIR", str(tmp_path))
    notes = []
    (path,) = bench_suite.resolve_dummies(["test-tiny-2b4t"], ["i2_s"], notes.append)
    assert path.parent == tmp_path / "dummy" and path.is_file()
    mtime = path.stat().st_mtime_ns
    assert bench_suite.resolve_dummies(["test-tiny-2b4t"], ["i2_s"], notes.append) == [path]
    assert path.stat().st_mtime_ns == mtime and len(notes) == 1  # one "generating" note, then the cache


def test_too_big_dummy_is_skipped_with_a_reason(tmp_path, monkeypatch):
    from bitnet_cli import bench_suite

    monkeypatch.setenv("BITNET_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(bench_suite, "mem_available", lambda: 64 << 20)
    notes = []
    assert bench_suite.resolve_dummies(["100B"], ["i2_s"], notes.append) == []
    assert notes and notes[0].startswith("skipping 100B i2_s: needs") and "available" in notes[0]
    assert not any((tmp_path / "dummy").glob("*.gguf"))


def test_stream_read_reports_a_rate_for_every_thread_count():
    from bitnet_cli import membw

    rates = membw.measure([1, 2], mib=8, passes=1)
    assert sorted(rates) == [1, 2] and all(r > 1e6 for r in rates.values())


def test_plot_writes_a_png_or_says_what_to_install(tmp_path):
    from bitnet_cli.bench_suite import plot
    from bitnet_cli.errors import UserError

    out = tmp_path / "chart.png"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        with pytest.raises(UserError, match="matplotlib"):
            plot(fake_results(), out)
        return
    plot(fake_results(), out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_peer_copy_keeps_the_ternary_weights(tiny_model, tmp_path):
    import numpy as np
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    import bitnet_kernels as K
    from bitnet_cli.bench_llamacpp import write_peer_model
    from bitnet_cli.modelfile import GGMLType, open_model_file

    src, dst = open_model_file(tiny_model), open_model_file(write_peer_model(tiny_model, tmp_path / "p.gguf", "tq2_0"))
    assert dst.arch == "bitnet" and dst.metadata["bitnet.block_count"] == src.metadata["bitnet-b1.58.block_count"]
    assert dst.metadata["general.file_type"] == 37
    q, down = dst.tensors["blk.0.attn_q.weight"], dst.tensors["blk.0.ffn_down.weight"]
    assert q.ggml_type == GGMLType.TQ2_0 and down.ggml_type == GGMLType.F16  # 384-wide rows cannot be TQ2_0
    t, scale = K.unpack_i2s(src.tensors["blk.0.attn_q.weight"].data, *q.shape)
    got = dequantize(np.asarray(q.data), GGMLQuantizationType.TQ2_0).reshape(q.shape)
    np.testing.assert_array_equal(got, t.astype(np.float32) * np.float32(scale))
    assert dst.tensors["token_embd.weight"].ggml_type == src.tensors["token_embd.weight"].ggml_type


def test_compare_without_llama_cpp_says_how_to_install(monkeypatch):
    import sys

    from bitnet_cli.bench_llamacpp import require_llama_cpp
    from bitnet_cli.errors import UserError

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` fail
    with pytest.raises(UserError, match="llama-cpp-python") as e:
        require_llama_cpp()
    assert "bitnet-cli[compare]" in e.value.hint


def test_e2e_script_mirrors_upstream_flags(monkeypatch):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("e2e_benchmark", Path(__file__).parent.parent / "scripts" / "e2e_benchmark.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    calls = []
    monkeypatch.setattr("bitnet_cli.cli.app.main", calls.append)
    mod.main(["-m", "m.gguf", "-n", "200", "-p", "256", "-t", "4"])
    assert calls == [["bench", "-m", "m.gguf", "-n", "200", "-p", "256", "-t", "4", "-r", "5"]]
    args, _ = mod.parse_args(["--model", "x.gguf"])
    assert (args.n_token, args.n_prompt, args.threads) == (128, 512, 2)  # upstream's defaults
