"""Tiny random Hugging Face checkpoints of every BitNet family, in the exact on-hub layout.

Only numpy, safetensors' file format (written here byte by byte, so bf16 needs no torch) and
`tokenizers` are used, and everything is a pure function of the family name: the same bytes on
every machine. `scripts/make_goldens.py` loads these with transformers to make the goldens in
tests/goldens/; the tests rebuild them in a temp dir, convert them and compare.

Families (see docs/losslessness.md and bitnet-cpp.md §4.6, §6.3–6.4):
  bitnet-bf16      BitNetForCausalLM, bf16 master weights, online absmean (2B-4T-bf16 style)
  bitnet-packed    BitNetForCausalLM, uint8 packed + weight_scale, autobitlinear (multiply)
  llama-bitlinear  LlamaForCausalLM, packed + weight_scale, bitlinear (divide), untied head
  1bitllm          BitnetForCausalLM (model_type llama), fp16 float weights, SiLU,
                   sub-norms named inner_attn_ln / ffn_layernorm
  falcon-e         LlamaForCausalLM, packed + weight_scale, bitlinear (divide), tied head
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FAMILIES = ("bitnet-bf16", "bitnet-packed", "llama-bitlinear", "1bitllm", "falcon-e")

BOS, EOS, EOT = "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"
N_BASE_TOKENS = 381  # 256 bytes + 125 merges; the three specials follow
VOCAB = N_BASE_TOKENS + 3
# LLaMA-3's pre-tokenizer split, as in the 2B-4T and Llama3-8B-1.58 tokenizer.json files.
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
CORPUS = (
    "The quick brown fox jumps over the lazy dog. A ternary network stores every weight as "
    "minus one, zero or plus one, and the activations as eight bit integers. The capital of "
    "France is Paris; the capital of Italy is Rome. Once upon a time there was a little model "
    "that ran on a plain CPU, one token after another, and it never made a mistake. "
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000 2024. Hello, world! How are you today?\n"
)
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ 'System: ' + message['content'] + '<|eot_id|>' }}"
    "{% elif message['role'] == 'user' %}{{ 'User: ' + message['content'] + '<|eot_id|>' }}"
    "{% else %}{{ 'Assistant: ' + message['content'] + '<|eot_id|>' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}"
)


@dataclass(frozen=True)
class Family:
    """What distinguishes one family's checkpoint."""

    name: str
    seed: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    layers: int = 2
    rope_theta: float = 500000.0
    act: str = "relu2"
    tied: bool = True
    storage: str = "bf16"  # float dtype of the checkpoint: bf16 or f16
    packed: str | None = None  # None (float master weights), "autobitlinear" or "bitlinear"


SPECS = {
    # hidden 128: its GGUF fixtures are committed, so it stays small
    "bitnet-bf16": Family("bitnet-bf16", 101, 128, 256, 4, 2),
    # hidden/intermediate multiples of 256: usable with TQ2_0 too
    "bitnet-packed": Family("bitnet-packed", 102, 256, 512, 4, 2, packed="autobitlinear"),
    "llama-bitlinear": Family(
        "llama-bitlinear", 103, 256, 512, 4, 2, act="silu", tied=False, packed="bitlinear"
    ),
    "1bitllm": Family("1bitllm", 104, 128, 384, 4, 4, rope_theta=10000.0, act="silu", storage="f16"),
    "falcon-e": Family(
        "falcon-e", 105, 128, 384, 4, 2, rope_theta=100000.0, act="silu", packed="bitlinear"
    ),
}

# Scales chosen so the random model is not degenerate: the residual branches outweigh the
# (small) embedding, so greedy decoding does not just repeat its input token, and a large
# final norm (or a wide untied head) spreads the logits over several units, so most rows
# have a clear top-1.
EMBED_STD, LINEAR_STD, HEAD_STD, OUTPUT_NORM_GAIN = 0.05, 0.1, 0.5, 8.0
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


