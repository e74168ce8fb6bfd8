"""Token sampling shared by run, chat and serve: penalties, top-k, top-p, min-p, temperature.

The order follows llama.cpp's default sampler chain: repetition/presence/frequency penalties
over the last ``repeat_last_n`` tokens, then top-k, top-p, min-p, temperature and a weighted
draw. A temperature of 0 means greedy: the argmax of the penalised logits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from bitnet_cli.errors import UserError

Sampler = Callable[[np.ndarray, Sequence[int]], int]


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings; defaults are llama.cpp's.

    ``top_k=0``, ``top_p=1``, ``min_p=0``, ``repeat_penalty=1`` and zero presence/frequency
    penalties each switch their step off. ``repeat_last_n=-1`` means the whole history,
    ``0`` no penalty window. ``seed=-1`` draws a fresh random seed.
    """

    temp: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int = -1

    def __post_init__(self) -> None:
        checks = [
            (_finite(self.temp) and self.temp >= 0, "temperature must be >= 0", "use 0 for greedy decoding"),
            (self.top_k >= 0, "top-k must be >= 0", "use 0 to disable top-k"),
            (_finite(self.top_p) and 0 < self.top_p <= 1, "top-p must be in (0, 1]", "use 1.0 to disable top-p"),
            (_finite(self.min_p) and 0 <= self.min_p <= 1, "min-p must be in [0, 1]", "use 0 to disable min-p"),
            (_finite(self.repeat_penalty) and self.repeat_penalty > 0,
             "repeat penalty must be > 0", "use 1.0 to disable it"),
            (self.repeat_last_n >= -1, "repeat-last-n must be >= -1", "use -1 for the whole context, 0 to disable"),
            (_finite(self.presence_penalty) and -2 <= self.presence_penalty <= 2,
             "presence penalty must be in [-2, 2]", "use 0 to disable it"),
            (_finite(self.frequency_penalty) and -2 <= self.frequency_penalty <= 2,
             "frequency penalty must be in [-2, 2]", "use 0 to disable it"),
            (self.seed >= -1, "seed must be >= -1", "use -1 for a random seed"),
        ]
        for ok, message, hint in checks:
            if not ok:
                raise UserError(message, hint)

    @property
    def greedy(self) -> bool:
        """True when sampling reduces to the argmax."""
        return self.temp == 0 or self.top_k == 1


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def apply_penalties(logits: np.ndarray, history: Sequence[int], params: SamplingParams) -> np.ndarray:
    """Return logits with llama.cpp's repetition, frequency and presence penalties applied.

    Positive logits are divided by ``repeat_penalty``, negative ones multiplied (so both move
    down); then ``count * frequency_penalty + presence_penalty`` is subtracted, where ``count``
    is how often the token occurs in the window. Returns the input unchanged when nothing applies.
    """
    active = (params.repeat_penalty != 1.0 or params.presence_penalty != 0.0
              or params.frequency_penalty != 0.0)
    n = params.repeat_last_n
    if not active or n == 0 or len(history) == 0:
        return logits
    window = np.asarray(history if n == -1 else history[-n:], dtype=np.int64)
    window = window[(window >= 0) & (window < logits.shape[0])]
    if window.size == 0:
        return logits
    ids, counts = np.unique(window, return_counts=True)  # [u], [u]
    out = logits.copy()
    sel = out[ids]
    if params.repeat_penalty != 1.0:
        sel = np.where(sel <= 0, sel * params.repeat_penalty, sel / params.repeat_penalty)
    sel = sel - (counts * params.frequency_penalty + params.presence_penalty)
    out[ids] = sel.astype(out.dtype)
    return out


def top_k_filter(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Ids and logits of the k largest entries (k=0 keeps all), sorted by descending logit."""
    v = logits.shape[0]
    if 0 < k < v:
        ids = np.argpartition(logits, v - k)[v - k:]  # [k], unordered
    else:
        ids = np.arange(v)
    ids = ids[np.argsort(-logits[ids], kind="stable")]
    return ids, logits[ids]


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - np.max(logits)
    e = np.exp(z)
    return e / e.sum()


def top_p_filter(ids: np.ndarray, logits: np.ndarray, p: float) -> tuple[np.ndarray, np.ndarray]:
    """Keep the smallest prefix (of descending-sorted candidates) whose probability mass >= p."""
    if p >= 1.0 or logits.shape[0] <= 1:
        return ids, logits
    cum = np.cumsum(_softmax(logits))
    keep = int(np.searchsorted(cum, p, side="left")) + 1
    keep = max(1, min(keep, logits.shape[0]))
    return ids[:keep], logits[:keep]


def min_p_filter(ids: np.ndarray, logits: np.ndarray, min_p: float) -> tuple[np.ndarray, np.ndarray]:
    """Keep candidates whose probability is at least ``min_p`` times the top probability."""
    if min_p <= 0.0 or logits.shape[0] <= 1:
        return ids, logits
    # p_i >= min_p * p_max  <=>  logit_i >= logit_max + log(min_p)
    mask = logits >= np.max(logits) + math.log(min_p)
    return ids[mask], logits[mask]


def _nucleus(logits: np.ndarray, p: float) -> np.ndarray:
    """top-p over the whole vocabulary without sorting all of it: sort only the largest
    entries, growing their number until they hold at least mass p. Returns sorted ids."""
    probs = _softmax(logits)  # [vocab] float64
    v = probs.shape[0]
    k = 256
    while k < v:
        part = np.argpartition(probs, v - k)[v - k:]  # [k]
        if probs[part].sum() >= p:
            break
        k *= 4
    else:
        part = np.arange(v)
    ids = part[np.argsort(-probs[part], kind="stable")]
    keep = int(np.searchsorted(np.cumsum(probs[ids]), p, side="left")) + 1
    return ids[: max(1, min(keep, ids.shape[0]))]


class _Sampler:
    """Callable turning one row of logits plus the token history into the next token id."""

    def __init__(self, params: SamplingParams) -> None:
        self.params = params
        seed = None if params.seed == -1 else params.seed
        self.rng = np.random.default_rng(seed)

    def __call__(self, logits: np.ndarray, history: Sequence[int]) -> int:
        p = self.params
        logits = np.asarray(logits, dtype=np.float32).reshape(-1)  # [vocab]
        logits = apply_penalties(logits, history, p)
        if p.greedy:
            return int(np.argmax(logits))
        v = logits.shape[0]
        if 0 < p.top_k < v:
            ids, cand = top_k_filter(logits, p.top_k)
            ids, cand = top_p_filter(ids, cand, p.top_p)
        elif p.top_p < 1.0:
            ids = _nucleus(logits, p.top_p)
            cand = logits[ids]
        else:  # order does not matter for the draw: skip the sort
            ids, cand = np.arange(v), logits
        ids, cand = min_p_filter(ids, cand, p.min_p)
        probs = _softmax(cand / p.temp)  # [n_candidates]
        cdf = np.cumsum(probs)
        r = self.rng.random() * cdf[-1]
        i = min(int(np.searchsorted(cdf, r, side="right")), ids.shape[0] - 1)
        return int(ids[i])


def make_sampler(params: SamplingParams | None = None) -> Sampler:
    """Build a sampler ``(logits f32[vocab], history) -> token id`` with its own seeded RNG."""
    return _Sampler(params or SamplingParams())
