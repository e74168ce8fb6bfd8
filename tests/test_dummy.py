"""Dummy models: every preset's tensor plan, tiny presets written end to end, the CLI and script."""
from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import bitnet_kernels as K
from bitnet_cli.dummy import PRESETS, dummy_metadata, dummy_model_nbytes, dummy_tensor_specs, write_dummy_model
from bitnet_cli.errors import UserError
from bitnet_cli.modelfile import GGMLType, open_model_file
from bitnet_cli.tokenizer import Tokenizer

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("dummy")
    return {ot: write_dummy_model(d / f"tiny-{ot}.gguf", "test-tiny", ot, seed=7) for ot in ("i2_s", "f32", "f16")}


def test_tiny_model_file(tiny: dict[str, Path]) -> None:
    mf = open_model_file(tiny["i2_s"])
    md = mf.metadata
    assert mf.arch == "bitnet" and md["general.file_type"] == 40
    assert md["bitnet.embedding_length"] == 256 and md["bitnet.attention.head_count_kv"] == md["bitnet.attention.head_count"]
    assert md["bitnet.rope.freq_base"] == 10000.0 and md["bitnet.rope.dimension_count"] == 64
    assert len(mf.tensors) == 2 * 11 + 2 and "output.weight" not in mf.tensors
    assert mf.tensors["token_embd.weight"].ggml_type == GGMLType.F16 and mf.tensors["token_embd.weight"].shape == (512, 256)
    assert mf.tensors["blk.1.ffn_down.weight"].shape == (256, 384)
    embd = mf.array("token_embd.weight").astype(np.float32)
    assert abs(float(embd.mean())) < 1e-3 and 0.018 < float(embd.std()) < 0.022
    norms = mf.array("blk.0.attn_norm.weight")
    assert norms.dtype == np.float32 and abs(float(norms.mean()) - 1) < 0.05
    tok = Tokenizer.from_metadata(md)
    assert tok.vocab_size == 512 and tok.decode(tok.encode("the river", add_bos=False)) == "the river"


def test_ternary_weights_same_in_every_type(tiny: dict[str, Path]) -> None:
    files = {ot: open_model_file(p) for ot, p in tiny.items()}
    for name in ("blk.0.attn_q.weight", "blk.1.ffn_gate.weight"):
        rec = files["i2_s"].tensors[name]
        assert rec.ggml_type == GGMLType.I2_S
        t, scale = K.unpack_i2s(rec.data, *rec.shape)
        codes = (rec.data[: rec.nbytes - 32, None] >> np.array([6, 4, 2, 0], np.uint8)) & 3
        assert not np.any(codes == 3)  # only canonical codes
        counts = np.bincount((t + 1).ravel(), minlength=3) / t.size
        assert np.all(np.abs(counts - 1 / 3) < 0.02)
        assert 0 < scale < 1
        np.testing.assert_array_equal(files["f32"].array(name), t * scale)
        np.testing.assert_array_equal(files["f16"].array(name).astype(np.float32), t * scale)


def test_float_weights_decoded_in_slabs(monkeypatch: pytest.MonkeyPatch) -> None:
    import bitnet_cli.dummy as dummy

    t = np.random.default_rng(0).integers(-1, 2, size=(10, 256)).astype(np.int8)
    raw = K.pack_i2s(t, 0.5)
    monkeypatch.setattr(dummy, "_SLAB_VALUES", 3 * 256)  # 3 rows per slab: 4 slabs
    np.testing.assert_array_equal(dummy._i2s_to_float(raw, 10, 256, 0.5, np.float16), (t * 0.5).astype(np.float16))


def test_seed_changes_weights(tmp_path: Path, tiny: dict[str, Path]) -> None:
    other = open_model_file(write_dummy_model(tmp_path / "s8.gguf", "test-tiny", "i2_s", seed=8))
    same = open_model_file(write_dummy_model(tmp_path / "s7.gguf", "test-tiny", "i2_s", seed=7))
    base = open_model_file(tiny["i2_s"])
    name = "blk.0.attn_q.weight"
    assert not np.array_equal(other.tensors[name].data, base.tensors[name].data)
    assert np.array_equal(same.tensors[name].data, base.tensors[name].data)


