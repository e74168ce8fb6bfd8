"""Model hyper-parameters, read once from GGUF metadata. Nothing downstream reads raw keys."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bitnet_cli.errors import ModelFormatError, UnsupportedModelError

# No GGUF key says SiLU vs ReLU²: the architecture string decides (spec §6.1).
ARCHS = {
    # arch: (ffn activation, rope style, sub-norms)
    "bitnet-b1.58": ("relu2", "neox", True),
    "bitnet-25": ("relu2", "neox", True),
    "bitnet": ("silu", "neox", True),
    "llama": ("silu", "normal", False),
}


@dataclass(frozen=True)
class ModelConfig:
    """Shape and numerics of a BitNet b1.58 model (one architecture family)."""

    arch: str
    n_vocab: int
    n_ctx_train: int
    n_embd: int
    n_layer: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    rope_dim: int
    rope_theta: float
    norm_eps: float
    ffn_act: str  # "relu2" | "silu"
    rope_style: str  # "neox" (rotate-half) | "normal" (interleaved pairs)
    sub_norms: bool

    def __post_init__(self) -> None:
        if self.n_head % self.n_head_kv:
            raise ModelFormatError(
                f"head_count {self.n_head} is not a multiple of head_count_kv {self.n_head_kv}",
                "the model file's metadata is inconsistent",
            )
        if self.rope_dim > self.head_dim or self.rope_dim % 2:
            raise ModelFormatError(f"rope.dimension_count {self.rope_dim} does not fit head size {self.head_dim}")

    @property
    def n_gqa(self) -> int:
        return self.n_head // self.n_head_kv

    @classmethod
    def from_metadata(cls, md: Mapping[str, Any], n_vocab: int | None = None) -> "ModelConfig":
        """Build the config from GGUF metadata; `n_vocab` falls back to the embedding rows."""
        arch = str(md.get("general.architecture", ""))
        if arch not in ARCHS:
            raise UnsupportedModelError(
                f"architecture '{arch or '?'}' is not supported",
                f"supported: {', '.join(ARCHS)}",
            )
        ffn_act, rope_style, sub_norms = ARCHS[arch]

        def get(key: str, default: Any = None) -> Any:
            value = md.get(f"{arch}.{key}", default)
            if value is None:
                raise ModelFormatError(f"metadata key '{arch}.{key}' is missing", "the file is not a complete model")
            return value

        n_embd = int(get("embedding_length"))
        n_head = int(get("attention.head_count"))
        head_dim = n_embd // n_head
        vocab = md.get(f"{arch}.vocab_size") or n_vocab
        if vocab is None:
            tokens = md.get("tokenizer.ggml.tokens")
            vocab = len(tokens) if tokens is not None else None
        return cls(
            arch=arch,
            n_vocab=int(get("vocab_size", vocab)),
            n_ctx_train=int(get("context_length", 2048)),
            n_embd=n_embd,
            n_layer=int(get("block_count")),
            n_ff=int(get("feed_forward_length")),
            n_head=n_head,
            n_head_kv=int(get("attention.head_count_kv", n_head)),
            head_dim=head_dim,
            rope_dim=int(get("rope.dimension_count", head_dim)),
            rope_theta=float(get("rope.freq_base", 10000.0)),
            norm_eps=float(get("attention.layer_norm_rms_epsilon")),
            ffn_act=ffn_act,
            rope_style=rope_style,
            sub_norms=sub_norms,
        )
