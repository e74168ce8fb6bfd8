"""One streaming generator feeds run, chat, serve and bench."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from bitnet_cli.engine import Model
from bitnet_cli.errors import UserError
from bitnet_cli.kv_cache import KVCache
from bitnet_cli.sampling import SamplingParams, make_sampler


@dataclass
class GenerationResponse:
    """One step of generation: the new text, the token, and running statistics."""

    text: str
    token: int
    prompt_tokens: int
    prompt_tps: float
    generation_tokens: int
    generation_tps: float
    finish_reason: str | None = None  # None until the last response: "stop" | "length"
    cached_tokens: int = 0  # prompt tokens reused from the cache


def _prefill(model: Model, ids: list[int], cache: KVCache) -> tuple[object, int]:
    """Reuse the cached common prefix, then run the rest; returns (last logits, reused count)."""
    reused = cache.common_prefix(ids)
    if reused == len(ids):  # everything cached: recompute the last token to get its logits
        reused -= 1
    cache.trim(reused)
    return model.forward(ids[reused:], cache)[-1], reused


def _stop_at(text: str, stop: Sequence[str]) -> int:
    """Index of the first stop string in `text`, or -1."""
    hits = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return min(hits) if hits else -1


def _held_back(text: str, stop: Sequence[str]) -> int:
    """How many trailing characters could still become a stop string."""
    keep = 0
    for s in stop:
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                keep = max(keep, k)
                break
    return keep


def stream_generate(
    model: Model,
    prompt: str | Sequence[int],
    *,
    max_tokens: int = 128,
    sampling: SamplingParams | None = None,
    stop: Sequence[str] | None = None,
    cache: KVCache | None = None,
    ignore_eos: bool = False,
    sampler: Callable | None = None,
) -> Iterator[GenerationResponse]:
    """Generate from `prompt` (text, tokenized with the model's BOS rule, or token ids).

    Args:
        max_tokens: tokens to generate; -1 = until EOS or the context is full.
        sampling: sampling parameters (default: llama.cpp's defaults).
        stop: strings that end generation (not included in the output).
        cache: a KV cache to continue from; its common prefix with the prompt is reused.
    Yields:
        GenerationResponse per token; the last one has `finish_reason` set.
    """
    tok = model.tokenizer
    ids = tok.encode(prompt) if isinstance(prompt, str) else [int(t) for t in prompt]
    if not ids:
        raise UserError("the prompt is empty", "pass some text with -p")
    cache = cache if cache is not None else model.new_cache()
    if len(ids) >= cache.n_ctx:
        raise UserError(
            f"the prompt has {len(ids)} tokens; the context holds {cache.n_ctx}",
            "raise -c/--ctx-size or shorten the prompt",
        )
    sample = sampler or make_sampler(sampling or SamplingParams())
    stop = list(stop or [])
    limit = cache.n_ctx - len(ids) if max_tokens < 0 else min(max_tokens, cache.n_ctx - len(ids))

    t0 = time.perf_counter()
    logits, reused = _prefill(model, ids, cache)
    prompt_time = time.perf_counter() - t0
    n_prompt = len(ids) - reused
    prompt_tps = n_prompt / prompt_time if prompt_time > 0 else 0.0

    detok = tok.detokenizer(skip_special=True)
    history = list(ids)
    pending = ""  # text not yet emitted (may be the start of a stop string)
    t_gen = time.perf_counter()
    n = 0
    while True:
        token = int(sample(logits, history))
        n += 1
        history.append(token)
        finish = None
        is_eos = token in tok.eos_ids and not ignore_eos
        if not is_eos:
            pending += detok.add(token)
        if is_eos:
            finish = "stop"
        elif n >= limit:
            finish = "length"
        cut = _stop_at(pending, stop)
        if cut >= 0:
            pending, finish = pending[:cut], "stop"
        if finish is not None:
            if cut < 0 and not is_eos:
                pending += detok.flush()
            out, pending = pending, ""
        else:
            keep = _held_back(pending, stop)
            out, pending = pending[: len(pending) - keep], pending[len(pending) - keep :]
        elapsed = time.perf_counter() - t_gen
        # Generation speed counts tokens after the first (the first comes from the prompt pass).
        gen_tps = (n - 1) / elapsed if n > 1 and elapsed > 0 else 0.0
        yield GenerationResponse(out, token, len(ids), prompt_tps, n, gen_tps, finish, reused)
        if finish is not None:
            return
        t_step = time.perf_counter()
        logits = model.forward([token], cache)[-1]
        if n == 1:
            t_gen = t_step


def generate(model: Model, prompt: str | Sequence[int], **kwargs) -> str:
    """Generate and return the whole text (see `stream_generate` for the arguments)."""
    return "".join(r.text for r in stream_generate(model, prompt, **kwargs))
