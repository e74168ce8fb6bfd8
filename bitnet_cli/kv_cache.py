"""Preallocated fp32 KV cache, written at an explicit position."""
from __future__ import annotations

import numpy as np

from bitnet_cli.config import ModelConfig


class KVCache:
    """Keys and values of every layer for up to `n_ctx` positions, plus the token ids they hold.

    Layout per layer: [n_head_kv, n_ctx, head_dim], so one head's keys are contiguous over time.
    """

    def __init__(self, config: ModelConfig, n_ctx: int) -> None:
        shape = (config.n_layer, config.n_head_kv, n_ctx, config.head_dim)
        self.k = np.zeros(shape, dtype=np.float32)
        self.v = np.zeros(shape, dtype=np.float32)
        self.n_ctx = n_ctx
        self.offset = 0
        self.tokens: list[int] = []

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes

    def advance(self, tokens: list[int]) -> None:
        """Mark `tokens` as stored (called once per forward pass, after every layer)."""
        self.offset += len(tokens)
        self.tokens.extend(int(t) for t in tokens)

    def trim(self, n: int) -> None:
        """Keep only the first `n` positions."""
        n = max(0, min(n, self.offset))
        self.offset = n
        del self.tokens[n:]

    def reset(self) -> None:
        self.trim(0)

    def common_prefix(self, tokens: list[int]) -> int:
        """Length of the longest common prefix of the cached tokens and `tokens`."""
        n = 0
        for a, b in zip(self.tokens, tokens):
            if a != b:
                break
            n += 1
        return n
