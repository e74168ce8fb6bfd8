"""Tokenizer from GGUF metadata: byte-level BPE and SentencePiece, specials, BOS, streaming text."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bitnet_cli.errors import ModelFormatError, UnsupportedModelError
from bitnet_cli.tokenizer import Tokenizer, build_dummy_tokenizer_metadata, tokenizer_metadata_from_hf

TEXTS = [
    "Hello world, the river runs past the old mill.",
    "naïve café — 日本語のテキスト 🙂🚀 Ελληνικά",
    "  leading spaces\n\nand\ttabs 12345 I'm here   ",
]


@pytest.fixture(scope="module")
def md() -> dict[str, Any]:
    return build_dummy_tokenizer_metadata(512)


@pytest.fixture(scope="module")
def tok(md: dict[str, Any]) -> Tokenizer:
    return Tokenizer.from_metadata(md)


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip(tok: Tokenizer, text: str) -> None:
    ids = tok.encode(text, add_bos=False)
    assert ids and all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


def test_bos_follows_add_bos_token(md: dict[str, Any], tok: Tokenizer) -> None:
    assert tok.encode("hi")[0] == tok.bos_id == md["tokenizer.ggml.bos_token_id"]
    assert tok.bos_id not in tok.encode("hi", add_bos=False)
    no_bos = Tokenizer.from_metadata({**md, "tokenizer.ggml.add_bos_token": False})
    assert no_bos.encode("hi") == tok.encode("hi", add_bos=False)
    assert no_bos.encode("hi", add_bos=True) == tok.encode("hi")


def test_special_tokens_in_text_and_eos_ids(md: dict[str, Any], tok: Tokenizer) -> None:
    eot = md["tokenizer.ggml.eot_token_id"]
    ids = tok.encode("Hi<|eot_id|>there", add_bos=False)
    assert ids.count(eot) == 1 and tok.tokens[eot] == "<|eot_id|>"
    assert tok.eos_ids == {tok.eos_id, eot}
    assert tok.decode(ids, skip_special=True) == "Hithere"
    # Without the EOT key, <|eot_id|> is still found by name.
    md2 = {k: v for k, v in md.items() if k != "tokenizer.ggml.eot_token_id"}
    assert eot in Tokenizer.from_metadata(md2).eos_ids


def test_streaming_never_splits_characters(tok: Tokenizer) -> None:
    text = "日本🙂é"  # no merges cover these: one token per byte
    ids = tok.encode(text, add_bos=False)
    assert len(ids) == len(text.encode("utf-8"))
    det = tok.detokenizer()
    pieces = [det.add(i) for i in ids]
    assert pieces[:3] == ["", "", "日"] and pieces[-1] == "é"
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) + det.flush() == tok.decode(ids) == text


def test_streaming_flushes_an_incomplete_character(tok: Tokenizer) -> None:
    ids = tok.encode("🙂", add_bos=False)[:2]  # half an emoji
    det = tok.detokenizer()
    assert [det.add(i) for i in ids] == ["", ""]
    assert det.flush() == "\ufffd" == tok.decode(ids)


def _pieces(tok: Tokenizer, text: str) -> list[str]:
    return [p for p, _ in tok._tok.pre_tokenizer.pre_tokenize_str(text)]


def test_pre_tokenizers(md: dict[str, Any]) -> None:
    llama3 = Tokenizer.from_metadata(md)
    absent = Tokenizer.from_metadata({k: v for k, v in md.items() if k != "tokenizer.ggml.pre"})
    gpt2 = Tokenizer.from_metadata({**md, "tokenizer.ggml.pre": "gpt-2"})
    text = "I'm 12345 ok"
    assert _pieces(llama3, text) == ["I", "'m", "Ġ", "123", "45", "Ġok"]
    assert _pieces(absent, text) == _pieces(llama3, text)
    assert _pieces(gpt2, text) == ["I", "'m", "Ġ12345", "Ġok"]
    assert Tokenizer.from_metadata({**md, "tokenizer.ggml.pre": "falcon3"}).encode(text) == llama3.encode(text)


def test_bad_vocabularies(md: dict[str, Any]) -> None:
    with pytest.raises(UnsupportedModelError, match="pre-tokenizer 'qwen2'"):
        Tokenizer.from_metadata({**md, "tokenizer.ggml.pre": "qwen2"})
    with pytest.raises(UnsupportedModelError, match="tokenizer type 'bert'"):
        Tokenizer.from_metadata({**md, "tokenizer.ggml.model": "bert"})
    with pytest.raises(ModelFormatError, match="merges are inconsistent"):
        Tokenizer.from_metadata({**md, "tokenizer.ggml.merges": md["tokenizer.ggml.merges"] + ["zzq qqz"]})
    with pytest.raises(ModelFormatError, match="no vocabulary"):
        Tokenizer.from_metadata({"tokenizer.ggml.model": "gpt2"})


def test_dummy_vocabulary_layout() -> None:
    md = build_dummy_tokenizer_metadata(128256)
    assert len(md["tokenizer.ggml.tokens"]) == 128256 == len(md["tokenizer.ggml.token_type"])
    assert (md["tokenizer.ggml.bos_token_id"], md["tokenizer.ggml.eos_token_id"], md["tokenizer.ggml.eot_token_id"]) == (
        128000,
        128001,
        128009,
    )
    assert md["tokenizer.ggml.tokens"][128009] == "<|eot_id|>" and md["tokenizer.ggml.token_type"][128009] == 3
    assert "{{" in md["tokenizer.chat_template"] or "{%" in md["tokenizer.chat_template"]
    again = build_dummy_tokenizer_metadata(128256)
    assert again["tokenizer.ggml.merges"] == md["tokenizer.ggml.merges"]
    assert again["tokenizer.ggml.tokens"] == md["tokenizer.ggml.tokens"]
    official = build_dummy_tokenizer_metadata(128256, official=True)
    assert "tokenizer.ggml.pre" not in official and "BITNETAssistant" in official["tokenizer.chat_template"]
    tok = Tokenizer.from_metadata(official)
    ids = np.random.default_rng(0).integers(0, 128000, 50).tolist()
    assert "\ufffd" not in tok.decode(ids)  # filler words decode to readable text


# --- SentencePiece ("llama") vocabularies --------------------------------------------------------

SPM_PIECES = ["▁", "h", "e", "l", "o", "w", "r", "d", "▁h", "▁he", "ll", "▁hell", "▁hello",
              "▁w", "or", "ld", "▁wor", "▁world", "a", "b", "c", "ab", "bc"]


def _spm_md(scores: dict[str, float] | None = None, **extra: Any) -> dict[str, Any]:
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + SPM_PIECES
    types = [2, 3, 3] + [6] * 256 + [1] * len(SPM_PIECES)
    # Longer pieces score lower, as SentencePiece BPE vocabularies are ordered.
    sc = [0.0] * 259 + [-float(i) for i in range(len(SPM_PIECES))]
    for piece, s in (scores or {}).items():
        sc[tokens.index(piece)] = s
    md = {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.scores": np.array(sc, np.float32),
        "tokenizer.ggml.token_type": np.array(types, np.int32),
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.ggml.unknown_token_id": 0,
    }
    md.update(extra)
    return md


def test_spm_encode_decode_and_byte_fallback() -> None:
    tok = Tokenizer.from_metadata(_spm_md())
    ids = tok.encode("hello world é")
    assert ids[0] == 1  # llama vocabularies add BOS by default
    assert [tok.tokens[i] for i in ids[1:]] == ["▁hello", "▁world", "▁", "<0xC3>", "<0xA9>"]
    assert tok.decode(ids, skip_special=True) == "hello world é"
    det = tok.detokenizer()
    pieces = [det.add(i) for i in ids]
    assert pieces[-2] == "" and pieces[-1] == "é"
    assert "".join(pieces) + det.flush() == tok.decode(ids) == "<s>hello world é"
    assert tok.decode(tok.encode("hello", add_bos=False)) == " hello"  # the prefix space stays without BOS


def test_spm_merges_follow_scores() -> None:
    ab_first = Tokenizer.from_metadata(_spm_md({"ab": -1.0, "bc": -2.0}, **{"tokenizer.ggml.add_space_prefix": False}))
    bc_first = Tokenizer.from_metadata(_spm_md({"ab": -2.0, "bc": -1.0}, **{"tokenizer.ggml.add_space_prefix": False}))
    assert [ab_first.tokens[i] for i in ab_first.encode("abc", add_bos=False)] == ["ab", "c"]
    assert [bc_first.tokens[i] for i in bc_first.encode("abc", add_bos=False)] == ["a", "bc"]


# --- Hugging Face folders ------------------------------------------------------------------------


def test_metadata_from_hf_folder(tmp_path: Path, md: dict[str, Any], tok: Tokenizer) -> None:
    # Write the dummy vocabulary as a tokenizer.json, the way HF stores LLaMA-3's.
    tj = {
        "added_tokens": [
            {"id": i, "content": t, "special": True}
            for i, t in enumerate(md["tokenizer.ggml.tokens"])
            if md["tokenizer.ggml.token_type"][i] == 3
        ],
        "pre_tokenizer": json.loads(tok._tok.to_str())["pre_tokenizer"],
        "model": {
            "type": "BPE",
            "vocab": {t: i for i, t in enumerate(md["tokenizer.ggml.tokens"]) if md["tokenizer.ggml.token_type"][i] == 1},
            "merges": [m.split(" ") for m in md["tokenizer.ggml.merges"]],
            "ignore_merges": True,
        },
    }
    (tmp_path / "tokenizer.json").write_text(json.dumps(tj))
    cfg = {"bos_token": "<|begin_of_text|>", "eos_token": {"content": "<|end_of_text|>"}, "chat_template": "{{ x }}"}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg))
    hf = tokenizer_metadata_from_hf(tmp_path)
    assert hf["tokenizer.ggml.pre"] == "llama-bpe" and hf["tokenizer.chat_template"] == "{{ x }}"
    assert hf["tokenizer.ggml.bos_token_id"] == tok.bos_id and hf["tokenizer.ggml.eos_token_id"] == tok.eos_id
    assert hf["tokenizer.ggml.tokens"] == md["tokenizer.ggml.tokens"]
    again = Tokenizer.from_metadata(hf)
    for text in TEXTS:
        assert again.encode(text + "<|eot_id|>") == tok.encode(text + "<|eot_id|>")


def _pb_field(field: int, wire: int, payload: bytes | int) -> bytes:
    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)

    key = varint(field << 3 | wire)
    if wire == 0:
        return key + varint(int(payload))
    if wire == 5:
        return key + bytes(payload)
    return key + varint(len(payload)) + bytes(payload)


def test_metadata_from_sentencepiece_folder(tmp_path: Path) -> None:
    import struct

    ref = _spm_md()
    model = b""
    for piece, score, ttype in zip(ref["tokenizer.ggml.tokens"], ref["tokenizer.ggml.scores"], ref["tokenizer.ggml.token_type"]):
        body = _pb_field(1, 2, piece.encode()) + _pb_field(2, 5, struct.pack("<f", score)) + _pb_field(3, 0, int(ttype))
        model += _pb_field(1, 2, body)
    model += _pb_field(2, 2, _pb_field(3, 0, 2))  # TrainerSpec.model_type = BPE
    (tmp_path / "tokenizer.model").write_bytes(model)
    n = len(ref["tokenizer.ggml.tokens"])
    cfg = {"added_tokens_decoder": {str(n): {"content": "<pad>", "special": True}}, "bos_token": "<s>", "eos_token": "</s>"}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg))
    md = tokenizer_metadata_from_hf(tmp_path)
    assert md["tokenizer.ggml.model"] == "llama" and md["tokenizer.ggml.tokens"][:n] == ref["tokenizer.ggml.tokens"]
    assert md["tokenizer.ggml.tokens"][n] == "<pad>" and len(md["tokenizer.ggml.scores"]) == n + 1
    assert (md["tokenizer.ggml.bos_token_id"], md["tokenizer.ggml.eos_token_id"]) == (1, 2)
    tok, expected = Tokenizer.from_metadata(md), Tokenizer.from_metadata(ref)
    assert tok.encode("hello world é<pad>") == expected.encode("hello world é") + [n]


def _hf_tokenizer_json(style: str) -> str:
    """An independent LLaMA-3- or GPT-2-style tokenizer.json, built with `tokenizers` as HF ships them."""
    from tokenizers import Regex
    from tokenizers import Tokenizer as HF
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers

    from bitnet_cli.tokenizer import LLAMA3_PATTERN

    hf = HF(models.BPE(ignore_merges=style == "llama3"))
    if style == "llama3":
        hf.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
             pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)]
        )
    else:
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    hf.decoder = decoders.ByteLevel()
    text = "The cat sat on the mat. 1234567 cats! Don't stop; it's   fine.\n\nÜber café 日本 🙂 " * 3
    hf.train_from_iterator([text], trainers.BpeTrainer(vocab_size=400, show_progress=False,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    hf.add_special_tokens(["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"])
    bos = hf.token_to_id("<|begin_of_text|>")
    hf.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", bos)])
    return hf.to_str()


@pytest.mark.parametrize("style", ["llama3", "gpt2"])
@pytest.mark.parametrize("text", TEXTS + ["The cat sat.<|eot_id|>Don't 1234567 cats!\n\n  Über 🙂", ""])
def test_same_ids_as_hugging_face(tmp_path_factory: pytest.TempPathFactory, text: str, style: str) -> None:
    from tokenizers import Tokenizer as HF

    d = tmp_path_factory.mktemp("hf")
    tj = _hf_tokenizer_json(style)
    (d / "tokenizer.json").write_text(tj)
    (d / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}))
    md = tokenizer_metadata_from_hf(d)
    assert md["tokenizer.ggml.pre"] == ("llama-bpe" if style == "llama3" else "gpt-2")
    ours = Tokenizer.from_metadata({**md, "tokenizer.ggml.add_bos_token": True})
    hf = HF.from_str(tj)
    ids = hf.encode(text).ids
    assert ours.encode(text) == ids
    assert ours.decode(ids[1:]) == hf.decode(ids[1:], skip_special_tokens=False) == text
    assert ours.decode(ids, skip_special=True) == hf.decode(ids, skip_special_tokens=True)
