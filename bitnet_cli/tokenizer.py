"""Tokenizers from GGUF metadata on the `tokenizers` library, and a streaming detokenizer.

Two vocabulary kinds, as llama.cpp reads them:
* `gpt2` — byte-level BPE from `tokenizer.ggml.tokens` + `.merges`. The split regex comes from
  `tokenizer.ggml.pre`: `llama-bpe` (and `llama3`, `falcon3`, `falcon_e`, as llama.cpp maps them)
  use LLaMA-3's regex with whole-word vocabulary matches first; `gpt-2`/`default` use GPT-2's.
  When the key is absent (the official 2B-4T file) we use LLaMA-3's regex, which reproduces
  Hugging Face's token ids for that model; llama.cpp would fall back to its default split.
* `llama` — SentencePiece BPE: merges are rebuilt from the token scores (higher score merges
  first, llama.cpp's rule), `▁` for spaces, a space prepended to each text run, `<0xXX>` bytes.

Text is decoded from each token's raw bytes, so `decode` and the streaming detokenizer agree.
"""
from __future__ import annotations

import codecs
from enum import IntEnum
from functools import lru_cache
from typing import Any, Mapping, Sequence

from bitnet_cli.errors import ModelFormatError, UnsupportedModelError

__all__ = [
    "Tokenizer",
    "StreamingDetokenizer",
    "TokenType",
    "build_dummy_tokenizer_metadata",
    "tokenizer_metadata_from_hf",
]

# LLaMA-3's pre-tokenizer split (tokenizer.json of Meta-Llama-3 and BitNet b1.58 2B-4T).
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_PRES = frozenset({"llama-bpe", "llama3", "llama-v3", "falcon3", "falcon_e", "falcon-h1"})
GPT2_PRES = frozenset({"gpt-2", "default"})
# Tokens that end a turn besides EOS (llama.cpp's end-of-generation set, by name).
END_OF_TURN_NAMES = ("<|eot_id|>", "<|im_end|>", "<|end_of_text|>", "<|endoftext|>", "<end_of_turn>", "<|eom_id|>")
SPM_SPACE = "\u2581"


class TokenType(IntEnum):
    """`tokenizer.ggml.token_type` values."""

    NORMAL = 1
    UNKNOWN = 2
    CONTROL = 3
    USER_DEFINED = 4
    UNUSED = 5
    BYTE = 6


@lru_cache(maxsize=1)
def byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet: printable character -> byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def _array(md: Mapping[str, Any], key: str) -> list[Any] | None:
    value = md.get(key)
    return None if value is None else list(value)


def _opt_id(md: Mapping[str, Any], key: str, n_vocab: int) -> int | None:
    value = md.get(key)
    if value is None:
        return None
    value = int(value)
    return value if 0 <= value < n_vocab else None


