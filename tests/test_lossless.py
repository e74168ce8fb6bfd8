"""Lossless against transformers: the engine reproduces BitNetForCausalLM's fp32 logits.

The goldens in tests/goldens/ come from scripts/make_goldens.py (transformers, fp32, eager).
Logits are never bit-identical (docs/losslessness.md): per-token int8 activations turn a 1-ulp
difference into a whole quantization step. So every check is relative to the floor that
transformers shows against itself (committed in golden.json): max and mean |Δ| within
FLOOR_MULTIPLE times it, the same top-1 token on every row whose reference top1-top2 gap
exceeds the floor, the same greedy tokens up to a step whose gap is within the floor.

The GGUF files checked here were written with gguf's own GGUFWriter and an I2_S packer that is
not ours. A deliberately broken engine (no activation quantization, reversed 2-bit fields,
dropped BOS) must fail the same checks.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import bitnet_cli
import bitnet_kernels

GOLDENS = Path(__file__).parent / "goldens"
FLOOR_MULTIPLE = 4.0


# ---------------------------------------------------------------------------------------------
# goldens and the checks (shared with test_families.py)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Golden:
    family: str
    logits: np.ndarray  # f32 [n, vocab]
    meta: dict

    @property
    def floor_max(self) -> float:
        return float(self.meta["floor"]["max_abs"])

    @property
    def floor_mean(self) -> float:
        return float(self.meta["floor"]["mean_abs"])


def load_golden(family: str) -> Golden:
    d = GOLDENS / family
    return Golden(family, np.load(d / "logits.npy"), json.loads((d / "golden.json").read_text()))


def logit_failures(ours: np.ndarray, ref: np.ndarray, floor_max: float, floor_mean: float) -> list[str]:
    """Why `ours` is not lossless against `ref` (empty: it is)."""
    if ours.shape != ref.shape:
        return [f"logits shape {ours.shape} != reference {ref.shape}"]
    if not np.all(np.isfinite(ours)):
        return ["logits contain NaN/inf"]
    d = np.abs(ours.astype(np.float64) - ref)
    out = []
    if d.max() > FLOOR_MULTIPLE * floor_max:
        out.append(f"max |Δlogit| {d.max():.4g} > {FLOOR_MULTIPLE:g} × floor {floor_max:.4g}")
    if d.mean() > FLOOR_MULTIPLE * floor_mean:
        out.append(f"mean |Δlogit| {d.mean():.4g} > {FLOOR_MULTIPLE:g} × floor {floor_mean:.4g}")
    top2 = np.sort(ref, axis=1)[:, -2:]
    decisive = (top2[:, 1] - top2[:, 0]) > floor_max  # rows not decided by rounding noise
    wrong = np.flatnonzero(decisive & (ours.argmax(1) != ref.argmax(1)))
    if wrong.size:
        out.append(f"top-1 differs on decisive rows {wrong.tolist()} (of {int(decisive.sum())})")
    return out


def greedy_failures(ours: list[int], golden: Golden) -> list[str]:
    """Greedy tokens must match up to the first step the reference calls a near-tie."""
    ref, gaps = golden.meta["greedy_ids"], golden.meta["greedy_gaps"]
    for i, (a, b) in enumerate(zip(ours, ref)):
        if a != b:
            if gaps[i] <= golden.floor_max:
                return []  # a near-tie: both continuations are right
            return [f"greedy token {i}: {a} != reference {b} (reference gap {gaps[i]:.3g})"]
        if gaps[i] <= golden.floor_max:
            return []  # beyond a near-tie the two runs may legitimately differ
    if len(ours) < len(ref):
        return [f"only {len(ours)} greedy tokens, reference has {len(ref)}"]
    return []


def greedy_text_failures(model, golden: Golden) -> list[str]:
    """Tokenize the greedy prompt with the model's own tokenizer (BOS rule included), decode."""
    from bitnet_cli.sampling import SamplingParams

    out = []
    ids = model.tokenizer.encode(golden.meta["greedy_text"])
    if ids != golden.meta["greedy_prompt_ids"]:
        out.append(f"prompt ids {ids} != reference {golden.meta['greedy_prompt_ids']}")
    params = SamplingParams(temp=0.0, repeat_penalty=1.0)
    n = len(golden.meta["greedy_ids"])
    tokens = [r.token for r in bitnet_cli.stream_generate(
        model, golden.meta["greedy_text"], max_tokens=n, sampling=params, ignore_eos=True)]
    return out + greedy_failures(tokens, golden)


def cached_logits(model, ids: list[int]) -> np.ndarray:
    """Logits token by token through the KV cache: [n, vocab]."""
    cache = model.new_cache(len(ids))
    return np.concatenate([model.forward([t], cache, last_only=True)[-1:] for t in ids])


