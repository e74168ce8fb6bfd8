"""Sampling: penalties, each filter, temperature, greedy and seed determinism."""
from __future__ import annotations

import collections

import numpy as np
import pytest

from bitnet_cli.errors import UserError
from bitnet_cli.sampling import (
    SamplingParams,
    apply_penalties,
    make_sampler,
    min_p_filter,
    top_k_filter,
    top_p_filter,
)

OFF = dict(top_k=0, top_p=1.0, min_p=0.0)


def _logits_from_probs(probs: list[float]) -> np.ndarray:
    return np.log(np.asarray(probs, dtype=np.float64)).astype(np.float32)


def _draws(params: SamplingParams, logits: np.ndarray, n: int = 400) -> collections.Counter:
    s = make_sampler(params)
    return collections.Counter(s(logits, []) for _ in range(n))


def test_defaults_are_llama_cpp():
    p = SamplingParams()
    assert (p.temp, p.top_k, p.top_p, p.min_p) == (0.8, 40, 0.95, 0.05)
    assert (p.repeat_penalty, p.repeat_last_n, p.seed) == (1.0, 64, -1)


@pytest.mark.parametrize("bad", [
    dict(temp=-0.1), dict(top_k=-1), dict(top_p=0.0), dict(top_p=1.5), dict(min_p=1.2),
    dict(repeat_penalty=0.0), dict(repeat_last_n=-2), dict(presence_penalty=3.0),
    dict(frequency_penalty=-2.5), dict(seed=-5), dict(temp=float("nan")),
])
def test_invalid_params_raise_user_error(bad):
    with pytest.raises(UserError):
        SamplingParams(**bad)


def test_temp_zero_is_argmax():
    rng = np.random.default_rng(0)
    s = make_sampler(SamplingParams(temp=0.0, seed=1))
    for _ in range(20):
        logits = rng.standard_normal(50).astype(np.float32)
        assert s(logits, []) == int(np.argmax(logits))


def test_seed_determinism_and_difference():
    logits = np.zeros(100, dtype=np.float32)  # uniform: every draw is pure RNG
    p = SamplingParams(temp=1.0, seed=123, **OFF)
    s1, s2 = make_sampler(p), make_sampler(p)
    seq1 = [s1(logits, []) for _ in range(30)]
    assert seq1 == [s2(logits, []) for _ in range(30)]
    s3 = make_sampler(SamplingParams(temp=1.0, seed=124, **OFF))
    assert [s3(logits, []) for _ in range(30)] != seq1


def test_sampling_follows_distribution():
    logits = _logits_from_probs([0.7, 0.2, 0.1])
    c = _draws(SamplingParams(temp=1.0, seed=0, **OFF), logits, n=2000)
    assert abs(c[0] / 2000 - 0.7) < 0.05
    assert abs(c[2] / 2000 - 0.1) < 0.04


def test_top_k_keeps_k_largest():
    ids, lg = top_k_filter(np.array([1.0, 5.0, 3.0, 4.0, 2.0], np.float32), 2)
    assert ids.tolist() == [1, 3] and lg.tolist() == [5.0, 4.0]
    c = _draws(SamplingParams(temp=1.0, top_k=2, top_p=1.0, min_p=0.0, seed=0),
               np.zeros(10, np.float32) + np.arange(10, dtype=np.float32) * 0.01)
    assert set(c) == {8, 9}


def test_top_p_keeps_smallest_nucleus():
    logits = _logits_from_probs([0.5, 0.3, 0.15, 0.05])
    ids, _ = top_p_filter(np.arange(4), logits, 0.75)
    assert ids.tolist() == [0, 1]
    ids, _ = top_p_filter(np.arange(4), logits, 0.85)
    assert ids.tolist() == [0, 1, 2]
    ids, _ = top_p_filter(np.arange(4), logits, 0.1)
    assert ids.tolist() == [0]


def test_min_p_drops_relative_tail():
    logits = _logits_from_probs([0.5, 0.3, 0.15, 0.05])
    ids, _ = min_p_filter(np.arange(4), logits, 0.2)  # threshold 0.1
    assert ids.tolist() == [0, 1, 2]
    c = _draws(SamplingParams(temp=1.0, top_k=0, top_p=1.0, min_p=0.5, seed=3), logits)
    assert set(c) == {0, 1}


def test_temperature_sharpens_and_flattens():
    logits = _logits_from_probs([0.6, 0.4])
    cold = _draws(SamplingParams(temp=0.2, seed=5, **OFF), logits, n=1000)
    hot = _draws(SamplingParams(temp=5.0, seed=5, **OFF), logits, n=1000)
    assert cold[0] > 850  # p0 = 0.6^5 / (0.6^5 + 0.4^5) ~ 0.88
    assert 400 < hot[0] < 650  # close to uniform


def test_repeat_penalty_llama_cpp_rule():
    logits = np.array([2.0, -2.0, 1.0, 0.5], np.float32)
    out = apply_penalties(logits, [0, 1, 0], SamplingParams(repeat_penalty=2.0))
    assert out.tolist() == [1.0, -4.0, 1.0, 0.5]  # positive divided, negative multiplied
    assert logits.tolist() == [2.0, -2.0, 1.0, 0.5]  # input untouched


def test_repeat_last_n_window():
    logits = np.array([2.0, 2.0, 2.0], np.float32)
    out = apply_penalties(logits, [0, 1, 2], SamplingParams(repeat_penalty=2.0, repeat_last_n=1))
    assert out.tolist() == [2.0, 2.0, 1.0]
    out = apply_penalties(logits, [0, 1], SamplingParams(repeat_penalty=2.0, repeat_last_n=0))
    assert out.tolist() == [2.0, 2.0, 2.0]
    out = apply_penalties(logits, [0, 1], SamplingParams(repeat_penalty=2.0, repeat_last_n=-1))
    assert out.tolist() == [1.0, 1.0, 2.0]


def test_presence_and_frequency_penalties():
    logits = np.zeros(3, np.float32)
    p = SamplingParams(presence_penalty=0.5, frequency_penalty=0.25)
    out = apply_penalties(logits, [0, 0, 0, 1], p)
    assert out.tolist() == pytest.approx([-(0.5 + 0.75), -(0.5 + 0.25), 0.0])


def test_penalty_changes_greedy_choice():
    logits = np.array([3.0, 2.0, 0.0], np.float32)
    s = make_sampler(SamplingParams(temp=0.0, repeat_penalty=2.0))
    assert s(logits, []) == 0
    assert s(logits, [0]) == 1  # 3/2 = 1.5 < 2


def test_out_of_range_history_ignored():
    logits = np.ones(3, np.float32)
    out = apply_penalties(logits, [7, -1], SamplingParams(repeat_penalty=2.0))
    assert out.tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("p", [0.5, 0.9, 0.99])
def test_nucleus_without_top_k_matches_full_sort(p):
    rng = np.random.default_rng(1)
    logits = (rng.standard_normal(5000) * 2).astype(np.float32)
    order = np.argsort(-logits, kind="stable")
    expect, _ = top_p_filter(order, logits[order], p)
    params = SamplingParams(temp=1.0, top_k=0, top_p=p, min_p=0.0, seed=0)
    allowed = set(expect.tolist())
    c = _draws(params, logits, n=100)
    assert set(c) <= allowed
    from bitnet_cli.sampling import _nucleus
    assert _nucleus(logits, p).tolist() == expect.tolist()
