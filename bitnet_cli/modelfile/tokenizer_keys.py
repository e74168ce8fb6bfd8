"""GGUF tokenizer keys: a small built-in vocabulary for dummy models, and HF tokenizer folders.

The dummy vocabulary is a byte-level BPE trained with `tokenizers` on the short English text below
(LLaMA-3 split, so `tokenizer.ggml.pre = llama-bpe`), padded with made-up words so random token
ids still decode to readable text, and ended by LLaMA-3's special tokens; with n_vocab = 128256
BOS, EOS and <|eot_id|> get 2B-4T's ids 128000, 128001 and 128009.
"""
from __future__ import annotations

import json
from functools import lru_cache
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from bitnet_cli.errors import ModelFormatError, UnsupportedModelError
from bitnet_cli.chat_template import BITNET_2B4T

__all__ = [
    "dummy_tokenizer_metadata",
    "hf_tokenizer_metadata",
    "llama3_special_tokens",
    "PLACEHOLDER_TEMPLATE",
    "ROLE_TEMPLATE",
]

CORPUS = """\
The river runs past the old mill and under the stone bridge before it reaches the town. In the
morning the baker opens the shop, and the smell of fresh bread drifts along the street. Children
walk to school in small groups, talking about the games they will play in the afternoon. The
teacher writes a question on the board: what makes a good story? One boy says it needs a brave
hero; a girl says it needs a surprise at the end. They both are right, the teacher answers, and
asks them to write a short story of their own before the bell rings.
At noon the market is busy. People buy apples, cheese, fish and flowers, and they talk about the
weather, the price of milk and the news from the city. An old man sits on a bench near the fountain
and feeds the birds. He has lived in the town for seventy years and remembers when the bridge was
built. When the sun goes down, the lights come on one by one, the shops close, and families sit
down together for dinner. Someone reads a book by the window; someone else plays a quiet song.
Later, the town is still, the river keeps running, and a new day will begin again tomorrow.
Numbers and signs appear too: 1, 2, 3, 10, 42, 100, 2024; "quotes", (brackets), question? yes!
How are you? I am fine, thank you. What is your name? My name is Sam. Where do you live? I live
here, in the small town by the river. Can you help me? Of course I can help you with that.
"""

# The HF template of microsoft/bitnet-b1.58-2B-4T: "Role: content<|eot_id|>".
ROLE_TEMPLATE = BITNET_2B4T
# The placeholder bitnet.cpp's converter writes into the official 2B-4T file (spec §2.8).
PLACEHOLDER_TEMPLATE = (
    "{% for message in messages %}{% if loop.first %}{{ bos_token }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ 'Human: ' + message['content'] + '\\n\\nBITNETAssistant: ' + eos_token }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}"
)

TYPE_NORMAL, TYPE_CONTROL, TYPE_USER_DEFINED = 1, 3, 4
BOS_OFFSET, EOS_OFFSET, EOT_OFFSET = 0, 1, 9  # within the special block, as in LLaMA-3


def llama3_special_tokens(n: int) -> list[str]:
    """LLaMA-3's special-token block (first `n` of its 256), in id order."""
    named = {
        0: "<|begin_of_text|>",
        1: "<|end_of_text|>",
        6: "<|start_header_id|>",
        7: "<|end_header_id|>",
        9: "<|eot_id|>",
    }
    out, reserved = [], 0
    for i in range(n):
        if i in named:
            out.append(named[i])
        else:
            out.append(f"<|reserved_special_token_{reserved}|>")
            reserved += 1
    return out


