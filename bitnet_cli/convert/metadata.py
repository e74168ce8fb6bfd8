"""GGUF metadata for a converted checkpoint, in the official 2B-4T file's key order (§6.5)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bitnet_cli.convert.families import Family
from bitnet_cli.errors import UnsupportedModelError
from bitnet_cli.modelfile import FILE_TYPE_OF, GGMLType

# Keys of `microsoft/bitnet-b1.58-2B-4T-gguf` in file order; `{a}` is the architecture.
OFFICIAL_ORDER = (
    "general.architecture", "general.name", "{a}.vocab_size", "{a}.context_length",
    "{a}.embedding_length", "{a}.block_count", "{a}.feed_forward_length", "{a}.rope.dimension_count",
    "{a}.attention.head_count", "{a}.attention.head_count_kv", "tokenizer.ggml.add_bos_token",
    "{a}.attention.layer_norm_rms_epsilon", "{a}.rope.freq_base", "general.file_type",
    "tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.padding_token_id", "tokenizer.chat_template", "general.quantization_version",
)


def hparams(config: dict[str, Any]) -> dict[str, Any]:
    """Shape hyper-parameters from a HF config.json, checked against what the engine runs."""
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    head_dim = int(config.get("head_dim") or hidden // heads)
    if head_dim * heads != hidden:
        raise UnsupportedModelError(f"head_dim {head_dim} x {heads} heads != hidden size {hidden}",
                                    "models whose attention width differs from the hidden size are not supported")
    scaling = config.get("rope_scaling")
    if scaling and str(scaling.get("rope_type", scaling.get("type", "default"))) != "default":
        raise UnsupportedModelError(f"RoPE scaling '{scaling.get('rope_type', scaling.get('type'))}' is not supported")
    return {
        "vocab_size": int(config["vocab_size"]),
        "context_length": int(config.get("max_position_embeddings", 2048)),
        "embedding_length": hidden,
        "block_count": int(config["num_hidden_layers"]),
        "feed_forward_length": int(config["intermediate_size"]),
        "rope.dimension_count": head_dim,
        "attention.head_count": heads,
        "attention.head_count_kv": int(config.get("num_key_value_heads") or heads),
        "attention.layer_norm_rms_epsilon": float(config.get("rms_norm_eps", 1e-6)),
        "rope.freq_base": float(config.get("rope_theta", 10000.0)),
    }


def model_name(src: Path, config: dict[str, Any]) -> str:
    """A readable `general.name`: the repo name for HF-cache snapshots, else the folder name."""
    parts = src.resolve().parts
    for i, p in enumerate(parts):
        if p.startswith("models--") and i + 2 < len(parts) and parts[i + 1] == "snapshots":
            return p.split("--")[-1]
    fallback = str(config.get("_name_or_path") or "").rstrip("/").split("/")[-1]
    return src.resolve().name or fallback or "model"


def build_metadata(fam: Family, config: dict[str, Any], name: str, main_type: GGMLType,
                   tokenizer: dict[str, Any]) -> dict[str, Any]:
    """All key/values, official keys first in the official order, then any others."""
    a = fam.arch
    values: dict[str, Any] = {"general.architecture": a, "general.name": name}
    values.update({f"{a}.{k}": v for k, v in hparams(config).items()})
    values["general.file_type"] = int(FILE_TYPE_OF[main_type])
    values["general.quantization_version"] = 2
    values.update(tokenizer)
    tokens = values.get("tokenizer.ggml.tokens")
    if tokens is not None and "tokenizer.ggml.scores" not in values:
        # BPE vocabularies carry all-zero scores in the official file; readers expect the key.
        values["tokenizer.ggml.scores"] = np.zeros(len(tokens), dtype=np.float32)
    if "tokenizer.ggml.padding_token_id" not in values and "tokenizer.ggml.eos_token_id" in values:
        # The official file pads with EOS; llama.cpp needs a valid id there.
        values["tokenizer.ggml.padding_token_id"] = values["tokenizer.ggml.eos_token_id"]
    ordered = {}
    for key in OFFICIAL_ORDER:
        key = key.format(a=a)
        if key in values:
            ordered[key] = values.pop(key)
    ordered.update(values)
    return ordered


def official_keys(arch: str) -> list[str]:
    """The 24 keys of the official 2B-4T file, for `arch`."""
    return [k.format(a=arch) for k in OFFICIAL_ORDER]

