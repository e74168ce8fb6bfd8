"""The engine on tiny dummy models: shapes, cache consistency, determinism, thread counts."""
from __future__ import annotations

import numpy as np
import pytest

import bitnet_cli
from bitnet_cli.errors import ModelFormatError, UnsupportedModelError, UserError
from bitnet_cli.generation import stream_generate
from bitnet_cli.sampling import SamplingParams


@pytest.fixture(scope="module", params=["tiny_model", "tiny_silu_model"])
def model(request):
    return bitnet_cli.load(request.getfixturevalue(request.param), n_ctx=128)


def test_logits_shape_and_dtype(model):
    ids = model.tokenizer.encode("Hello world")
    lg = model.logits(ids)
    assert lg.shape == (len(ids), model.config.n_vocab) and lg.dtype == np.float32
    assert np.isfinite(lg).all()


def assert_same_up_to_reorder(a: np.ndarray, b: np.ndarray) -> None:
    """Equal but for float summation order, which int8 requantization can turn into one step."""
    assert a.shape == b.shape
    assert np.abs(a - b).mean() < 1e-3
    top2 = np.sort(b, axis=1)[:, -2:]
    decisive = (top2[:, 1] - top2[:, 0]) > 0.05
    assert (a.argmax(1) == b.argmax(1))[decisive].all()


def test_cached_decode_matches_full_pass(model):
    ids = model.tokenizer.encode("The quick brown fox jumps over the lazy dog")
    full = model.logits(ids)
    cache = model.new_cache(64)
    steps = np.concatenate([model.forward([t], cache) for t in ids])
    # Only float summation order differs (one key at a time vs all at once).
    assert_same_up_to_reorder(steps, full)


def test_chunked_prefill_matches(model, monkeypatch):
    import bitnet_cli.engine as engine

    ids = model.tokenizer.encode("one two three four five six seven eight nine ten")
    full = model.forward(ids, model.new_cache(64), last_only=False)
    monkeypatch.setattr(engine, "PREFILL_CHUNK", 3)
    chunked = model.forward(ids, model.new_cache(64), last_only=False)
    assert_same_up_to_reorder(chunked, full)


def test_greedy_is_deterministic_and_seeded_sampling_repeats(model):
    greedy = SamplingParams(temp=0)
    a = bitnet_cli.generate(model, "Hello", max_tokens=8, sampling=greedy, ignore_eos=True)
    b = bitnet_cli.generate(model, "Hello", max_tokens=8, sampling=greedy, ignore_eos=True)
    assert a == b
    hot = SamplingParams(temp=1.0, seed=7)
    assert [r.token for r in stream_generate(model, "Hi", max_tokens=6, sampling=hot, ignore_eos=True)] == [
        r.token for r in stream_generate(model, "Hi", max_tokens=6, sampling=hot, ignore_eos=True)
    ]


def test_threads_do_not_change_results(tiny_model):
    ids = list(range(5, 25))
    one = bitnet_cli.load(tiny_model, threads=1).logits(ids)
    two = bitnet_cli.load(tiny_model, threads=2).logits(ids)
    np.testing.assert_array_equal(one, two)


def test_prompt_overflowing_context_is_a_user_error(tiny_model):
    m = bitnet_cli.load(tiny_model, n_ctx=8)
    with pytest.raises(UserError):
        bitnet_cli.generate(m, list(range(1, 20)), max_tokens=2)


def test_truncated_file_is_a_format_error(tiny_model, tmp_path):
    data = tiny_model.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFormatError):
        bitnet_cli.load(cut)


def test_unknown_arch_is_unsupported(tmp_path):
    from bitnet_cli.modelfile import write_model_file

    p = write_model_file(tmp_path / "x.gguf", {"general.architecture": "mamba"}, [])
    with pytest.raises((UnsupportedModelError, ModelFormatError)):
        bitnet_cli.load(p)


@pytest.mark.parametrize("outtype", ["tl2", "tl1", "f16"])
def test_every_weight_type_gives_the_i2s_logits(tmp_path, outtype):
    """The same dummy weights stored as TL2 (own LUT kernels), TL1 or F16 run bit-identically."""
    from bitnet_cli.dummy import write_dummy_model

    ref = write_dummy_model(tmp_path / "a.gguf", "test-tiny-2b4t", "i2_s", seed=5)
    other = write_dummy_model(tmp_path / "b.gguf", "test-tiny-2b4t", outtype, seed=5)
    ids = list(range(3, 40))
    a, b = bitnet_cli.load(ref, threads=1), bitnet_cli.load(other, threads=1)
    np.testing.assert_array_equal(a.logits(ids), b.logits(ids))


def _rss_bytes() -> int:
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="reads /proc/self/statm")
def test_kv_cache_memory_is_resident_only_where_written(model):
    # 32 MiB per array; one position in every layer and head must not make it all resident
    cfg = model.config
    cache = model.new_cache((32 << 20) // (4 * cfg.n_layer * cfg.n_head_kv * cfg.head_dim))
    before = _rss_bytes()
    cache.k[:, :, 0] = 1.0
    cache.v[:, :, 0] = 1.0
    assert _rss_bytes() - before < 4 << 20
    assert cache.k[0, 0, 1].sum() == 0.0 and cache.k[0, 0, 0].sum() == cache.k.shape[-1]


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="MADV_POPULATE_READ is Linux")
def test_populate_maps_the_named_tensors(tiny_model):
    from bitnet_cli.modelfile import open_model_file

    mf = open_model_file(tiny_model)
    name = max(mf.tensors, key=lambda n: mf.tensors[n].nbytes)
    assert mf.tensors[name].nbytes >= 1 << 18
    before = _rss_bytes()
    thread = mf.populate([name])
    assert thread is not None
    thread.join()
    assert _rss_bytes() - before >= mf.tensors[name].nbytes // 2