def _train_bpe(vocab_size: int) -> tuple[list[str], list[str]]:
    """Byte-level BPE trained on CORPUS: (tokens in id order, merges as 'a b')."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    from bitnet_cli.tokenizer import LLAMA3_PATTERN

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False, min_frequency=2
    )
    tok.train_from_iterator([CORPUS], trainer)
    model = json.loads(tok.to_str())["model"]
    tokens = [t for t, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return tokens, merges


def _filler_words(n: int, taken: set[str]) -> list[str]:
    """`n` made-up words ("Ġkamo", ...) so that random ids decode to something readable."""
    syllables = ["".join(p) for p in product("bdfgklmnprstvz", "aeiou")]
    out: list[str] = []
    length = 2
    while len(out) < n:
        for parts in product(syllables, repeat=length):
            word = "\u0120" + "".join(parts)  # Ġ: byte-level space
            if word not in taken:
                out.append(word)
                if len(out) == n:
                    break
        length += 1
    return out


@lru_cache(maxsize=4)
def _dummy_vocab(n_vocab: int) -> tuple[tuple[str, ...], tuple[str, ...], int]:
    n_special = 256 if n_vocab >= 4096 else 16
    if n_vocab < 256 + n_special + 16:
        raise ValueError(f"a dummy vocabulary needs at least {256 + n_special + 16} tokens, got {n_vocab}")
    tokens, merges = _train_bpe(min(n_vocab - n_special, 2048))
    fillers = _filler_words(n_vocab - n_special - len(tokens), set(tokens))
    return tuple(tokens + fillers + llama3_special_tokens(n_special)), tuple(merges), n_vocab - n_special


def dummy_tokenizer_metadata(n_vocab: int, *, official: bool = False) -> dict[str, Any]:
    """GGUF tokenizer keys of the dummy vocabulary with exactly `n_vocab` tokens.

    `official=True` gives the 2B-4T file's key set: no `tokenizer.ggml.pre`, no EOT key, and the
    converter's placeholder chat template.
    """
    tokens, merges, first_special = _dummy_vocab(n_vocab)
    types = np.full(n_vocab, TYPE_NORMAL, np.int32)
    types[first_special:] = TYPE_CONTROL
    md: dict[str, Any] = {"tokenizer.ggml.model": "gpt2"}
    if not official:
        md["tokenizer.ggml.pre"] = "llama-bpe"
    md["tokenizer.ggml.tokens"] = list(tokens)
    md["tokenizer.ggml.scores"] = np.zeros(n_vocab, np.float32)
    md["tokenizer.ggml.token_type"] = types
    md["tokenizer.ggml.merges"] = list(merges)
    md["tokenizer.ggml.bos_token_id"] = first_special + BOS_OFFSET
    md["tokenizer.ggml.eos_token_id"] = first_special + EOS_OFFSET
    if not official:
        md["tokenizer.ggml.eot_token_id"] = first_special + EOT_OFFSET
    md["tokenizer.ggml.padding_token_id"] = first_special + EOS_OFFSET
    md["tokenizer.ggml.add_bos_token"] = True
    md["tokenizer.chat_template"] = PLACEHOLDER_TEMPLATE if official else ROLE_TEMPLATE
    return md


# --- Hugging Face folders ------------------------------------------------------------------------


def _token_content(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def _chat_template(cfg: dict[str, Any], model_dir: Path) -> str | None:
    tpl = cfg.get("chat_template")
    if isinstance(tpl, list):  # [{name, template}, ...]
        named = {t.get("name"): t.get("template") for t in tpl if isinstance(t, dict)}
        tpl = named.get("default") or next(iter(named.values()), None)
    if tpl is None and (model_dir / "chat_template.jinja").is_file():
        tpl = (model_dir / "chat_template.jinja").read_text(encoding="utf-8")
    return tpl if isinstance(tpl, str) else None


def _pre_of(tj: dict[str, Any], vocab: dict[str, int]) -> str:
    """The `tokenizer.ggml.pre` name for a tokenizer.json's pre-tokenizer.

    llama.cpp identifies it by hashing sample encodings; we read the split itself: LLaMA-3's regex,
    GPT-2's byte-level regex, or else, for Falcon3-style vocabularies, `falcon3` (which llama.cpp
    splits with LLaMA-3's regex too).
    """
    from bitnet_cli.tokenizer import LLAMA3_PATTERN

    text = json.dumps(tj.get("pre_tokenizer"))
    if json.dumps(LLAMA3_PATTERN)[1:-1] in text:
        return "llama-bpe"
    pre = tj.get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"
    if ">>TITLE<<" in vocab:
        return "falcon3"
    raise UnsupportedModelError(
        "the tokenizer's pre-tokenizer is not LLaMA-3's, GPT-2's or Falcon3's",
        "only those byte-level BPE vocabularies are supported",
    )


def _bpe_keys(tj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
    model = tj["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    added = {a["content"]: a for a in tj.get("added_tokens", [])}
    for a in added.values():
        vocab.setdefault(a["content"], int(a["id"]))
    n = max(vocab.values()) + 1
    tokens = [f"[PAD{i}]" for i in range(n)]  # holes in the id space, as llama.cpp's converter fills them
    types = np.full(n, TYPE_USER_DEFINED, np.int32)
    for tok, i in vocab.items():
        tokens[i] = tok
        a = added.get(tok)
        types[i] = TYPE_NORMAL if a is None else (TYPE_CONTROL if a.get("special") else TYPE_USER_DEFINED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    md = {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": _pre_of(tj, vocab),
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.merges": merges,
    }
    return md, {t: i for i, t in enumerate(tokens)}


# --- SentencePiece tokenizer.model (a protobuf; read without the sentencepiece package) -----------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        out |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return out, pos


def _proto_fields(buf: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) of one protobuf message, values undecoded."""
    out, pos = [], 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((field, wire, value))
    return out


