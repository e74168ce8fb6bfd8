"""The OpenAI-compatible API's shapes: request validation, response and chunk bodies, errors.

Pure functions with no HTTP or engine in them, so the rules are easy to test and to read.
"""
from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from bitnet_cli.errors import UserError
from bitnet_cli.sampling import SamplingParams

MAX_STOP = 16
ROLES = {"system", "user", "assistant", "developer", "tool"}
_UNSUPPORTED = ("tools", "functions", "tool_choice", "function_call")


class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message", "type"}}`` with an HTTP status."""

    TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
             405: "invalid_request_error", 408: "timeout_error", 413: "invalid_request_error",
             500: "server_error", 503: "unavailable_error"}

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param

    def body(self) -> dict[str, Any]:
        err = {"code": self.status, "message": self.message, "type": self.TYPES.get(self.status, "server_error")}
        if self.param:
            err["param"] = self.param
        return {"error": err}


@dataclass
class GenRequest:
    """A validated completion or chat request."""

    kind: str  # "chat" | "text"
    messages: list[dict[str, str]] = field(default_factory=list)
    prompt: str | list[int] = ""
    max_tokens: int = 0
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stop: list[str] = field(default_factory=list)
    stream: bool = False
    include_usage: bool = False
    logit_bias: dict[int, float] = field(default_factory=dict)
    ignore_eos: bool = False  # llama-server extension
    model: str = ""


def _bad(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param)


def _number(body: dict, key: str, default: float, kind: type = float) -> Any:
    v = body.get(key)
    if v is None:
        return default
    ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
    if not ok or (kind is int and int(v) != v):
        raise _bad(f"'{key}' must be {'an integer' if kind is int else 'a number'}", key)
    return kind(v)


def _sampling(body: dict, defaults: SamplingParams) -> SamplingParams:
    d = defaults
    try:
        return SamplingParams(
            temp=_number(body, "temperature", d.temp),
            top_k=_number(body, "top_k", d.top_k, int),
            top_p=_number(body, "top_p", d.top_p),
            min_p=_number(body, "min_p", d.min_p),
            repeat_penalty=_number(body, "repeat_penalty", d.repeat_penalty),
            repeat_last_n=_number(body, "repeat_last_n", d.repeat_last_n, int),
            presence_penalty=_number(body, "presence_penalty", d.presence_penalty),
            frequency_penalty=_number(body, "frequency_penalty", d.frequency_penalty),
            seed=_number(body, "seed", d.seed, int),
        )
    except UserError as e:
        raise _bad(e.message) from None


def _stop(body: dict) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise _bad("'stop' must be a string or a list of strings", "stop")
    if len(stop) > MAX_STOP:
        raise _bad(f"'stop' holds at most {MAX_STOP} strings", "stop")
    return [s for s in stop if s]


def _logit_bias(body: dict, vocab_size: int) -> dict[int, float]:
    lb = body.get("logit_bias")
    if lb is None:
        return {}
    if not isinstance(lb, dict):
        raise _bad("'logit_bias' must map token ids to numbers", "logit_bias")
    out = {}
    for k, v in lb.items():
        try:
            tid = int(k)
        except (TypeError, ValueError):
            raise _bad(f"logit_bias key '{k}' is not a token id", "logit_bias") from None
        if not 0 <= tid < vocab_size or isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
            raise _bad(f"logit_bias entry '{k}' is out of range", "logit_bias")
        out[tid] = float(max(-100.0, min(100.0, v)))
    return out


def _content(m: dict, i: int) -> str:
    c = m.get("content")
    if c is None:
        return ""
    if isinstance(c, str):
        return c
    if isinstance(c, list):
        parts = []
        for p in c:
            if not isinstance(p, dict) or p.get("type") != "text" or not isinstance(p.get("text"), str):
                raise _bad(f"messages[{i}].content: only text parts are supported", "messages")
            parts.append(p["text"])
        return "".join(parts)
    raise _bad(f"messages[{i}].content must be a string or a list of text parts", "messages")


def _messages(body: dict) -> list[dict[str, str]]:
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise _bad("'messages' must be a non-empty list", "messages")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise _bad(f"messages[{i}] needs a role ({', '.join(sorted(ROLES))})", "messages")
        role = "system" if m["role"] == "developer" else m["role"]
        out.append({"role": role, "content": _content(m, i)})
    return out