def test_official_2b4t_layout_without_writing() -> None:
    specs = dummy_tensor_specs(PRESETS["2B-4T"], "i2_s")
    assert len(specs) == 332  # 30 x 11 + 2, as the official file
    assert Counter(s.ggml_type for s in specs) == {GGMLType.F32: 121, GGMLType.F16: 1, GGMLType.I2_S: 210}
    shapes = {s.name: s.shape for s in specs}
    assert shapes["blk.0.attn_k.weight"] == (640, 2560) and shapes["blk.29.ffn_down.weight"] == (2560, 6912)
    assert shapes["token_embd.weight"] == (128256, 2560)
    md = dummy_metadata(PRESETS["2B-4T"], "i2_s")
    assert len(md) == 24 and "tokenizer.ggml.pre" not in md and md["general.architecture"] == "bitnet-b1.58"
    assert md["tokenizer.ggml.bos_token_id"] == 128000 and md["bitnet-b1.58.attention.head_count_kv"] == 5
    assert 1.1e9 < dummy_model_nbytes("2B-4T") < 1.2e9


def test_huge_presets_are_planned_not_built() -> None:
    # 100B: 72 x (4 x 8192² + 3 x 8192 x 45568) ternary weights at 2 bits + a 32-byte tail each,
    # F32 norms (3 x 8192 + 45568 per layer, + the output norm), and the F16 embedding.
    ternary = 72 * (4 * 8192 * 8192 + 3 * 8192 * 45568)
    norms = 4 * (72 * (3 * 8192 + 45568) + 8192)
    expected = ternary // 4 + 72 * 7 * 32 + norms + 32002 * 8192 * 2
    assert dummy_model_nbytes("100B") == expected  # ~25.5 GB
    for size in PRESETS:
        specs = dummy_tensor_specs(PRESETS[size], "i2_s")
        assert all(s.shape[-1] % 128 == 0 for s in specs if s.ggml_type == GGMLType.I2_S), size


def test_tiny_2b4t_has_the_official_key_set(tmp_path: Path) -> None:
    mf = open_model_file(write_dummy_model(tmp_path / "o.gguf", "test-tiny-2b4t", "i2_s"))
    assert len(mf.metadata) == 24 and mf.arch == "bitnet-b1.58"
    assert mf.tensors["blk.0.attn_k.weight"].shape == (128, 256)  # GQA: 1 kv head of 128


@pytest.mark.parametrize("outtype", ["tl1", "tl2"])
def test_tl_dummies_hold_the_same_weights(tmp_path: Path, tiny: dict[str, Path], outtype: str) -> None:
    from bitnet_cli.modelfile import unpack_tl

    mf = open_model_file(write_dummy_model(tmp_path / f"{outtype}.gguf", "test-tiny", outtype, seed=7))
    assert mf.metadata["general.file_type"] == (38 if outtype == "tl1" else 39)
    rec = mf.tensors["blk.0.ffn_up.weight"]
    t, scale = unpack_tl(rec)
    ref = open_model_file(tiny["i2_s"]).tensors["blk.0.ffn_up.weight"]
    t_ref, scale_ref = K.unpack_i2s(ref.data, *ref.shape)
    np.testing.assert_array_equal(t, t_ref)
    assert scale == scale_ref


def test_bad_requests() -> None:
    with pytest.raises(UserError, match="unknown model size"):
        dummy_model_nbytes("5B")
    with pytest.raises(UserError, match="unknown --outtype"):
        dummy_tensor_specs(PRESETS["125M"], "q4_0")


def test_cli_and_script(tmp_path: Path) -> None:
    from bitnet_cli.cli.app import main

    out = tmp_path / "cli.gguf"
    main(["dummy", "-o", str(out), "--model-size", "test-tiny", "--outtype", "f16", "--seed", "3"])
    assert open_model_file(out).tensors["blk.0.attn_q.weight"].ggml_type == GGMLType.F16
    out2 = tmp_path / "script.gguf"
    r = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "generate-dummy-bitnet-model.py"), "models/bitnet_b1_58-large",
         "--outfile", str(out2), "--outtype", "i2_s", "--model-size", "test-tiny"],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "ignored" in r.stderr and out2.is_file()
    assert open_model_file(out2).tensors["blk.0.attn_q.weight"].ggml_type == GGMLType.I2_S


def test_quantized_embedding_dummies_load_and_run(tmp_path):
    """--quant-embd q8_0 / q6_k: valid blocks the engine reads (same layers, different head)."""
    import numpy as np

    import bitnet_cli
    from bitnet_cli.dummy import write_dummy_model
    from bitnet_cli.modelfile import GGMLType, open_model_file

    for qtype, gtype in (("q8_0", GGMLType.Q8_0), ("q6_k", GGMLType.Q6_K)):
        p = write_dummy_model(tmp_path / f"{qtype}.gguf", "test-tiny-2b4t", "i2_s", seed=3, quant_embd=qtype)
        assert open_model_file(p).tensors["token_embd.weight"].ggml_type == gtype
        logits = bitnet_cli.load(p, threads=1).logits([1, 2, 3])
        assert logits.shape == (3, 512) and np.isfinite(logits).all() and logits.std() > 0