def _spm_keys(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """tokens, scores and types of a SentencePiece BPE model (ModelProto.pieces = field 1)."""
    import struct

    tokens, scores, types = [], [], []
    add_prefix = True
    for field, _, value in _proto_fields(path.read_bytes()):
        if field == 1:  # SentencePiece { piece = 1; score = 2; type = 3 }
            piece = {f: v for f, _, v in _proto_fields(value)}
            tokens.append(piece.get(1, b"").decode("utf-8", "replace"))
            scores.append(struct.unpack("<f", piece[2])[0] if 2 in piece else 0.0)
            types.append(int(piece.get(3, TYPE_NORMAL)))
        elif field == 2:  # TrainerSpec { model_type = 3 }: 1 unigram, 2 bpe
            spec = {f: v for f, _, v in _proto_fields(value)}
            if spec.get(3, 1) != 2:
                raise UnsupportedModelError(
                    f"{path} is a SentencePiece unigram model", "only SentencePiece BPE vocabularies are supported"
                )
        elif field == 3:  # NormalizerSpec { add_dummy_prefix = 3 }
            add_prefix = bool({f: v for f, _, v in _proto_fields(value)}.get(3, 1))
    md = {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.scores": np.array(scores, np.float32),
        "tokenizer.ggml.token_type": np.array(types, np.int32),
        "tokenizer.ggml.add_space_prefix": add_prefix,
    }
    return md, {t: i for i, t in reversed(list(enumerate(tokens)))}


def _add_spm_added_tokens(md: dict[str, Any], index: dict[str, int], cfg: dict[str, Any]) -> None:
    """Tokens added on top of tokenizer.model (tokenizer_config.json's added_tokens_decoder)."""
    added = {int(i): a for i, a in (cfg.get("added_tokens_decoder") or {}).items()}
    extra = sorted(i for i in added if i >= len(md["tokenizer.ggml.tokens"]))
    if not extra:
        return
    tokens = list(md["tokenizer.ggml.tokens"])
    types = list(md["tokenizer.ggml.token_type"])
    for i in range(len(tokens), extra[-1] + 1):
        a = added.get(i, {"content": f"[PAD{i}]", "special": False})
        tokens.append(a["content"])
        types.append(TYPE_CONTROL if a.get("special") else TYPE_USER_DEFINED)
        index.setdefault(a["content"], i)
    md["tokenizer.ggml.tokens"] = tokens
    md["tokenizer.ggml.token_type"] = np.array(types, np.int32)
    scores = md["tokenizer.ggml.scores"]
    md["tokenizer.ggml.scores"] = np.concatenate([scores, np.zeros(len(tokens) - len(scores), np.float32)])


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, json.JSONDecodeError) as e:
        raise ModelFormatError(f"cannot read {path}: {e}", "download the model again") from None


def _base_keys(model_dir: Path, cfg: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
    """The vocabulary: tokenizer.json when it is a byte-level BPE, else tokenizer.model."""
    tj = _read_json(model_dir / "tokenizer.json")
    model = tj.get("model") or {}
    if model.get("type") == "BPE" and not model.get("byte_fallback"):
        return _bpe_keys(tj)
    spm = model_dir / "tokenizer.model"
    if spm.is_file():
        try:
            md, index = _spm_keys(spm)
        except (ValueError, IndexError, KeyError) as e:
            raise ModelFormatError(f"cannot read {spm}: {e}", "download the model again") from None
        _add_spm_added_tokens(md, index, cfg)
        return md, index
    raise UnsupportedModelError(
        f"no supported tokenizer in {model_dir}", "need a byte-level BPE tokenizer.json or a SentencePiece tokenizer.model"
    )


def hf_tokenizer_metadata(model_dir: str | Path) -> dict[str, Any]:
    """GGUF tokenizer keys from a Hugging Face folder.

    The vocabulary comes from tokenizer.json (byte-level BPE, LLaMA-3 or GPT-2 split) or from a
    SentencePiece BPE tokenizer.model; special tokens, BOS/EOS and the chat template from
    tokenizer_config.json (falling back to config.json's ids).
    """
    model_dir = Path(model_dir)
    cfg = _read_json(model_dir / "tokenizer_config.json")
    md, index = _base_keys(model_dir, cfg)
    model_cfg = _read_json(model_dir / "config.json")
    for key in ("bos", "eos"):
        value = model_cfg.get(f"{key}_token_id")
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, int) and 0 <= value < len(md["tokenizer.ggml.tokens"]):
            md[f"tokenizer.ggml.{key}_token_id"] = value
    for key, name in (("bos", "bos_token"), ("eos", "eos_token"), ("padding", "pad_token"), ("unknown", "unk_token")):
        content = _token_content(cfg.get(name))
        if content is not None and content in index:
            md[f"tokenizer.ggml.{key}_token_id"] = index[content]
    if "<|eot_id|>" in index:
        md["tokenizer.ggml.eot_token_id"] = index["<|eot_id|>"]
    default_bos = md["tokenizer.ggml.model"] == "llama" or md.get("tokenizer.ggml.pre") == "llama-bpe"
    md["tokenizer.ggml.add_bos_token"] = bool(cfg.get("add_bos_token", default_bos))
    template = _chat_template(cfg, model_dir)
    if template:
        md["tokenizer.chat_template"] = template
    return md
