"""The BitNet b1.58 transformer: RMSNorm, ternary BitLinear projections, RoPE, GQA attention.

Each BitLinear quantizes its input per token to int8 (absmax), multiplies with ternary weights in
exact integer arithmetic, and rescales in fp32. Activations, scales and the KV cache stay fp32.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import bitnet_kernels as K
from bitnet_cli.config import ModelConfig
from bitnet_cli.kv_cache import KVCache


@dataclass
class Layer:
    """One block's weights. Q, K, V share one input and run as one stacked matrix; so do gate, up."""

    attn_norm: np.ndarray
    wqkv: object  # bitnet_kernels.TernaryWeight: rows of Wq, Wk, Wv
    wo: object
    attn_sub_norm: np.ndarray | None
    ffn_norm: np.ndarray
    w_gate_up: object  # rows of Wgate, Wup
    w_down: object
    ffn_sub_norm: np.ndarray | None


@dataclass
class Weights:
    token_embd: object  # bitnet_kernels.DenseWeight
    layers: list[Layer]
    output_norm: np.ndarray
    output: object  # DenseWeight; the embedding itself when the head is tied


def rope_frequencies(config: ModelConfig) -> np.ndarray:
    """The rotary inverse frequencies theta^(-2i/d), f32[rope_dim/2]."""
    d = config.rope_dim
    return (1.0 / (config.rope_theta ** (np.arange(0, d, 2, dtype=np.float32) / np.float32(d)))).astype(np.float32)


def rope_tables(inv_freq: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin [n, rope_dim/2] for the given absolute positions."""
    angles = positions.astype(np.float32)[:, None] * inv_freq[None, :]
    return np.cos(angles), np.sin(angles)


class Transformer:
    """Forward pass over preloaded weights; no file, tokenizer or CLI knowledge."""

    def __init__(self, config: ModelConfig, weights: Weights) -> None:
        self.config = config
        self.weights = weights
        self.inv_freq = rope_frequencies(config)

    def __call__(self, tokens: list[int], cache: KVCache, last_only: bool = True) -> np.ndarray:
        """Run `tokens` at `cache.offset`, appending their keys/values; returns logits [n or 1, vocab]."""
        cfg, w = self.config, self.weights
        start = cache.offset
        positions = np.arange(start, start + len(tokens))
        cos, sin = rope_tables(self.inv_freq, positions)
        x = K.embed_rows(w.token_embd, np.asarray(tokens, dtype=np.int64))  # x: [n, n_embd]
        for i, layer in enumerate(w.layers):
            x = x + self._attention_block(i, layer, x, cache, start, cos, sin)
            x = x + self._ffn_block(layer, x)
        cache.advance(tokens)
        if last_only:
            x = x[-1:]
        x = K.rms_norm(x, w.output_norm, cfg.norm_eps)
        return K.dense_linear(w.output, x)  # [n, vocab]

    def _attention_block(self, i: int, layer: Layer, x: np.ndarray, cache: KVCache, start: int,
                         cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
        cfg = self.config
        qkv = K.ternary_linear(layer.wqkv, *K.rms_norm_quantize(x, layer.attn_norm, cfg.norm_eps))
        a = K.rope_attend(qkv, cos, sin, cfg.rope_style == "neox", cfg.rope_dim, cache.k[i], cache.v[i],
                          start, cfg.n_head, cfg.n_head_kv)  # a: [n, n_head*head_dim]
        return K.ternary_linear(layer.wo, *self._quantize(a, layer.attn_sub_norm))

    def _ffn_block(self, layer: Layer, x: np.ndarray) -> np.ndarray:
        cfg = self.config
        gate_up = K.ternary_linear(layer.w_gate_up, *K.rms_norm_quantize(x, layer.ffn_norm, cfg.norm_eps))
        if cfg.ffn_act == "relu2":  # relu(gate)² · up, sub-normed and quantized in one pass
            h = K.relu2_glu_quantize(gate_up, cfg.n_ff, layer.ffn_sub_norm, cfg.norm_eps)
        else:
            gate, up = gate_up[:, : cfg.n_ff], gate_up[:, cfg.n_ff :]  # [n, n_ff] each
            h = self._quantize(gate / (np.float32(1) + np.exp(-gate)) * up, layer.ffn_sub_norm)
        return K.ternary_linear(layer.w_down, *h)

    def _quantize(self, x: np.ndarray, sub_norm: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """int8 activations for a projection, through the block's sub-norm when it has one."""
        if sub_norm is None:
            return K.quantize_activations(x)
        return K.rms_norm_quantize(x, sub_norm, self.config.norm_eps)