class Tokenizer:
    """Encode/decode with a vocabulary read from GGUF metadata (see the module docstring)."""

    def __init__(self, md: Mapping[str, Any]) -> None:
        self.model = str(md.get("tokenizer.ggml.model", ""))
        tokens = _array(md, "tokenizer.ggml.tokens")
        if not tokens:
            raise ModelFormatError("the model file has no vocabulary (tokenizer.ggml.tokens)", "convert the model again")
        self.tokens: list[str] = [str(t) for t in tokens]
        n = len(self.tokens)
        types = _array(md, "tokenizer.ggml.token_type")
        self.token_types: list[int] = [int(t) for t in types] if types is not None else [TokenType.NORMAL] * n
        if len(self.token_types) != n:
            raise ModelFormatError(
                "tokenizer.ggml.token_type and tokenizer.ggml.tokens differ in length", "convert the model again"
            )
        self.pre = md.get("tokenizer.ggml.pre")
        self.bos_id = _opt_id(md, "tokenizer.ggml.bos_token_id", n)
        self.eos_id = _opt_id(md, "tokenizer.ggml.eos_token_id", n)
        self.chat_template: str | None = md.get("tokenizer.chat_template")
        default_bos = self.model == "llama" or self.pre is None or self.pre in LLAMA3_PRES
        self.add_bos = bool(md.get("tokenizer.ggml.add_bos_token", default_bos)) and self.bos_id is not None
        self.add_space_prefix = bool(md.get("tokenizer.ggml.add_space_prefix", True))
        # token -> id; the first id wins when a vocabulary repeats a string
        self._index: dict[str, int] = {t: i for i, t in reversed(list(enumerate(self.tokens)))}
        if self.model == "gpt2":
            self._tok = self._build_gpt2(md)
        elif self.model == "llama":
            self._tok = self._build_spm(md)
        else:
            raise UnsupportedModelError(
                f"tokenizer type '{self.model or '?'}' is not supported",
                "supported: gpt2 (byte-level BPE), llama (SentencePiece)",
            )
        self._special = frozenset(
            i for i, t in enumerate(self.token_types) if t in (TokenType.CONTROL, TokenType.UNKNOWN, TokenType.UNUSED)
        )
        self.eos_ids: frozenset[int] = self._end_ids(md)
        self._bytes_cache: dict[int, bytes] = {}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> "Tokenizer":
        """Build the tokenizer a GGUF file describes."""
        return cls(metadata)

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def _end_ids(self, md: Mapping[str, Any]) -> frozenset[int]:
        ids = {self.eos_id, _opt_id(md, "tokenizer.ggml.eot_token_id", self.vocab_size)}
        ids.add(_opt_id(md, "tokenizer.ggml.eom_token_id", self.vocab_size))
        ids.update(self._index.get(name) for name in END_OF_TURN_NAMES)
        return frozenset(i for i in ids if i is not None)

    def _added_tokens(self) -> list[Any]:
        from tokenizers import AddedToken

        kinds = (TokenType.CONTROL, TokenType.USER_DEFINED, TokenType.UNKNOWN)
        return [
            AddedToken(tok, special=self.token_types[i] != TokenType.USER_DEFINED, normalized=False)
            for i, tok in enumerate(self.tokens)
            if self.token_types[i] in kinds and tok
        ]

    def _build_gpt2(self, md: Mapping[str, Any]) -> Any:
        from tokenizers import Regex
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import models, pre_tokenizers

        merges = [tuple(m.split(" ", 1)) for m in _array(md, "tokenizer.ggml.merges") or []]
        llama3 = self.pre is None or self.pre in LLAMA3_PRES
        if not llama3 and self.pre not in GPT2_PRES:
            raise UnsupportedModelError(
                f"pre-tokenizer '{self.pre}' is not supported", "supported: llama-bpe, falcon3, falcon_e, gpt-2, default"
            )
        try:
            tok = HFTokenizer(models.BPE(self._index, merges, ignore_merges=llama3))
        except Exception as e:  # the library reports bad merges as a plain Exception
            raise ModelFormatError(f"the vocabulary's merges are inconsistent ({e})", "convert the model again") from None
        if llama3:
            tok.pre_tokenizer = pre_tokenizers.Sequence(
                [
                    pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
                ]
            )
        else:
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.add_special_tokens(self._added_tokens())
        return tok

    def _build_spm(self, md: Mapping[str, Any]) -> Any:
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import models, normalizers

        scores = _array(md, "tokenizer.ggml.scores") or [0.0] * self.vocab_size
        vocab = self._index
        merges = _spm_merges(self.tokens, [float(s) for s in scores], self.token_types, vocab)
        unk_id = _opt_id(md, "tokenizer.ggml.unknown_token_id", self.vocab_size)
        unk = self.tokens[unk_id] if unk_id is not None else ("<unk>" if "<unk>" in vocab else None)
        tok = HFTokenizer(models.BPE(vocab, merges, unk_token=unk, fuse_unk=True, byte_fallback=True))
        steps = [normalizers.Replace(" ", SPM_SPACE)]
        if self.add_space_prefix:
            steps.insert(0, normalizers.Prepend(SPM_SPACE))
        tok.normalizer = normalizers.Sequence(steps)
        tok.add_special_tokens(self._added_tokens())
        return tok

    def encode(self, text: str, add_bos: bool | None = None) -> list[int]:
        """Token ids of `text`; special tokens written in the text are recognised.

        `add_bos=None` follows the file's `tokenizer.ggml.add_bos_token`.
        """
        ids = self._tok.encode(text, add_special_tokens=False).ids if text else []
        if (self.add_bos if add_bos is None else add_bos) and self.bos_id is not None:
            ids = [self.bos_id] + ids
        return ids

    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes token `token_id` stands for (control tokens: their text)."""
        cached = self._bytes_cache.get(token_id)
        if cached is not None:
            return cached
        tok = self.tokens[token_id]
        ttype = self.token_types[token_id]
        if ttype in (TokenType.CONTROL, TokenType.USER_DEFINED, TokenType.UNKNOWN, TokenType.UNUSED):
            out = tok.encode("utf-8")
        elif self.model == "gpt2":
            dec = byte_decoder()
            out = bytes(dec[c] for c in tok) if all(c in dec for c in tok) else tok.encode("utf-8")
        elif ttype == TokenType.BYTE or (len(tok) == 6 and tok.startswith("<0x") and tok.endswith(">")):
            out = bytes([int(tok[3:5], 16)])
        else:
            out = tok.replace(SPM_SPACE, " ").encode("utf-8")
        self._bytes_cache[token_id] = out
        return out

    def is_special(self, token_id: int) -> bool:
        """Control, unknown and unused tokens (what `skip_special` leaves out)."""
        return token_id in self._special

    def decode(self, ids: Sequence[int], skip_special: bool = False) -> str:
        """Text of `ids` (invalid UTF-8 becomes U+FFFD)."""
        det = self.detokenizer(skip_special=skip_special)
        return "".join(det.add(int(i)) for i in ids) + det.flush()

    def detokenizer(self, skip_special: bool = False) -> "StreamingDetokenizer":
        """A detokenizer whose pieces never split a UTF-8 character; their concatenation is decode()."""
        return StreamingDetokenizer(self, skip_special)


class StreamingDetokenizer:
    """Turns token ids into text as they arrive, holding back incomplete UTF-8 sequences."""

    def __init__(self, tokenizer: Tokenizer, skip_special: bool = False) -> None:
        self._tok = tokenizer
        self._skip = skip_special
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        # SentencePiece prepends a space to text; after BOS that space is not part of the text.
        self._strip_space = False

    def add(self, token_id: int) -> str:
        """Feed one token; returns the newly completed text (possibly empty)."""
        tok = self._tok
        if token_id == tok.bos_id and tok.model == "llama" and tok.add_space_prefix:
            self._strip_space = True
        if self._skip and tok.is_special(token_id):
            return ""
        raw = tok.token_bytes(token_id)
        if self._strip_space and not tok.is_special(token_id):
            self._strip_space = False
            raw = raw[1:] if raw.startswith(b" ") else raw
        return self._utf8.decode(raw)

    def flush(self) -> str:
        """Whatever is held back (an incomplete character becomes U+FFFD); resets the decoder."""
        out = self._utf8.decode(b"", final=True)
        self._utf8.reset()
        return out


def _spm_merges(
    tokens: list[str], scores: list[float], types: list[int], vocab: dict[str, int]
) -> list[tuple[str, str]]:
    """BPE merges implied by a SentencePiece vocabulary: pieces with higher scores merge first."""
    ranked: list[tuple[float, int, str, str]] = []
    for i, piece in enumerate(tokens):
        if types[i] not in (TokenType.NORMAL, TokenType.USER_DEFINED) or len(piece) < 2:
            continue
        for k in range(1, len(piece)):
            left, right = piece[:k], piece[k:]
            if left in vocab and right in vocab:
                ranked.append((-scores[i], vocab[left], left, right))
    ranked.sort(key=lambda r: (r[0], r[1]))
    return [(left, right) for _, _, left, right in ranked]


def build_dummy_tokenizer_metadata(n_vocab: int, *, official: bool = False) -> dict[str, Any]:
    """GGUF tokenizer keys of a small byte-level BPE padded to `n_vocab` tokens, with BOS/EOS/EOT
    and a chat template (see bitnet_cli.modelfile.tokenizer_keys)."""
    from bitnet_cli.modelfile.tokenizer_keys import dummy_tokenizer_metadata

    return dummy_tokenizer_metadata(n_vocab, official=official)


def tokenizer_metadata_from_hf(model_dir: Any) -> dict[str, Any]:
    """GGUF tokenizer keys from a Hugging Face model folder (tokenizer.json / tokenizer.model)."""
    from bitnet_cli.modelfile.tokenizer_keys import hf_tokenizer_metadata

    return hf_tokenizer_metadata(model_dir)
