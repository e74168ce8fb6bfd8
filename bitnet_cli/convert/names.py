"""HF → GGUF tensor names (bitnet-cpp.md §6.3), one table."""
from __future__ import annotations

# GGUF name (per layer) -> HF name relative to `model.layers.{i}.`; sub-norm rows come from the family.
LAYER_LINEARS = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
TOKEN_EMBD = ("token_embd.weight", "model.embed_tokens.weight")
OUTPUT_NORM = ("output_norm.weight", "model.norm.weight")
OUTPUT = ("output.weight", "lm_head.weight")


def layer_tensors(i: int, sub_norms: tuple[str, str] | None) -> list[tuple[str, str, str]]:
    """(gguf name, hf name, kind) for layer i in the official file's order; kind: linear|norm."""
    hf = f"model.layers.{i}."
    g = f"blk.{i}."
    out = [(g + "attn_norm.weight", hf + "input_layernorm.weight", "norm")]
    for key in ("attn_q", "attn_k", "attn_v"):
        out.append((g + key + ".weight", hf + LAYER_LINEARS[key] + ".weight", "linear"))
    if sub_norms:
        out.append((g + "attn_sub_norm.weight", hf + f"self_attn.{sub_norms[0]}.weight", "norm"))
    out.append((g + "attn_output.weight", hf + LAYER_LINEARS["attn_output"] + ".weight", "linear"))
    out.append((g + "ffn_norm.weight", hf + "post_attention_layernorm.weight", "norm"))
    for key in ("ffn_gate", "ffn_up"):
        out.append((g + key + ".weight", hf + LAYER_LINEARS[key] + ".weight", "linear"))
    if sub_norms:
        out.append((g + "ffn_sub_norm.weight", hf + f"mlp.{sub_norms[1]}.weight", "norm"))
    out.append((g + "ffn_down.weight", hf + LAYER_LINEARS["ffn_down"] + ".weight", "linear"))
    return out


def weight_scale_name(hf_weight: str) -> str:
    """`...q_proj.weight` -> `...q_proj.weight_scale` (the packed checkpoints' per-matrix scale)."""
    return hf_weight[: -len("weight")] + "weight_scale"