# ---------------------------------------------------------------------------------------------
# numeric helpers
# ---------------------------------------------------------------------------------------------
def to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bit patterns (uint16), round to nearest even (torch's conversion)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = u + 0x7FFF + ((u >> 16) & 1)
    return (rounded >> 16).astype(np.uint16)


def from_bf16_bits(b: np.ndarray) -> np.ndarray:
    return (b.astype(np.uint32) << 16).view(np.float32)


def _representable(x: np.ndarray) -> np.ndarray:
    """Round to values exact in bf16 AND f16 (|x| >= 2^-14), so F16/F32 GGUF copies are exact."""
    x = np.where(np.abs(x) < 2.0**-13, np.copysign(2.0**-13, x), x).astype(np.float32)
    return from_bf16_bits(to_bf16_bits(x))


def absmean_ternary(w: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """bitnet-cpp.md §5.1: t = clamp(round(w / m), -1, 1), m = max(mean|w|, 1e-5)."""
    m = np.float32(max(np.float32(np.mean(np.abs(w), dtype=np.float64)), 1e-5))
    t = np.clip(np.rint(w / m), -1, 1).astype(np.int8)
    return t, m


def pack_hf_ternary(t: np.ndarray) -> np.ndarray:
    """HF packed layout (§4.6): uint8[M/4, K]; byte [r, c] holds rows r + i*M/4 at bits 2i."""
    M, K = t.shape
    codes = (t.astype(np.int16) + 1).astype(np.uint8).reshape(4, M // 4, K)  # [i, r, c]
    return codes[0] | (codes[1] << 2) | (codes[2] << 4) | (codes[3] << 6)


def unpack_hf_ternary(packed: np.ndarray) -> np.ndarray:
    """Inverse of pack_hf_ternary: int8[M, K]."""
    parts = [((packed >> (2 * i)) & 3).astype(np.int8) - 1 for i in range(4)]
    return np.concatenate(parts, axis=0)


# ---------------------------------------------------------------------------------------------
# safetensors writer (bf16 without torch)
# ---------------------------------------------------------------------------------------------
_ST_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.uint8): "U8"}


def write_safetensors(path: Path, tensors: dict[str, tuple[str, tuple[int, ...], bytes]]) -> None:
    """Write {name: (dtype tag, shape, raw bytes)} in safetensors format, names sorted."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name in sorted(tensors):
        tag, shape, raw = tensors[name]
        header[name] = {"dtype": tag, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the format pads the header to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name in sorted(tensors):
            f.write(tensors[name][2])


def _float_entry(x: np.ndarray, storage: str) -> tuple[str, tuple[int, ...], bytes]:
    if storage == "bf16":
        return "BF16", x.shape, to_bf16_bits(x).tobytes()
    return "F16", x.shape, x.astype(np.float16).tobytes()


# ---------------------------------------------------------------------------------------------
# weights
# ---------------------------------------------------------------------------------------------
def linear_shapes(f: Family) -> dict[str, tuple[int, int]]:
    hd = f.hidden // f.heads
    kv = f.kv_heads * hd
    return {
        "q_proj": (f.hidden, f.hidden), "k_proj": (kv, f.hidden), "v_proj": (kv, f.hidden),
        "o_proj": (f.hidden, f.hidden), "gate_proj": (f.intermediate, f.hidden),
        "up_proj": (f.intermediate, f.hidden), "down_proj": (f.hidden, f.intermediate),
    }


_linear_shapes = linear_shapes  # the name tests/test_convert.py uses


def _module(name: str) -> str:
    return "self_attn" if name in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"


def make_weights(f: Family) -> dict[str, tuple[str, tuple[int, ...], bytes]]:
    """All tensors of the checkpoint, as safetensors entries."""
    rng = np.random.default_rng(f.seed)
    out: dict[str, tuple[str, tuple[int, ...], bytes]] = {}
    emb = _representable(rng.standard_normal((VOCAB, f.hidden), dtype=np.float32) * EMBED_STD)
    out["model.embed_tokens.weight"] = _float_entry(emb, f.storage)
    if not f.tied:
        head = _representable(rng.standard_normal((VOCAB, f.hidden), dtype=np.float32) * HEAD_STD)
        out["lm_head.weight"] = _float_entry(head, f.storage)
    norm = lambda n: _representable(1.0 + 0.2 * rng.standard_normal(n, dtype=np.float32))  # noqa: E731
    gain = OUTPUT_NORM_GAIN if f.tied else 1.0
    out["model.norm.weight"] = _float_entry(_representable(gain * norm(f.hidden)), f.storage)
    sub_attn, sub_ffn = ("inner_attn_ln", "ffn_layernorm") if f.name == "1bitllm" else (
        "attn_sub_norm", "ffn_sub_norm")
    has_sub_norms = f.name in ("bitnet-bf16", "bitnet-packed", "1bitllm")
    for layer in range(f.layers):
        p = f"model.layers.{layer}."
        out[p + "input_layernorm.weight"] = _float_entry(norm(f.hidden), f.storage)
        out[p + "post_attention_layernorm.weight"] = _float_entry(norm(f.hidden), f.storage)
        if has_sub_norms:
            out[p + f"self_attn.{sub_attn}.weight"] = _float_entry(norm(f.hidden), f.storage)
            out[p + f"mlp.{sub_ffn}.weight"] = _float_entry(norm(f.intermediate), f.storage)
        for lin, shape in linear_shapes(f).items():
            key = p + f"{_module(lin)}.{lin}"
            w = _representable(rng.standard_normal(shape, dtype=np.float32) * LINEAR_STD)
            if f.packed is None:
                out[key + ".weight"] = _float_entry(w, f.storage)
                continue
            t, m = absmean_ternary(w)
            out[key + ".weight"] = ("U8", (shape[0] // 4, shape[1]), pack_hf_ternary(t).tobytes())
            # autobitlinear stores mean|W| (multiply); bitlinear stores its inverse (divide)
            scale = m if f.packed == "autobitlinear" else np.float32(1.0) / m
            if f.name == "llama-bitlinear":
                # a power of two: 1/scale is exact in f16 too, so TQ2_0's f16 block scale loses
                # nothing (falcon-e keeps an inexact 1/scale to test the divide in fp32)
                scale = np.float32(2.0 ** np.round(np.log2(scale)))
            out[key + ".weight_scale"] = _float_entry(np.array([scale], np.float32), f.storage)
    return out


# ---------------------------------------------------------------------------------------------
# config files
# ---------------------------------------------------------------------------------------------
def make_config(f: Family) -> dict:
    """config.json with the keys the real checkpoints of the family carry."""
    ids = {"bos_token_id": N_BASE_TOKENS, "eos_token_id": N_BASE_TOKENS + 1}
    common = {
        "attention_bias": False, "attention_dropout": 0.0, "hidden_act": f.act,
        "hidden_size": f.hidden, "initializer_range": 0.02, "intermediate_size": f.intermediate,
        "max_position_embeddings": 2048 if f.name == "1bitllm" else 4096,
        "num_attention_heads": f.heads, "num_hidden_layers": f.layers,
        "num_key_value_heads": f.kv_heads, "rms_norm_eps": 1e-05, "rope_theta": f.rope_theta,
        "tie_word_embeddings": f.tied, "torch_dtype": "bfloat16" if f.storage == "bf16" else "float16",
        "use_cache": True, "vocab_size": VOCAB, **ids,
    }
    if f.name in ("bitnet-bf16", "bitnet-packed"):
        mode = "online" if f.packed is None else "offline"
        return {"architectures": ["BitNetForCausalLM"], "model_type": "bitnet", **common,
                "quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear",
                                        "quantization_mode": mode}}
    if f.name == "1bitllm":
        return {"architectures": ["BitnetForCausalLM"], "model_type": "llama", **common,
                "input_bits": 8, "weight_bits": 1, "pad_token_id": VOCAB - 1, "pretraining_tp": 1,
                "rope_scaling": None}
    llama = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", **common,
             "head_dim": f.hidden // f.heads, "mlp_bias": False, "pretraining_tp": 1, "rope_scaling": None}
    if f.name == "llama-bitlinear":
        # HF1BitLLM's config predates linear_class: transformers' default (bitlinear) applies.
        llama["quantization_config"] = {"modules_to_not_convert": None, "quant_method": "bitnet"}
    else:
        llama["quantization_config"] = {"quant_method": "bitnet", "linear_class": "bitlinear",
                                        "quantization_mode": "offline"}
    return llama


def make_tokenizer_json() -> str:
    """A tiny LLaMA-3-style byte-level BPE (tokenizer.json text), trained on CORPUS."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=N_BASE_TOKENS, show_progress=False, special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([CORPUS] * 4, trainer=trainer)
    tok.add_special_tokens([BOS, EOS, EOT])
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(
            single=f"{BOS}:0 $A:0", pair=f"{BOS}:0 $A:0 {BOS}:1 $B:1",
            special_tokens=[(BOS, N_BASE_TOKENS)],
        ),
    ])
    assert tok.get_vocab_size() == VOCAB, tok.get_vocab_size()
    return tok.to_str(pretty=True)


