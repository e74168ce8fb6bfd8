"""CLI surface: help, usage errors, and one-line user errors with exit codes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def bitnet(*args: str, env: dict | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    e = {**os.environ, "NO_COLOR": "1", "COLUMNS": "100", **(env or {})}
    e.pop("BITNET_DEBUG", None)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "bitnet_cli", *args], capture_output=True, text=True,
                          env=e, input=stdin, timeout=300)


def test_help_lists_commands():
    r = bitnet("--help")
    assert r.returncode == 0
    for cmd in ("run", "dummy"):
        assert cmd in r.stdout


def test_missing_model_is_one_line_exit_1(tmp_path):
    r = bitnet("run", "-m", str(tmp_path / "nope.gguf"), "-p", "hi")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "nope.gguf" in lines[0]
    assert "Traceback" not in r.stderr


def test_not_a_gguf_is_one_line_exit_1(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"this is not a model file at all" * 10)
    r = bitnet("run", "-m", str(bad), "-p", "hi")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")


def test_debug_env_shows_traceback(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 10)
    r = bitnet("run", "-m", str(bad), "-p", "hi", env={"BITNET_DEBUG": "1"})
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_bad_flag_value_is_usage_error_exit_2(tmp_path):
    r = bitnet("run", "-m", str(tmp_path / "x.gguf"), "-p", "hi", "-n", "many")
    assert r.returncode == 2


@pytest.mark.parametrize("flag,value", [("--temp", "-1"), ("--top-p", "1.5"), ("-t", "0"), ("-c", "-5")])
def test_bad_sampling_or_resource_values_exit_1(tiny_model, flag, value):
    r = bitnet("run", "-m", str(tiny_model), "-p", "hi", "-n", "2", flag, value)
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("Error: ")


def test_run_generates_text_and_reports_speed(tiny_model):
    r = bitnet("run", "-m", str(tiny_model), "-p", "Hello", "-n", "8", "--temp", "0", "-t", "1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() != ""
    assert "Prompt:" in r.stderr and "Generation:" in r.stderr and "t/s" in r.stderr


def test_run_accepts_bitnet_cpp_spellings(tiny_model):
    r = bitnet("run", "-m", str(tiny_model), "-p", "Hello", "-n", "4", "-temp", "0", "-ngl", "0", "-t", "1")
    assert r.returncode == 0, r.stderr


def test_run_warm_up_does_not_change_the_text(tiny_model):
    args = ("run", "-m", str(tiny_model), "-p", "Hello", "-n", "8", "--temp", "0", "-t", "1")
    warm, cold = bitnet(*args), bitnet(*args, "--no-warmup")
    assert warm.returncode == 0 and cold.returncode == 0, warm.stderr + cold.stderr
    assert warm.stdout == cold.stdout != ""


def test_cli_docs_are_current():
    sys.path.insert(0, str(ROOT / "scripts"))
    import gen_cli_docs

    assert (ROOT / "docs" / "cli.md").read_text() == gen_cli_docs.render(), "run `make docs`"