def engine_failures(model, golden: Golden) -> list[str]:
    """All checks of one model against one golden."""
    ids = golden.meta["prompt_ids"]
    full = model.logits(ids)
    out = logit_failures(full, golden.logits, golden.floor_max, golden.floor_mean)
    out += [f"cached decode vs full pass: {m}" for m in
            logit_failures(cached_logits(model, ids), full, golden.floor_max, golden.floor_mean)]
    return out + greedy_text_failures(model, golden)


# ---------------------------------------------------------------------------------------------
# the engine on GGUF files written by other tools
# ---------------------------------------------------------------------------------------------
FAMILY = "bitnet-bf16"
OUTTYPES = ("f32", "i2_s")


def gguf_path(outtype: str) -> Path:
    return GOLDENS / FAMILY / f"ggml-model-{outtype}.gguf"


@pytest.fixture(scope="session")
def golden() -> Golden:
    return load_golden(FAMILY)


@pytest.fixture(scope="session", params=OUTTYPES)
def model(request):
    return bitnet_cli.load(gguf_path(request.param))


def test_golden_fixtures_are_consistent(golden: Golden) -> None:
    meta = golden.meta
    assert golden.logits.dtype == np.float32
    assert golden.logits.shape == (len(meta["prompt_ids"]), 384)
    assert 0 < golden.floor_mean <= golden.floor_max < 1.0
    assert len(meta["greedy_ids"]) == len(meta["greedy_gaps"]) == 16
    # the floor is a max over measured reorderings, so it is at least each of them
    for part in ("incremental", "chunked", "sdpa", "fp64", "ulp_perturbed"):
        assert meta["floor"][part]["max_abs"] <= golden.floor_max


def test_tokenizer_gives_reference_ids(model, golden: Golden) -> None:
    meta = golden.meta
    assert model.tokenizer.encode(meta["prompt_text"])[: len(meta["prompt_ids"])] == meta["prompt_ids"]
    assert model.tokenizer.encode(meta["greedy_text"]) == meta["greedy_prompt_ids"]


def test_logits_match_transformers(model, golden: Golden) -> None:
    ours = model.logits(golden.meta["prompt_ids"])
    assert ours.dtype == np.float32
    assert logit_failures(ours, golden.logits, golden.floor_max, golden.floor_mean) == []


def test_greedy_tokens_match_transformers(model, golden: Golden) -> None:
    assert greedy_text_failures(model, golden) == []


def test_cached_decode_matches_full_pass(model, golden: Golden) -> None:
    ids = golden.meta["prompt_ids"]
    full = model.logits(ids)
    assert logit_failures(cached_logits(model, ids), full, golden.floor_max, golden.floor_mean) == []


def test_i2s_fixture_is_what_llama_quantize_makes_of_the_f32_one() -> None:
    """Integer parts are exact: sign-ternarizing the F32 file and packing gives the I2_S bytes."""
    from bitnet_cli.modelfile import GGMLType, open_model_file

    f32, i2s = open_model_file(gguf_path("f32")), open_model_file(gguf_path("i2_s"))
    linears = [n for n, r in i2s.tensors.items() if r.ggml_type == GGMLType.I2_S]
    assert len(linears) == 14
    for name in linears:
        rec = i2s.tensors[name]
        t, scale = bitnet_kernels.ternarize_sign(np.asarray(f32.array(name), np.float32).reshape(rec.shape))
        n = rec.nbytes - 28  # packed codes and the f32 scale; the 28 padding bytes are unspecified
        assert bytes(bitnet_kernels.pack_i2s(t, scale)[:n]) == bytes(rec.data[:n]), name


OFFICIAL_KEYS = [  # bitnet-cpp.md §6.5, in the official file's order ({a} = the arch)
    "general.architecture", "general.name", "{a}.vocab_size", "{a}.context_length",
    "{a}.embedding_length", "{a}.block_count", "{a}.feed_forward_length", "{a}.rope.dimension_count",
    "{a}.attention.head_count", "{a}.attention.head_count_kv", "tokenizer.ggml.add_bos_token",
    "{a}.attention.layer_norm_rms_epsilon", "{a}.rope.freq_base", "general.file_type",
    "tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.scores",
    "tokenizer.ggml.token_type", "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id", "tokenizer.ggml.padding_token_id", "tokenizer.chat_template",
    "general.quantization_version",
]


def test_i2s_fixture_carries_the_official_key_set() -> None:
    from bitnet_cli.modelfile import open_model_file

    mf = open_model_file(gguf_path("i2_s"))
    assert list(mf.metadata) == [k.format(a="bitnet-b1.58") for k in OFFICIAL_KEYS]
    assert mf.metadata["general.file_type"] == 40
    assert "tokenizer.ggml.pre" not in mf.metadata  # absent in the official file too
    assert "output.weight" not in mf.tensors  # tied head


