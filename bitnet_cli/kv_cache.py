"""Preallocated fp32 KV cache, written at an explicit position."""
from __future__ import annotations

import mmap

import numpy as np

from bitnet_cli.config import ModelConfig


def _lazy_zeros(shape: tuple[int, ...]) -> np.ndarray:
    """float32 zeros in anonymous memory that is only made resident where it is written.

    numpy asks for transparent huge pages on large arrays, so the first write to each head's
    slice would zero a whole 2 MB page: a 2B-4T model's first token then touched all 630 MB of
    a 4096-position cache (0.4 s, and as much RSS). With small pages a position costs its bytes.
    """
    nbytes = int(np.prod(shape)) * 4
    mm = mmap.mmap(-1, max(nbytes, 1))
    if hasattr(mm, "madvise") and hasattr(mmap, "MADV_NOHUGEPAGE"):
        mm.madvise(mmap.MADV_NOHUGEPAGE)
    return np.ndarray(shape, np.float32, buffer=mm)


class KVCache:
    """Keys and values of every layer for up to `n_ctx` positions, plus the token ids they hold.

    Layout per layer: [n_head_kv, n_ctx, head_dim], so one head's keys are contiguous over time.
    """

    def __init__(self, config: ModelConfig, n_ctx: int) -> None:
        shape = (config.n_layer, config.n_head_kv, n_ctx, config.head_dim)
        self.k = _lazy_zeros(shape)
        self.v = _lazy_zeros(shape)
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
