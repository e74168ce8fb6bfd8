"""The streaming generator's logic on a scripted model: stops, EOS, limits, cache reuse."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from bitnet_cli.errors import UserError
from bitnet_cli.kv_cache import KVCache
from bitnet_cli.generation import generate, stream_generate
from bitnet_cli.sampling import SamplingParams

GREEDY = SamplingParams(temp=0)


class _Detok:
    def __init__(self, vocab):
        self.vocab = vocab

    def add(self, t):
        return self.vocab[t]

    def flush(self):
        return ""


class _Tok:
    vocab = ["<s>", "</s>", "a", "b", "c", " STOP", "S", "TOP"]
    eos_ids = frozenset({1})

    def encode(self, text):
        return [0] + [self.vocab.index(ch) for ch in text]

    def detokenizer(self, skip_special=False):
        return _Detok(self.vocab)


def tiny_cache(n_ctx):
    """The real KVCache (its token bookkeeping is what generation relies on), one value per position."""
    return KVCache(SimpleNamespace(n_layer=1, n_head_kv=1, head_dim=1), n_ctx)


class ScriptedModel:
    """Always predicts the next token of `script` (by position), recording forward calls."""

    def __init__(self, script, n_ctx=64):
        self.script, self.n_ctx, self.calls = script, n_ctx, []
        self.tokenizer = _Tok()

    def new_cache(self, n_ctx=None):
        return tiny_cache(n_ctx or self.n_ctx)

    def forward(self, tokens, cache, last_only=True):
        self.calls.append(list(tokens))
        cache.advance(tokens)
        logits = np.zeros((1, 8), np.float32)
        logits[0, self.script[min(cache.offset - 1, len(self.script) - 1)]] = 1.0
        return logits


def test_greedy_follows_script_until_eos():
    m = ScriptedModel([2, 3, 4, 2, 1])  # after "<s>a": b c a </s>
    out = list(stream_generate(m, "a", max_tokens=10, sampling=GREEDY))
    assert "".join(r.text for r in out) == "bca"
    assert out[-1].finish_reason == "stop" and out[-1].token == 1
    assert all(r.finish_reason is None for r in out[:-1])


def test_length_limit():
    m = ScriptedModel([2, 3, 3, 3, 3, 3, 3])
    out = list(stream_generate(m, "a", max_tokens=3, sampling=GREEDY))
    assert len(out) == 3 and out[-1].finish_reason == "length"


def test_stop_string_spanning_tokens_is_not_emitted():
    m = ScriptedModel([2, 3, 6, 7, 2, 2, 2])  # b S TOP a ...
    out = list(stream_generate(m, "a", max_tokens=10, sampling=GREEDY, stop=["STOP"]))
    assert "".join(r.text for r in out) == "b"
    assert out[-1].finish_reason == "stop"


def test_held_back_text_is_released_when_no_stop_follows():
    m = ScriptedModel([2, 3, 6, 2, 4, 1])  # b S a c </s>: "S" is held back, then released
    text = generate(m, "a", max_tokens=10, sampling=GREEDY, stop=["STOP"])
    assert text == "bSac"


def test_ignore_eos_generates_through_eos():
    m = ScriptedModel([2, 1, 3, 3])
    out = list(stream_generate(m, "a", max_tokens=3, sampling=GREEDY, ignore_eos=True))
    assert len(out) == 3 and out[-1].finish_reason == "length"


def test_cache_prefix_is_reused():
    m = ScriptedModel([2, 3, 4, 4, 4, 4, 4, 4])
    cache = m.new_cache()
    list(stream_generate(m, "ab", max_tokens=1, sampling=GREEDY, cache=cache))
    m.calls.clear()
    out = list(stream_generate(m, "abc", max_tokens=1, sampling=GREEDY, cache=cache))
    assert m.calls[0] == [4]  # only the new prompt token was run
    assert out[0].cached_tokens == 3


def test_prompt_longer_than_context_is_refused():
    m = ScriptedModel([2], n_ctx=3)
    with pytest.raises(UserError):
        list(stream_generate(m, "abc", max_tokens=1, sampling=GREEDY))


def test_context_bounds_generation():
    m = ScriptedModel([3] * 10, n_ctx=5)
    out = list(stream_generate(m, "a", max_tokens=-1, sampling=GREEDY))
    assert len(out) == 3 and out[-1].finish_reason == "length"  # 2 prompt + 3 generated = 5
