"""`load()`: a model file becomes a `Model` (config, tokenizer, weights, forward pass)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from bitnet_cli.config import ModelConfig
from bitnet_cli.errors import UserError
from bitnet_cli.kv_cache import KVCache

DEFAULT_CTX = 2048
PREFILL_CHUNK = 512


def check_model_path(path: str | Path) -> Path:
    """The path, or a clear error when it is missing or not a file."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"no model file at {p}", "pass -m path/to/model.gguf (see `bitnet setup` or `bitnet dummy`)")
    if not p.is_file():
        raise UserError(f"{p} is not a file", "pass -m path/to/model.gguf")
    return p


class Model:
    """A loaded model: `.config`, `.tokenizer`, `.forward()` over a KV cache, `.logits()`."""

    def __init__(self, path: Path, config: ModelConfig, transformer, tokenizer, model_file, n_ctx: int) -> None:
        self.path = path
        self.config = config
        self.transformer = transformer
        self.tokenizer = tokenizer
        self.model_file = model_file  # keeps the memory map alive
        self.n_ctx = n_ctx

    @property
    def file_size(self) -> int:
        return self.path.stat().st_size

    @property
    def n_params(self) -> int:
        return sum(int(np.prod(t.shape)) for t in self.model_file.tensors.values())

    def new_cache(self, n_ctx: int | None = None) -> KVCache:
        return KVCache(self.config, n_ctx or self.n_ctx)

    def forward(self, tokens: list[int], cache: KVCache, *, last_only: bool = True) -> np.ndarray:
        """Append `tokens` to `cache` in chunks; return logits of the last token (or of all)."""
        if cache.offset + len(tokens) > cache.n_ctx:
            raise UserError(
                f"{cache.offset + len(tokens)} tokens do not fit the context of {cache.n_ctx}",
                "raise -c/--ctx-size or shorten the prompt",
            )
        outs = []
        for i in range(0, len(tokens), PREFILL_CHUNK):
            chunk = list(tokens[i : i + PREFILL_CHUNK])
            last = i + PREFILL_CHUNK >= len(tokens)
            logits = self.transformer(chunk, cache, last_only=last_only)
            if not last_only or last:
                outs.append(logits)
        return outs[0] if len(outs) == 1 else np.concatenate(outs)

    def logits(self, token_ids: list[int]) -> np.ndarray:
        """float32 logits [len(token_ids), vocab] from one causal pass over an empty cache."""
        ids = [int(t) for t in token_ids]
        return self.forward(ids, self.new_cache(max(1, len(ids))), last_only=False)


def load(path: str | Path, *, n_ctx: int = 0, threads: int | None = None) -> Model:
    """Load a GGUF model.

    Args:
        path: the .gguf file.
        n_ctx: context size for new caches (0 = the model's training context).
        threads: kernel threads (None = all cores).
    """
    if threads is not None and threads < 1:
        raise UserError(f"invalid thread count {threads}", "pass -t 1 or more")
    if n_ctx < 0:
        raise UserError(f"invalid context size {n_ctx}", "pass -c 0 (the model's) or a positive number")
    from bitnet_cli.modelfile import open_model_file

    path = Path(path)
    mf = open_model_file(check_model_path(path))
    # The weights get mapped in the background while the kernels import and the tokenizer
    # builds, so neither stacking them nor the first token pays page faults.
    populating = mf.populate(_populate_list(mf))

    import bitnet_kernels
    from bitnet_cli.loader import load_weights, read_config, weight_arena
    from bitnet_cli.model import Transformer
    from bitnet_cli.tokenizer import Tokenizer

    # A busy core is handled inside the kernels (bitnet_kernels.threads.Adaptive).
    bitnet_kernels.set_num_threads(min(threads or os.cpu_count() or 1, os.cpu_count() or 1))
    # The ternary weights get copied into the kernels' layout: the memory for them is made
    # resident while the tokenizer builds, so the copies do not fault page by page.
    arena = weight_arena(mf)
    prefaulting = arena.populate() if arena is not None else None
    config = read_config(mf)
    tokenizer = Tokenizer.from_metadata(mf.metadata)
    for thread in (populating, prefaulting):
        if thread is not None:  # loading releases what it copied: no page may come back after that
            thread.join()
    weights = load_weights(mf, config, arena)
    return Model(path, config, Transformer(config, weights), tokenizer, mf, n_ctx or config.n_ctx_train)


def _populate_list(mf) -> list[str]:  # noqa: ANN001
    """Tensors the kernels read straight from the map: dense and norm tensors. Ternary ones are
    copied into the kernels' layout and released one by one; mapping them all up front would
    hold the file's copy and the new one at once (peak RSS 1.87 GB instead of 1.39 for 2B-4T)."""
    from bitnet_cli.modelfile import DENSE_TYPES

    return [n for n, r in mf.tensors.items() if r.ggml_type in DENSE_TYPES]