def _prompt(body: dict) -> str | list[int]:
    p = body.get("prompt")
    if isinstance(p, list) and len(p) == 1 and isinstance(p[0], (str, list)):
        p = p[0]
    if isinstance(p, str) and p:
        return p
    if isinstance(p, list) and p and all(isinstance(t, int) and not isinstance(t, bool) for t in p):
        return [int(t) for t in p]
    raise _bad("'prompt' must be a non-empty string (or a list of token ids)", "prompt")


def parse_request(body: Any, kind: str, *, defaults: SamplingParams, default_max_tokens: int,
                  max_tokens_limit: int, vocab_size: int) -> GenRequest:
    """Validate a JSON body for ``kind`` "chat" or "text"; raises ApiError(400) on any problem."""
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object")
    for key in _UNSUPPORTED:
        if body.get(key):
            raise _bad(f"'{key}' is not supported by this server", key)
    if _number(body, "n", 1, int) != 1:
        raise _bad("only n=1 is supported", "n")
    rf = body.get("response_format")
    if rf is not None and (not isinstance(rf, dict) or rf.get("type", "text") != "text"):
        raise _bad("only response_format type 'text' is supported", "response_format")
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _number(body, key, default_max_tokens, int)
    if body.get(key) is not None and max_tokens < 1:
        raise _bad(f"'{key}' must be at least 1", key)
    if max_tokens > max_tokens_limit:
        raise _bad(f"'{key}' is {max_tokens}; this server allows at most {max_tokens_limit}", key)
    opts = body.get("stream_options") or {}
    if not isinstance(opts, dict):
        raise _bad("'stream_options' must be an object", "stream_options")
    req = GenRequest(
        kind=kind, max_tokens=max_tokens, sampling=_sampling(body, defaults), stop=_stop(body),
        stream=bool(body.get("stream", False)), include_usage=bool(opts.get("include_usage", False)),
        logit_bias=_logit_bias(body, vocab_size), ignore_eos=bool(body.get("ignore_eos", False)),
        model=str(body.get("model") or ""),
    )
    if kind == "chat":
        req.messages = _messages(body)
    else:
        req.prompt = _prompt(body)
    return req


# -- responses -----------------------------------------------------------------------------------
def new_id(kind: str) -> str:
    return ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex[:24]


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def timings(r: Any, n_new_prompt: int) -> dict[str, float]:
    """llama-server's `timings` object, from the last GenerationResponse."""
    pms = 1000.0 * n_new_prompt / r.prompt_tps if r.prompt_tps > 0 else 0.0
    gen = max(r.generation_tokens - 1, 0)
    gms = 1000.0 * gen / r.generation_tps if r.generation_tps > 0 else 0.0
    return {"prompt_n": n_new_prompt, "prompt_ms": pms, "prompt_per_second": r.prompt_tps,
            "predicted_n": r.generation_tokens, "predicted_ms": gms, "predicted_per_second": r.generation_tps}


def completion_body(req: GenRequest, rid: str, model: str, text: str, finish: str | None,
                    prompt_tokens: int, completion_tokens: int, extra: dict | None = None) -> dict:
    """The non-streaming response for a chat or text completion."""
    if req.kind == "chat":
        choice = {"index": 0, "message": {"role": "assistant", "content": text},
                  "logprobs": None, "finish_reason": finish or "stop"}
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish or "stop"}
        obj = "text_completion"
    body = {"id": rid, "object": obj, "created": int(time.time()), "model": model,
            "choices": [choice], "usage": usage(prompt_tokens, completion_tokens)}
    body.update(extra or {})
    return body


def chunk_body(req: GenRequest, rid: str, model: str, *, text: str | None = None, role: bool = False,
               finish: str | None = None, created: int | None = None) -> dict:
    """One streaming chunk; chat chunks carry ``delta``, text chunks ``text``."""
    if req.kind == "chat":
        delta: dict[str, str] = {}
        if role:
            delta["role"] = "assistant"
            delta["content"] = ""
        if text:
            delta["content"] = text
        choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        obj = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
        obj = "text_completion"
    return {"id": rid, "object": obj, "created": created or int(time.time()), "model": model, "choices": [choice]}


def usage_chunk(req: GenRequest, rid: str, model: str, prompt_tokens: int, completion_tokens: int) -> dict:
    obj = "chat.completion.chunk" if req.kind == "chat" else "text_completion"
    return {"id": rid, "object": obj, "created": int(time.time()), "model": model, "choices": [],
            "usage": usage(prompt_tokens, completion_tokens)}