# ---------------------------------------------------------------------------------------------
# a broken engine must fail the same checks
# ---------------------------------------------------------------------------------------------
def _patch_everywhere(monkeypatch, owner, name: str, new) -> None:
    """Replace owner.name, and every `from ... import name` copy inside bitnet_cli."""
    orig = getattr(owner, name)
    monkeypatch.setattr(owner, name, new)
    for mod_name, mod in list(sys.modules.items()):
        if mod_name.startswith(("bitnet_cli", "bitnet_kernels")) and getattr(mod, name, None) is orig:
            monkeypatch.setattr(mod, name, new)


def _reverse_fields(b: np.ndarray) -> np.ndarray:
    """Swap the order of the four 2-bit fields in each byte (LSB-first instead of MSB-first)."""
    return ((b & 3) << 6) | (((b >> 2) & 3) << 4) | (((b >> 4) & 3) << 2) | ((b >> 6) & 3)


def break_i2s_field_order(monkeypatch) -> dict:
    calls = {"n": 0}
    orig = bitnet_kernels.prepare_i2s_stacked  # the loader prepares every I2_S linear with it

    def broken(raws, Ms, K, **kw):
        calls["n"] += 1
        bad = []
        for raw, M in zip(raws, Ms):
            raw = np.array(raw, dtype=np.uint8).reshape(-1)
            raw[: M * K // 4] = _reverse_fields(raw[: M * K // 4])  # the scale tail stays intact
            bad.append(raw)
        return orig(bad, Ms, K, **kw)

    _patch_everywhere(monkeypatch, bitnet_kernels, "prepare_i2s_stacked", broken)
    return calls


class _FloatActs(np.ndarray):
    """Activations that skipped int8 quantization (float32 values travelling as `q`)."""


def break_activation_quantization(monkeypatch) -> dict:
    """Feed float activations straight into the dequantized ternary weights (W = t · scale)."""
    calls = {"n": 0}
    dense: dict[int, np.ndarray] = {}
    orig_linear = bitnet_kernels.ternary_linear

    def dequantized(w) -> np.ndarray:
        # The engine's own kernel on unit activations (q = I, s = 1) reads out t · scale: [K, M]
        if id(w) not in dense:
            eye = np.eye(w.K, dtype=np.int8)
            dense[id(w)] = np.asarray(orig_linear(w, eye, np.ones(w.K, np.float32)), np.float32)
        return dense[id(w)]

    def quantize(x):
        calls["n"] += 1
        x = np.ascontiguousarray(x, dtype=np.float32)
        return x.view(_FloatActs), np.ones(x.shape[0], np.float32)

    def rms_norm_quantize(x, w, eps):
        return quantize(bitnet_kernels.rms_norm(x, w, eps))

    def linear(w, q, s, out=None):
        if not isinstance(q, _FloatActs):
            return orig_linear(w, q, s, out)
        y = np.asarray(q) @ dequantized(w)  # [n, M]
        if out is None:
            return y
        out[...] = y
        return out

    _patch_everywhere(monkeypatch, bitnet_kernels, "quantize_activations", quantize)
    _patch_everywhere(monkeypatch, bitnet_kernels, "rms_norm_quantize", rms_norm_quantize)
    _patch_everywhere(monkeypatch, bitnet_kernels, "ternary_linear", linear)
    return calls


def break_bos(monkeypatch) -> dict:
    from bitnet_cli.tokenizer import Tokenizer

    calls = {"n": 0}
    orig = Tokenizer.encode

    def encode(self, text, add_bos=None):
        calls["n"] += 1
        return orig(self, text, add_bos=False)

    monkeypatch.setattr(Tokenizer, "encode", encode)
    return calls


BREAKAGES = {
    "no_activation_quantization": break_activation_quantization,
    "reversed_i2s_fields": break_i2s_field_order,
    "dropped_bos": break_bos,
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_broken_engine_fails_the_checks(monkeypatch, golden: Golden, breakage: str) -> None:
    calls = BREAKAGES[breakage](monkeypatch)
    broken = bitnet_cli.load(gguf_path("i2_s"))
    failures = engine_failures(broken, golden)
    assert calls["n"] > 0, f"the {breakage} patch never reached the engine: the harness is stale"
    assert failures, f"an engine with {breakage} passed every lossless check"
    if breakage != "dropped_bos":  # explicit ids carry their BOS; only text prompts lose it
        ours = broken.logits(golden.meta["prompt_ids"])
        assert logit_failures(ours, golden.logits, golden.floor_max, golden.floor_mean)
