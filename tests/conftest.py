"""Shared fixtures: tiny dummy models built once per session, and no network."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# The tests' `bitnet setup` runs tune kernels and save the parameters: keep those out of the user's cache.
os.environ["BITNET_TUNE_CACHE"] = os.path.join(tempfile.mkdtemp(prefix="bitnet-tune-"), "kernels-tuned.json")

GOLDENS = Path(__file__).resolve().parent / "goldens"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer I2_S model of the 2B-4T family (ReLU², GQA, bitnet-b1.58 arch)."""
    from bitnet_cli.dummy import write_dummy_model

    return write_dummy_model(tmp_path_factory.mktemp("models") / "tiny-i2_s.gguf", "test-tiny-2b4t", "i2_s", seed=1)


@pytest.fixture(scope="session")
def tiny_silu_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer I2_S model of the `bitnet` arch (SiLU, MHA)."""
    from bitnet_cli.dummy import write_dummy_model

    return write_dummy_model(tmp_path_factory.mktemp("models") / "tiny-silu.gguf", "test-tiny", "i2_s", seed=2)
