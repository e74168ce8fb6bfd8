"""The one model behind `bitnet serve`: loaded in the background, one generation at a time.

Numba kernels already use every core, so requests queue on a lock instead of batching; the
session's single KV cache then lets a follow-up chat request reuse its whole shared prefix.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from bitnet_cli.errors import BitnetError
from bitnet_cli.sampling import make_sampler
from bitnet_cli.server_api import ApiError, GenRequest


class Engine:
    """Holds the model, its chat format and KV cache, and the lock requests queue on.

    Args:
        loader: returns a loaded model (called once, on the loading thread).
        template: a chat template override (built-in name or Jinja source).
        system_prompt: added to chat requests that carry no system message.
        max_queue: requests allowed to wait for the engine; more get a 503.
        warmup: run one token through the model before reporting ready (compiles kernels).
    """

    def __init__(self, loader: Callable[[], Any], *, template: str | None = None, system_prompt: str | None = None,
                 max_queue: int = 32, warmup: bool = True,
                 generate_fn: Callable[..., Iterator[Any]] | None = None) -> None:
        self.loader, self.template, self.system_prompt = loader, template, system_prompt
        self.max_queue, self.warmup = max_queue, warmup
        self.generate_fn = generate_fn
        self.state = "loading"  # "loading" | "ready" | "error"
        self.error: BitnetError | None = None
        self.model: Any = None
        self.format: Any = None
        self.cache: Any = None
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._queued = 0

    # -- loading ---------------------------------------------------------------------------------
    def load(self) -> None:
        """Load (and warm up) the model; errors are kept in ``self.error`` for the server."""
        from bitnet_cli.chat import ChatFormat, warm_up

        try:
            model = self.loader()
            fmt = ChatFormat(model, self.template)
            cache = model.new_cache()
            if self.warmup:
                warm_up(model)
            self.model, self.format, self.cache = model, fmt, cache
            if self.generate_fn is None:
                from bitnet_cli.generation import stream_generate

                self.generate_fn = stream_generate
            self.state = "ready"
        except BitnetError as e:
            self.error, self.state = e, "error"
        except Exception as e:  # noqa: BLE001 - reported to the user by the server thread
            self.error = BitnetError(f"{type(e).__name__}: {e}", "rerun with BITNET_DEBUG=1 for the traceback")
            self.state = "error"

    def require_ready(self) -> None:
        if self.state == "loading":
            raise ApiError(503, "Loading model")
        if self.state == "error":
            raise ApiError(500, f"the model failed to load: {self.error}")

    @property
    def n_ctx(self) -> int:
        return int(self.cache.n_ctx)

    @property
    def vocab_size(self) -> int:
        tok = self.model.tokenizer
        return int(getattr(tok, "vocab_size", 0) or getattr(self.model.config, "n_vocab", 0) or 1 << 31)

    # -- requests --------------------------------------------------------------------------------
    def encode(self, req: GenRequest) -> list[int]:
        """Prompt token ids for a request; 400 when they leave no room in the context."""
        try:
            if req.kind == "chat":
                msgs = req.messages
                if self.system_prompt and not any(m["role"] == "system" for m in msgs):
                    msgs = [{"role": "system", "content": self.system_prompt}] + msgs
                ids = self.format.encode(msgs)
            elif isinstance(req.prompt, str):
                ids = list(self.model.tokenizer.encode(req.prompt))
            else:
                if any(not 0 <= t < self.vocab_size for t in req.prompt):
                    raise ApiError(400, "'prompt' holds a token id outside the vocabulary", "prompt")
                ids = list(req.prompt)
        except BitnetError as e:  # a template that rejects the messages
            raise ApiError(400, str(e), "messages") from None
        if len(ids) >= self.n_ctx:
            raise ApiError(400, f"the prompt has {len(ids)} tokens; the context holds {self.n_ctx}",
                           "messages" if req.kind == "chat" else "prompt")
        return ids

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Wait for the engine (503 when too many are already waiting)."""
        with self._count_lock:
            if self._queued >= self.max_queue:
                raise ApiError(503, f"the server is busy ({self._queued} requests waiting); retry later")
            self._queued += 1
        self._lock.acquire()
        with self._count_lock:
            self._queued -= 1
        try:
            yield
        finally:
            self._lock.release()

    def busy(self) -> bool:
        return self._lock.locked()

    def generate(self, req: GenRequest, ids: list[int]) -> Iterator[Any]:
        """Stream GenerationResponses for a request; hold ``slot()`` while iterating."""
        sampler = make_sampler(req.sampling)
        if req.logit_bias:
            bias_ids = np.fromiter(req.logit_bias.keys(), dtype=np.int64)  # [k]
            bias = np.fromiter(req.logit_bias.values(), dtype=np.float32)  # [k]
            base = sampler

            def sampler(logits: np.ndarray, history: Any) -> int:
                logits = np.array(logits, dtype=np.float32)
                logits[bias_ids] += bias
                return base(logits, history)

        return self.generate_fn(self.model, ids, max_tokens=req.max_tokens, sampling=req.sampling,
                                stop=req.stop, cache=self.cache, sampler=sampler, ignore_eos=req.ignore_eos)
