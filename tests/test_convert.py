"""`bitnet convert`: names, types, shapes, metadata, scale semantics, every outtype, atomic and
streaming output. (Logits against transformers are checked in test_families.py.)"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import tiny_checkpoints as tc
from bitnet_cli.convert import convert_checkpoint
from bitnet_cli.convert.checkpoint import Checkpoint
from bitnet_cli.convert.encode import tile_for
from bitnet_cli.convert.metadata import official_keys
from bitnet_cli.convert.ternary import pack_hf_packed, permute_qk, unpack_hf_packed
from bitnet_cli.errors import ModelFormatError, UnsupportedModelError, UserError
from bitnet_cli.modelfile import GGMLType, open_model_file
from bitnet_kernels import ternarize_absmean, ternarize_sign, unpack_i2s

ARCH = {"bitnet-bf16": "bitnet-b1.58", "bitnet-packed": "bitnet-b1.58", "1bitllm": "bitnet",
        "llama-bitlinear": "llama", "falcon-e": "llama"}
LINEARS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


@pytest.fixture(scope="session")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpt")
    return {f: tc.write_checkpoint(f, root / f) for f in tc.FAMILIES}


@pytest.fixture(scope="session")
def i2s_files(ckpts, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("i2s")
    return {f: convert_checkpoint(src, out / f"{f}.gguf", "i2_s") for f, src in ckpts.items()}


def ternary_of(mf, name: str) -> tuple[np.ndarray, np.float32]:
    """Decode any stored projection back to (codes, scale)."""
    rec = mf.tensors[name]
    M, K = rec.shape
    if rec.ggml_type == GGMLType.I2_S:
        return unpack_i2s(rec.data, M, K)
    if rec.ggml_type == GGMLType.TL1:
        from bitnet_kernels.tl1 import unpack_tl1

        c = tile_for(GGMLType.TL1, M, K)
        return unpack_tl1(rec.data, M, K, c.BM, c.BK, c.bm)
    if rec.ggml_type == GGMLType.TL2:
        from bitnet_kernels.tl2 import unpack_tl2

        c = tile_for(GGMLType.TL2, M, K)
        return unpack_tl2(rec.data, M, K, c.BM, c.BK, c.bm)
    if rec.ggml_type in (GGMLType.TQ1_0, GGMLType.TQ2_0):
        from gguf import GGMLQuantizationType
        from gguf.quants import dequantize

        w = dequantize(np.asarray(rec.data), GGMLQuantizationType(int(rec.ggml_type)))
        return ternarize_sign(w.reshape(M, K))
    return ternarize_sign(mf.array(name).astype(np.float32).reshape(M, K))


def hf_linear(fam: str, layer: int, key: str) -> str:
    module, proj = {"attn_q": ("self_attn", "q_proj"), "attn_k": ("self_attn", "k_proj"),
                    "attn_v": ("self_attn", "v_proj"), "attn_output": ("self_attn", "o_proj"),
                    "ffn_gate": ("mlp", "gate_proj"), "ffn_up": ("mlp", "up_proj"),
                    "ffn_down": ("mlp", "down_proj")}[key]
    return f"model.layers.{layer}.{module}.{proj}.weight"


# --------------------------------------------------------------------------------------------
# names, types, shapes, arch
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fam", tc.FAMILIES)
def test_i2s_names_types_shapes(fam, i2s_files):
    mf = open_model_file(i2s_files[fam])
    spec = tc.SPECS[fam]
    assert mf.arch == ARCH[fam]
    sub = ARCH[fam] != "llama"
    expected = {"token_embd.weight", "output_norm.weight"} | ({"output.weight"} if not spec.tied else set())
    for i in range(spec.layers):
        expected |= {f"blk.{i}.{k}.weight" for k in (*LINEARS, "attn_norm", "ffn_norm")}
        if sub:
            expected |= {f"blk.{i}.attn_sub_norm.weight", f"blk.{i}.ffn_sub_norm.weight"}
    assert set(mf.tensors) == expected
    H, F, V = spec.hidden, spec.intermediate, tc.VOCAB
    kv = spec.kv_heads * H // spec.heads
    shapes = {"attn_q": (H, H), "attn_k": (kv, H), "attn_v": (kv, H), "attn_output": (H, H),
              "ffn_gate": (F, H), "ffn_up": (F, H), "ffn_down": (H, F)}
    for name, rec in mf.tensors.items():
        key = name.split(".")[-2]
        if key in shapes:
            assert rec.ggml_type == GGMLType.I2_S and tuple(rec.shape) == shapes[key], name
        elif name in ("token_embd.weight", "output.weight"):
            assert rec.ggml_type == GGMLType.F16 and tuple(rec.shape) == (V, H)
        else:
            assert rec.ggml_type == GGMLType.F32 and len(rec.shape) == 1, name
    assert mf.metadata["general.file_type"] == 40


def test_norms_and_embedding_are_copied_exactly(ckpts, i2s_files):
    ck = Checkpoint(ckpts["1bitllm"])
    mf = open_model_file(i2s_files["1bitllm"])
    np.testing.assert_array_equal(mf.array("blk.1.attn_sub_norm.weight"), ck.float32("model.layers.1.self_attn.inner_attn_ln.weight"))
    np.testing.assert_array_equal(mf.array("blk.0.ffn_sub_norm.weight"), ck.float32("model.layers.0.mlp.ffn_layernorm.weight"))
    np.testing.assert_array_equal(mf.array("token_embd.weight"), ck.float32("model.embed_tokens.weight").astype(np.float16))


# --------------------------------------------------------------------------------------------
# scale semantics and Q/K permutation
# --------------------------------------------------------------------------------------------
def test_master_weights_use_absmean(ckpts, i2s_files):
    ck = Checkpoint(ckpts["bitnet-bf16"])
    mf = open_model_file(i2s_files["bitnet-bf16"])
    for key in LINEARS:
        t, s = ternary_of(mf, f"blk.1.{key}.weight")
        t_ref, m_ref = ternarize_absmean(ck.float32(hf_linear("bitnet-bf16", 1, key)))
        np.testing.assert_array_equal(t, t_ref)
        assert s == m_ref


@pytest.mark.parametrize("fam,mode", [("bitnet-packed", "multiply"), ("llama-bitlinear", "divide"), ("falcon-e", "divide")])
def test_packed_scale_semantics(fam, mode, ckpts, i2s_files):
    """autobitlinear's weight_scale multiplies (stored as is); bitlinear's divides (stored inverted)."""
    ck = Checkpoint(ckpts[fam])
    mf = open_model_file(i2s_files[fam])
    for key in ("attn_v", "attn_output", "ffn_down"):
        hf = hf_linear(fam, 0, key)
        t, s = ternary_of(mf, f"blk.0.{key}.weight")
        ws = np.float32(ck.float32(hf[: -len("weight")] + "weight_scale")[0])
        np.testing.assert_array_equal(t, unpack_hf_packed(ck.raw(hf)))
        want = ws if mode == "multiply" else np.float32(1) / ws
        assert s == want and (ws > 1) == (mode == "divide")  # the fixture's scales are mean|W| ~ 0.016


def test_llama_qk_rows_are_permuted_and_v_is_not(ckpts, i2s_files):
    fam = "llama-bitlinear"
    spec = tc.SPECS[fam]
    ck = Checkpoint(ckpts[fam])
    mf = open_model_file(i2s_files[fam])
    for key, heads in (("attn_q", spec.heads), ("attn_k", spec.kv_heads), ("attn_v", None)):
        hf_t = unpack_hf_packed(ck.raw(hf_linear(fam, 1, key)))
        t, _ = ternary_of(mf, f"blk.1.{key}.weight")
        np.testing.assert_array_equal(t, permute_qk(hf_t, heads) if heads else hf_t)
        if heads:
            assert not np.array_equal(t, hf_t)
    # the bitnet archs use rotate-half RoPE: no permutation
    ckb = Checkpoint(ckpts["bitnet-packed"])
    t, _ = ternary_of(open_model_file(i2s_files["bitnet-packed"]), "blk.0.attn_q.weight")
    np.testing.assert_array_equal(t, unpack_hf_packed(ckb.raw(hf_linear("bitnet-packed", 0, "attn_q"))))


def test_permute_qk_pairs_rotate_half_rows():
    w = np.arange(8).reshape(8, 1)  # one head, head_dim 8: rows (i, i+4) become neighbours
    assert permute_qk(w, 1)[:, 0].tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    w2 = np.arange(8).reshape(8, 1)  # two heads of 4
    assert permute_qk(w2, 2)[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


def test_hf_packed_layout_lsb_first_rows_r_plus_kR():
    t = np.array([[-1], [0], [1], [1], [0], [0], [-1], [1]], dtype=np.int8)  # M=8 -> R=2
    packed = pack_hf_packed(t)
    # byte 0 holds rows 0, 2, 4, 6 at bits 0, 2, 4, 6 (codes t+1 = 0, 2, 1, 0)
    assert packed[0, 0] == (0 | 2 << 2 | 1 << 4 | 0 << 6)
    np.testing.assert_array_equal(unpack_hf_packed(packed), t)


# --------------------------------------------------------------------------------------------
# FFN activation -> architecture
# --------------------------------------------------------------------------------------------
def _with_config(src: Path, dst: Path, **changes) -> Path:
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg.update(changes)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


@pytest.mark.parametrize("fam,act,arch", [("bitnet-bf16", "silu", "bitnet"), ("1bitllm", "relu2", "bitnet-b1.58"),
                                          ("bitnet-packed", "relu2", "bitnet-b1.58")])
def test_arch_follows_hidden_act(fam, act, arch, ckpts, tmp_path):
    src = _with_config(ckpts[fam], tmp_path / "m", hidden_act=act)
    out = convert_checkpoint(src, tmp_path / "m.gguf", "f32")
    assert open_model_file(out).arch == arch


def test_unsupported_configs_fail_before_writing(ckpts, tmp_path):
    cases = [
        ({"hidden_act": "relu2"}, "llama-bitlinear", UnsupportedModelError, "activation"),
        ({"quantization_config": None}, "1bitllm", None, None),  # 1bitLLM never had one: still fine
        ({"architectures": ["GPT2LMHeadModel"]}, "bitnet-bf16", UnsupportedModelError, "not supported"),
        ({"model_type": "qwen3"}, "bitnet-bf16", UnsupportedModelError, "embedding"),
        ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, "llama-bitlinear", UnsupportedModelError, "RoPE"),
    ]
    for i, (change, fam, exc, match) in enumerate(cases):
        src = _with_config(ckpts[fam], tmp_path / f"c{i}", **change)
        out = tmp_path / f"c{i}.gguf"
        if exc is None:
            convert_checkpoint(src, out, "i2_s")
            assert out.exists()
            continue
        with pytest.raises(exc, match=match):
            convert_checkpoint(src, out, "i2_s")
        assert not out.exists()
    float_llama = _with_config(ckpts["1bitllm"], tmp_path / "plain", architectures=["LlamaForCausalLM"])
    with pytest.raises(UnsupportedModelError, match="full-precision"):
        convert_checkpoint(float_llama, tmp_path / "plain.gguf")


# --------------------------------------------------------------------------------------------
# metadata
# --------------------------------------------------------------------------------------------
def test_2b4t_family_key_set_matches_official(i2s_files, ckpts):
    md = open_model_file(i2s_files["bitnet-packed"]).metadata
    official = official_keys("bitnet-b1.58")
    assert len(official) == 24 and set(official) <= set(md)
    # Extra keys allowed: the pre-tokenizer (tokenize exactly as HF does) and the end-of-turn id.
    assert set(md) - set(official) <= {"tokenizer.ggml.pre", "tokenizer.ggml.eot_token_id"}
    assert list(md)[: 2] == ["general.architecture", "general.name"]
    spec = tc.SPECS["bitnet-packed"]
    a = "bitnet-b1.58"
    assert md[f"{a}.embedding_length"] == spec.hidden and md[f"{a}.feed_forward_length"] == spec.intermediate
    assert md[f"{a}.attention.head_count"] == spec.heads and md[f"{a}.attention.head_count_kv"] == spec.kv_heads
    assert md[f"{a}.rope.dimension_count"] == spec.hidden // spec.heads
    assert md[f"{a}.vocab_size"] == tc.VOCAB and md[f"{a}.context_length"] == 4096
    assert md[f"{a}.rope.freq_base"] == pytest.approx(500000.0) and md[f"{a}.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-5)
    assert md["general.quantization_version"] == 2 and md["general.file_type"] == 40
    assert md["tokenizer.ggml.model"] == "gpt2" and md["tokenizer.ggml.bos_token_id"] == tc.N_BASE_TOKENS
    assert md["tokenizer.ggml.eos_token_id"] == tc.N_BASE_TOKENS + 1
    assert md["tokenizer.chat_template"] == tc.CHAT_TEMPLATE
    assert len(md["tokenizer.ggml.tokens"]) == tc.VOCAB
    if "tokenizer.ggml.pre" in md:
        assert md["tokenizer.ggml.pre"] == "llama-bpe"


def test_general_name_from_folder_or_override(ckpts, tmp_path):
    out = convert_checkpoint(ckpts["falcon-e"], tmp_path / "a.gguf", "i2_s", name="my-model")
    assert open_model_file(out).metadata["general.name"] == "my-model"
    out = convert_checkpoint(ckpts["falcon-e"], tmp_path / "b.gguf", "i2_s")
    assert open_model_file(out).metadata["general.name"] == "falcon-e"


# --------------------------------------------------------------------------------------------
# every outtype keeps the same ternary weights
# --------------------------------------------------------------------------------------------
OUT = {"i2_s": (GGMLType.I2_S, 40), "tl1": (GGMLType.TL1, 38), "tq2_0": (GGMLType.TQ2_0, 37),
       "tq1_0": (GGMLType.TQ1_0, 36), "f16": (GGMLType.F16, 1), "f32": (GGMLType.F32, 0)}


@pytest.mark.parametrize("outtype", list(OUT))
def test_every_outtype_stores_the_same_ternary_weights(outtype, ckpts, i2s_files, tmp_path):
    fam = "bitnet-packed"  # 256-multiple shapes: valid for every block type
    ref = open_model_file(i2s_files[fam])
    mf = open_model_file(convert_checkpoint(ckpts[fam], tmp_path / f"{outtype}.gguf", outtype))
    ttype, ftype = OUT[outtype]
    assert mf.metadata["general.file_type"] == ftype
    assert mf.tensors["token_embd.weight"].ggml_type == (GGMLType.F32 if outtype == "f32" else GGMLType.F16)
    for key in LINEARS:
        name = f"blk.1.{key}.weight"
        assert mf.tensors[name].ggml_type == ttype
        t, s = ternary_of(mf, name)
        t_ref, s_ref = ternary_of(ref, name)
        np.testing.assert_array_equal(t, t_ref)
        # F16 and the TQ block scales are f16; everything else keeps the f32 scale exactly
        rtol = 1e-3 if outtype in ("f16", "tq1_0", "tq2_0") else 0
        np.testing.assert_allclose(s, s_ref, rtol=rtol)


def test_shape_that_a_type_cannot_hold_is_a_clear_error(ckpts, tmp_path):
    with pytest.raises(UnsupportedModelError, match="TQ2_0 needs input sizes that are multiples of 256"):
        convert_checkpoint(ckpts["bitnet-bf16"], tmp_path / "x.gguf", "tq2_0")
    assert not (tmp_path / "x.gguf").exists()
    with pytest.raises(UserError, match="unknown output type"):
        convert_checkpoint(ckpts["bitnet-bf16"], tmp_path / "x.gguf", "q4_0")


@pytest.mark.parametrize("embd", ["f16", "q8_0", "q6_k", "f32"])
def test_quant_embd_types(embd, ckpts, tmp_path):
    fam = "llama-bitlinear"  # untied: the head follows the embedding type too
    mf = open_model_file(convert_checkpoint(ckpts[fam], tmp_path / f"{embd}.gguf", "i2_s", quant_embd=embd))
    want = {"f16": GGMLType.F16, "q8_0": GGMLType.Q8_0, "q6_k": GGMLType.Q6_K, "f32": GGMLType.F32}[embd]
    for name in ("token_embd.weight", "output.weight"):
        assert mf.tensors[name].ggml_type == want
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    rec = mf.tensors["token_embd.weight"]
    got = dequantize(np.asarray(rec.data), GGMLQuantizationType(int(want))).reshape(rec.shape)
    src = Checkpoint(ckpts[fam]).float32("model.embed_tokens.weight")
    tol = {"f16": 1e-3, "f32": 0, "q8_0": 1e-2, "q6_k": 3e-2}[embd]
    assert np.abs(got - src).max() <= tol * np.abs(src).max()


# --------------------------------------------------------------------------------------------
# atomic output and streaming
# --------------------------------------------------------------------------------------------
def test_failure_mid_write_leaves_no_file(ckpts, tmp_path, monkeypatch):
    import bitnet_cli.convert.pipeline as pipeline

    calls = {"n": 0}
    real = pipeline.encode_ternary

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "encode_ternary", flaky)
    out = tmp_path / "out" / "m.gguf"
    with pytest.raises(RuntimeError, match="disk on fire"):
        convert_checkpoint(ckpts["bitnet-bf16"], out, "i2_s")
    assert list(out.parent.iterdir()) == []


def test_truncated_or_missing_checkpoint_is_a_clear_error(ckpts, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(ckpts["bitnet-bf16"], bad)
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFormatError, match="truncated"):
        convert_checkpoint(bad, tmp_path / "bad.gguf")
    (bad / "model.safetensors").unlink()
    with pytest.raises(UserError, match="no \\*.safetensors"):
        convert_checkpoint(bad, tmp_path / "bad.gguf")
    with pytest.raises(UserError, match="no config.json"):
        convert_checkpoint(tmp_path, tmp_path / "bad.gguf")
    assert not (tmp_path / "bad.gguf").exists()


def _big_checkpoint(dst: Path, layers: int, hidden: int, inter: int) -> int:
    """An f32 master-weight BitNet checkpoint written tensor by tensor; returns its size in bytes."""
    rng = np.random.default_rng(7)
    spec = tc.Family("big", 1, hidden, inter, 4, 4, layers=layers)
    cfg = {**tc.make_config(tc.SPECS["bitnet-bf16"]), "hidden_size": hidden, "intermediate_size": inter,
           "num_hidden_layers": layers, "num_attention_heads": 4, "num_key_value_heads": 4}
    dst.mkdir()
    tensors = {"model.embed_tokens.weight": ("F32", (tc.VOCAB, hidden), rng.standard_normal((tc.VOCAB, hidden), np.float32).tobytes()),
               "model.norm.weight": ("F32", (hidden,), np.ones(hidden, np.float32).tobytes())}
    shapes = tc._linear_shapes(spec)
    for i in range(layers):
        p = f"model.layers.{i}."
        for n, size in (("input_layernorm", hidden), ("post_attention_layernorm", hidden),
                        ("self_attn.attn_sub_norm", hidden), ("mlp.ffn_sub_norm", inter)):
            tensors[p + n + ".weight"] = ("F32", (size,), np.ones(size, np.float32).tobytes())
        for lin, shape in shapes.items():
            w = rng.standard_normal(shape, np.float32)
            tensors[p + f"{tc._module(lin)}.{lin}.weight"] = ("F32", shape, w.tobytes())
    tc.write_safetensors(dst / "model.safetensors", tensors)
    (dst / "config.json").write_text(json.dumps(cfg))
    (dst / "tokenizer.json").write_text(tc.make_tokenizer_json())
    (dst / "tokenizer_config.json").write_text(json.dumps(tc.make_tokenizer_config()))
    return (dst / "model.safetensors").stat().st_size


def test_conversion_streams_tensor_by_tensor(tmp_path):
    size = _big_checkpoint(tmp_path / "big", layers=6, hidden=512, inter=1536)  # ~80 MB of f32
    tracemalloc.start()
    try:
        convert_checkpoint(tmp_path / "big", tmp_path / "big.gguf", "i2_s")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # One 1536x512 projection in f32 is 3 MB; holding the whole checkpoint would be ~80 MB.
    assert peak < size / 4, (peak, size)
    assert open_model_file(tmp_path / "big.gguf").tensors["blk.5.ffn_down.weight"].shape == (512, 1536)


def test_tl2_on_a_shape_it_supports(tmp_path):
    _big_checkpoint(tmp_path / "m", layers=1, hidden=384, inter=768)
    ref = open_model_file(convert_checkpoint(tmp_path / "m", tmp_path / "i2s.gguf", "i2_s"))
    mf = open_model_file(convert_checkpoint(tmp_path / "m", tmp_path / "tl2.gguf", "tl2"))
    assert mf.metadata["general.file_type"] == 39
    for key in LINEARS:
        t, s = ternary_of(mf, f"blk.0.{key}.weight")
        t_ref, s_ref = ternary_of(ref, f"blk.0.{key}.weight")
        np.testing.assert_array_equal(t, t_ref)
        assert s == s_ref


# --------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------
def test_cli_convert_prints_the_path(ckpts, tmp_path):
    out = tmp_path / "cli.gguf"
    r = subprocess.run([sys.executable, "-m", "bitnet_cli", "convert", str(ckpts["falcon-e"]), "-o", str(out),
                        "--outtype", "i2_s"], capture_output=True, text=True, timeout=300, env={"NO_COLOR": "1", "PATH": ""})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(out) and open_model_file(out).arch == "llama"
    r = subprocess.run([sys.executable, "-m", "bitnet_cli", "convert", str(ckpts["falcon-e"]), "--outtype", "q3"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2


def test_sharded_checkpoint_converts_identically(ckpts, i2s_files, tmp_path):
    """model-0000x-of-0000y.safetensors + index.json (how the larger repos ship) gives the same file."""
    src = ckpts["llama-bitlinear"]
    dst = tmp_path / "sharded"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model.safetensors"))
    ck = Checkpoint(src)
    names = sorted(ck.refs)
    halves = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    weight_map = {}
    for fname, part in halves.items():
        tc.write_safetensors(dst / fname, {n: (ck.dtype(n), ck.shape(n), ck.raw(n).tobytes()) for n in part})
        weight_map.update({n: fname for n in part})
    (dst / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    out = convert_checkpoint(dst, tmp_path / "sharded.gguf", "i2_s", name="llama-bitlinear")
    assert out.read_bytes() == i2s_files["llama-bitlinear"].read_bytes()