def make_tokenizer_config() -> dict:
    added = {str(N_BASE_TOKENS + i): {"content": s, "lstrip": False, "normalized": False,
                                      "rstrip": False, "single_word": False, "special": True}
             for i, s in enumerate((BOS, EOS, EOT))}
    return {"added_tokens_decoder": added, "bos_token": BOS, "eos_token": EOS,
            "chat_template": CHAT_TEMPLATE, "clean_up_tokenization_spaces": True,
            "model_input_names": ["input_ids", "attention_mask"], "model_max_length": 4096,
            "tokenizer_class": "PreTrainedTokenizerFast"}


def write_checkpoint(family: str, out_dir: str | Path) -> Path:
    """Write the family's tiny checkpoint into out_dir (created); return the directory."""
    f = SPECS[family]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_safetensors(out / "model.safetensors", make_weights(f))
    config = make_config(f)
    dump = lambda name, obj: (out / name).write_text(json.dumps(obj, indent=2) + "\n")  # noqa: E731
    dump("config.json", config)
    dump("generation_config.json", {"bos_token_id": config["bos_token_id"],
                                    "eos_token_id": config["eos_token_id"], "do_sample": False})
    (out / "tokenizer.json").write_text(make_tokenizer_json())
    dump("tokenizer_config.json", make_tokenizer_config())
    dump("special_tokens_map.json", {"bos_token": BOS, "eos_token": EOS})
    return out
