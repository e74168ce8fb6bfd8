"""HF tokenizer files → GGUF tokenizer metadata (used when bitnet_cli.tokenizer lacks it).

`tokenizer.json` with a BPE model → `gpt2` (byte-level BPE) with the pre-tokenizer named as
llama.cpp names it; `tokenizer.model` (SentencePiece) → `llama`. The chat template comes from
`tokenizer_config.json`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bitnet_cli.errors import ModelFormatError, UnsupportedModelError

# llama.cpp token types
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# Distinctive fragments of the pre-tokenizer split regex -> llama.cpp `tokenizer.ggml.pre`.
_PRE_BY_REGEX = (
    ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}", "llama-bpe"),
    ("[\\p{P}\\$\\+<=>\\^~\\|`]+", "falcon3"),
    ("'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+", "gpt-2"),
)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ModelFormatError(f"cannot read {path.name}: {e}", "re-download the tokenizer files") from e


def _pre_name(tok: dict[str, Any]) -> str:
    raw = json.dumps(tok.get("pre_tokenizer") or {}, ensure_ascii=False)
    for fragment, name in _PRE_BY_REGEX:
        if json.dumps(fragment)[1:-1] in raw:
            return name
    return "default"


def _special_ids(src: Path, tok_cfg: dict[str, Any], vocab: dict[str, int]) -> dict[str, Any]:
    config = _read_json(src / "config.json") if (src / "config.json").is_file() else {}
    out: dict[str, Any] = {}
    for key, gguf_key in (("bos", "bos_token_id"), ("eos", "eos_token_id"), ("pad", "padding_token_id")):
        tok = tok_cfg.get(f"{key}_token")
        if isinstance(tok, dict):
            tok = tok.get("content")
        tid = vocab.get(tok) if isinstance(tok, str) else None
        if tid is None:
            cid = config.get(f"{key}_token_id")
            tid = cid[0] if isinstance(cid, list) and cid else cid
        if isinstance(tid, int):
            out[f"tokenizer.ggml.{gguf_key}"] = tid
    return out


def _add_bos(tok: dict[str, Any], tok_cfg: dict[str, Any]) -> bool:
    if "add_bos_token" in tok_cfg:
        return bool(tok_cfg["add_bos_token"])
    post = json.dumps(tok.get("post_processor") or {})
    return "TemplateProcessing" in post or "bos" in post.lower()


def _bpe(src: Path, tok_cfg: dict[str, Any]) -> dict[str, Any]:
    tok = _read_json(src / "tokenizer.json")
    model = tok.get("model") or {}
    if model.get("type") != "BPE":
        raise UnsupportedModelError(f"tokenizer model '{model.get('type')}' is not supported", "expected a BPE tokenizer.json")
    vocab: dict[str, int] = dict(model["vocab"])
    added = {a["content"]: a for a in tok.get("added_tokens", [])}
    for content, a in added.items():
        vocab[content] = int(a["id"])
    n = max(vocab.values()) + 1
    tokens = [f"[PAD{i}]" for i in range(n)]
    types = np.full(n, UNUSED, dtype=np.int32)
    for text, i in vocab.items():
        tokens[i] = text
        a = added.get(text)
        types[i] = NORMAL if a is None else (CONTROL if a.get("special") else USER_DEFINED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    md: dict[str, Any] = {
        "tokenizer.ggml.add_bos_token": _add_bos(tok, tok_cfg),
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": _pre_name(tok),
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.scores": np.zeros(n, dtype=np.float32),
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.merges": merges,
    }
    md.update(_special_ids(src, tok_cfg, vocab))
    return md


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    v = shift = 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return v, i


def _fields(buf: bytes):  # noqa: ANN202 - yields (field number, wire type, value)
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(buf, i)
        elif wire == 1:
            v, i = buf[i : i + 8], i + 8
        elif wire == 2:
            n, i = _varint(buf, i)
            v, i = buf[i : i + n], i + n
        elif wire == 5:
            v, i = buf[i : i + 4], i + 4
        else:
            raise ModelFormatError("tokenizer.model is not a SentencePiece model")
        yield field, wire, v


def _spm(src: Path, tok_cfg: dict[str, Any]) -> dict[str, Any]:
    """SentencePiece ModelProto: field 1 = pieces {1: piece, 2: score, 3: type}."""
    tokens, scores, types = [], [], []
    sp_type = {1: NORMAL, 2: UNKNOWN, 3: CONTROL, 4: USER_DEFINED, 5: UNUSED, 6: BYTE}
    for field, wire, v in _fields((src / "tokenizer.model").read_bytes()):
        if field != 1 or wire != 2:
            continue
        piece, score, kind = "", 0.0, 1
        for f2, _, v2 in _fields(v):
            if f2 == 1:
                piece = v2.decode("utf-8")
            elif f2 == 2:
                score = float(np.frombuffer(v2, "<f4")[0])
            elif f2 == 3:
                kind = int(v2)
        tokens.append(piece)
        scores.append(score)
        types.append(sp_type.get(kind, NORMAL))
    vocab = {t: i for i, t in enumerate(tokens)}
    md: dict[str, Any] = {
        "tokenizer.ggml.add_bos_token": bool(tok_cfg.get("add_bos_token", True)),
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.scores": np.asarray(scores, dtype=np.float32),
        "tokenizer.ggml.token_type": np.asarray(types, dtype=np.int32),
    }
    md.update(_special_ids(src, tok_cfg, vocab))
    return md


def chat_template(tok_cfg: dict[str, Any], src: Path) -> str | None:
    """The chat template of tokenizer_config.json (or chat_template.jinja), default variant."""
    tmpl = tok_cfg.get("chat_template")
    if isinstance(tmpl, list):
        named = {t.get("name"): t.get("template") for t in tmpl if isinstance(t, dict)}
        tmpl = named.get("default") or next(iter(named.values()), None)
    if not tmpl and (src / "chat_template.jinja").is_file():
        tmpl = (src / "chat_template.jinja").read_text(encoding="utf-8")
    return tmpl or None


def tokenizer_metadata_from_hf(model_dir: str | Path) -> dict[str, Any]:
    """GGUF `tokenizer.*` keys for a HF model folder."""
    src = Path(model_dir)
    cfg_path = src / "tokenizer_config.json"
    tok_cfg = _read_json(cfg_path) if cfg_path.is_file() else {}
    if (src / "tokenizer.model").is_file():
        md = _spm(src, tok_cfg)
    elif (src / "tokenizer.json").is_file():
        md = _bpe(src, tok_cfg)
    else:
        raise ModelFormatError(f"no tokenizer.json or tokenizer.model in {src}", "download the model's tokenizer files")
    tmpl = chat_template(tok_cfg, src)
    if tmpl:
        md["tokenizer.chat_template"] = tmpl
    return md
