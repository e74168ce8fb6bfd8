"""Which BitNet b1.58 family a HF checkpoint is, read from config.json (and the weights' dtype).

Families (bitnet-cpp.md §2.9, §4.6, §6.4; losslessness.md):
  * BitNetForCausalLM with bf16 master weights (online) — absmean ternarization at conversion;
  * BitNetForCausalLM packed uint8 + weight_scale (offline, `autobitlinear`: scale multiplies);
  * LlamaForCausalLM packed uint8 + weight_scale (`bitlinear`: scale divides) — Llama3-8B-1.58,
    Falcon3-1.58bit, Falcon-E;
  * 1bitLLM BitnetForCausalLM: float weights, SiLU, sub-norms named inner_attn_ln/ffn_layernorm.
The GGUF architecture follows the FFN activation in the config, never the class name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bitnet_cli.errors import UnsupportedModelError

# hidden_act -> GGUF arch for models with attention/FFN sub-norms (bitnet-cpp.md §6.1)
SUBNORM_ARCH = {"relu2": "bitnet-b1.58", "silu": "bitnet"}
BITNET_CLASSES = ("BitNetForCausalLM", "BitnetForCausalLM")
LLAMA_CLASSES = ("LlamaForCausalLM", "LLaMAForCausalLM", "MistralForCausalLM")
EMBEDDING_TYPES = ("qwen3", "gemma3_text", "gemma3")


@dataclass(frozen=True)
class Family:
    """How to read one checkpoint: the GGUF arch, the weight layout and the scale's meaning.

    layout: "master" (float weights, absmean-ternarized here) or "packed" (uint8, 4 rows a byte).
    scale_mode: "absmean" (master), "multiply" (autobitlinear) or "divide" (bitlinear).
    """

    name: str
    arch: str
    layout: str
    scale_mode: str
    sub_norms: tuple[str, str] | None  # HF names of (attention, FFN) sub-norms, or None
    permute_qk: bool  # llama arch: rows of Q/K go to the interleaved-RoPE order


def _quant_config(config: dict[str, Any]) -> dict[str, Any]:
    qc = config.get("quantization_config") or {}
    return qc if isinstance(qc, dict) else {}


def _scale_mode(qc: dict[str, Any], packed: bool) -> str:
    if not packed:
        return "absmean"
    # transformers' BitNetQuantConfig defaults to the `bitlinear` class when unspecified.
    linear_class = str(qc.get("linear_class") or "bitlinear").lower()
    if linear_class not in ("bitlinear", "autobitlinear"):
        raise UnsupportedModelError(f"quantization_config.linear_class '{linear_class}' is not known",
                                    "expected bitlinear or autobitlinear")
    return "multiply" if linear_class == "autobitlinear" else "divide"


def detect_family(config: dict[str, Any], packed: bool) -> Family:
    """Pick the family for a checkpoint; `packed` says whether q_proj is stored as uint8."""
    archs = config.get("architectures") or []
    cls = archs[0] if archs else ""
    model_type = str(config.get("model_type", ""))
    act = str(config.get("hidden_act", "silu")).lower()
    qc = _quant_config(config)
    if model_type in EMBEDDING_TYPES or "embedding" in str(config.get("_name_or_path", "")).lower():
        raise UnsupportedModelError(f"'{cls or model_type}' is an embedding model, not a text generator",
                                    "bitnet runs BitNet b1.58 LLMs (BitNet, Llama-1.58, Falcon3/Falcon-E)")
    if qc.get("use_rms_norm"):
        raise UnsupportedModelError("checkpoints whose BitLinear layers carry their own RMSNorm are not supported",
                                    "convert a checkpoint without quantization_config.use_rms_norm")
    if cls in BITNET_CLASSES:
        if act not in SUBNORM_ARCH:
            raise UnsupportedModelError(f"FFN activation '{act}' is not supported", f"supported: {', '.join(SUBNORM_ARCH)}")
        # 1bitLLM's class is `BitnetForCausalLM` (model_type llama) with its own sub-norm names.
        one_bit = cls == "BitnetForCausalLM" and model_type != "bitnet"
        subs = ("inner_attn_ln", "ffn_layernorm") if one_bit else ("attn_sub_norm", "ffn_sub_norm")
        return Family(
            name="1bitllm" if one_bit else ("bitnet-packed" if packed else "bitnet-master"),
            arch=SUBNORM_ARCH[act], layout="packed" if packed else "master",
            scale_mode=_scale_mode(qc, packed), sub_norms=subs, permute_qk=False,
        )
    if cls in LLAMA_CLASSES:
        if str(qc.get("quant_method", "")).lower() != "bitnet" and not packed:
            raise UnsupportedModelError(f"'{cls}' checkpoint without BitNet quantization_config",
                                        "this is a full-precision model, not BitNet b1.58; pick a *-1.58bit repo")
        if act != "silu":
            raise UnsupportedModelError(f"llama-style model with activation '{act}' is not supported", "expected silu")
        return Family(
            name="llama-packed" if packed else "llama-master", arch="llama",
            layout="packed" if packed else "master", scale_mode=_scale_mode(qc, packed),
            sub_norms=None, permute_qk=True,
        )
    raise UnsupportedModelError(
        f"architecture '{cls or model_type or '?'}' is not supported",
        "supported: BitNetForCausalLM, BitnetForCausalLM (1bitLLM), LlamaForCausalLM with BitNet weights",
    )
