"""Every family's tiny HF checkpoint converts to GGUF and gives transformers' logits.

tests/tiny_checkpoints.py writes each family's checkpoint in its on-hub layout (bf16 master
weights, packed autobitlinear, packed bitlinear, 1bitLLM floats, Falcon-E); `bitnet convert`'s
API turns it into I2_S (and TQ2_0 / TL1 / TL2 where the shapes allow), and the engine's logits
are held to the committed transformers goldens with the checks of test_lossless.py.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import bitnet_cli
import tiny_checkpoints as tc
from test_lossless import OFFICIAL_KEYS, cached_logits, greedy_text_failures, load_golden, logit_failures


TERNARY_OUTTYPES = ("i2_s", "tq2_0", "tq1_0", "tl1", "tl2")


def _supported(family: str, outtype: str) -> bool:
    """Whether every projection's shape fits `outtype`, by the converter's and the file's rules."""
    from bitnet_cli.convert.encode import outtype_of, shape_problem
    from bitnet_cli.modelfile import tensor_nbytes

    ttype = outtype_of(outtype)
    for M, K in tc.linear_shapes(tc.SPECS[family]).values():
        if shape_problem(ttype, M, K) is not None:
            return False
        try:
            tensor_nbytes(ttype, (M, K))
        except ValueError:
            return False
    return True


ALL_CASES = [(fam, t) for fam in tc.FAMILIES for t in TERNARY_OUTTYPES]
CASES = [c for c in ALL_CASES if _supported(*c)]
REFUSED = [c for c in ALL_CASES if c not in CASES]


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    return {fam: tc.write_checkpoint(fam, root / fam) for fam in tc.FAMILIES}


@pytest.fixture(scope="session")
def converted(tmp_path_factory, checkpoints):
    """Convert lazily, once per (family, outtype)."""
    from bitnet_cli.convert import convert_checkpoint

    root, done = tmp_path_factory.mktemp("gguf"), {}

    def get(family: str, outtype: str) -> Path:
        if (family, outtype) not in done:
            out = root / f"{family}-{outtype}.gguf"
            done[family, outtype] = Path(convert_checkpoint(checkpoints[family], out, outtype))
        return done[family, outtype]

    return get


@pytest.mark.parametrize("family", tc.FAMILIES)
def test_checkpoint_is_the_one_the_goldens_were_made_from(checkpoints, family: str) -> None:
    expected = load_golden(family).meta["checkpoint_sha256"]
    got = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(checkpoints[family].iterdir())}
    assert got == expected


def test_every_family_converts_to_i2_s_and_some_to_tq2_0() -> None:
    assert {f for f, t in CASES if t == "i2_s"} == set(tc.FAMILIES)
    assert {f for f, t in CASES if t == "tq2_0"} >= {"bitnet-packed", "llama-bitlinear"}


@pytest.mark.parametrize(("family", "outtype"), REFUSED)
def test_shapes_a_type_cannot_hold_are_refused_with_one_clear_error(checkpoints, tmp_path,
                                                                   family: str, outtype: str) -> None:
    from bitnet_cli.convert import convert_checkpoint
    from bitnet_cli.errors import BitnetError

    out = tmp_path / "out.gguf"
    with pytest.raises(BitnetError):
        convert_checkpoint(checkpoints[family], out, outtype)
    assert not out.exists()


@pytest.mark.parametrize(("family", "outtype"), CASES)
def test_converted_logits_match_transformers(converted, family: str, outtype: str) -> None:
    golden = load_golden(family)
    model = bitnet_cli.load(converted(family, outtype))
    ours = model.logits(golden.meta["prompt_ids"])
    assert ours.dtype == np.float32
    assert logit_failures(ours, golden.logits, golden.floor_max, golden.floor_mean) == []


@pytest.mark.parametrize("family", tc.FAMILIES)
def test_converted_tokenizer_and_greedy_match_transformers(converted, family: str) -> None:
    golden = load_golden(family)
    model = bitnet_cli.load(converted(family, "i2_s"))
    meta = golden.meta
    assert model.tokenizer.encode(meta["prompt_text"])[: len(meta["prompt_ids"])] == meta["prompt_ids"]
    assert greedy_text_failures(model, golden) == []


@pytest.mark.parametrize(("family", "arch", "act"), [
    ("bitnet-bf16", "bitnet-b1.58", "relu2"), ("bitnet-packed", "bitnet-b1.58", "relu2"),
    ("1bitllm", "bitnet", "silu"), ("llama-bitlinear", "llama", "silu"), ("falcon-e", "llama", "silu"),
])
def test_converted_arch_follows_the_source_activation(converted, family: str, arch: str, act: str) -> None:
    model = bitnet_cli.load(converted(family, "i2_s"))
    assert model.config.arch == arch
    assert model.config.ffn_act == act


@pytest.mark.parametrize("family", tc.FAMILIES)
def test_converted_cached_decode_matches_full_pass(converted, family: str) -> None:
    golden = load_golden(family)
    model = bitnet_cli.load(converted(family, "i2_s"))
    ids = golden.meta["prompt_ids"]
    full = model.logits(ids)
    assert logit_failures(cached_logits(model, ids), full, golden.floor_max, golden.floor_mean) == []


@pytest.mark.parametrize("family", ["bitnet-bf16", "bitnet-packed"])
def test_converted_2b4t_family_starts_with_the_official_keys(converted, family: str) -> None:
    from bitnet_cli.modelfile import open_model_file

    keys = list(open_model_file(converted(family, "i2_s")).metadata)
    assert keys[: len(OFFICIAL_KEYS)] == [k.format(a="bitnet-b1.58") for k in OFFICIAL_KEYS]
