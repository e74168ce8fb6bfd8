"""The OpenAPI 3.1 description `bitnet serve` answers at /openapi.json."""
from __future__ import annotations

from typing import Any

_NUM = {"type": "number"}
_INT = {"type": "integer"}

_SAMPLING = {
    "model": {"type": "string", "description": "Ignored: the server runs one model."},
    "max_tokens": {**_INT, "minimum": 1, "description": "Tokens to generate (default: the server's -n)."},
    "max_completion_tokens": {**_INT, "minimum": 1, "description": "Alias of max_tokens."},
    "temperature": {**_NUM, "minimum": 0, "description": "0 = greedy."},
    "top_p": {**_NUM, "exclusiveMinimum": 0, "maximum": 1},
    "top_k": {**_INT, "minimum": 0, "description": "0 = off (llama.cpp extension)."},
    "min_p": {**_NUM, "minimum": 0, "maximum": 1, "description": "llama.cpp extension."},
    "repeat_penalty": {**_NUM, "exclusiveMinimum": 0, "description": "llama.cpp extension; 1 = off."},
    "repeat_last_n": {**_INT, "minimum": -1, "description": "llama.cpp extension."},
    "presence_penalty": {**_NUM, "minimum": -2, "maximum": 2},
    "frequency_penalty": {**_NUM, "minimum": -2, "maximum": 2},
    "seed": {**_INT, "minimum": -1},
    "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 16}]},
    "stream": {"type": "boolean"},
    "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
    "logit_bias": {"type": "object", "additionalProperties": {**_NUM, "minimum": -100, "maximum": 100}},
    "n": {**_INT, "enum": [1]},
    "ignore_eos": {"type": "boolean", "description": "llama.cpp extension: keep going past end-of-turn tokens."},
}

_MESSAGE = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
        "content": {"oneOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "object", "required": ["type", "text"],
                                        "properties": {"type": {"const": "text"}, "text": {"type": "string"}}}},
            {"type": "null"},
        ]},
    },
}

_USAGE = {"type": "object", "properties": {k: _INT for k in ("prompt_tokens", "completion_tokens", "total_tokens")}}

_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "object", "properties": {
        "code": _INT, "message": {"type": "string"}, "type": {"type": "string"}, "param": {"type": "string"}}}},
}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "Bad request body or fields", 401: "Missing or wrong API key", 413: "Body too large",
            500: "Server error", 503: "Model loading or server busy"}
    return {str(c): {"description": text[c], "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            for c in codes}


def _post(summary: str, request: str, response: str) -> dict[str, Any]:
    return {"post": {
        "summary": summary,
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{request}"}}}},
        "responses": {
            "200": {"description": "The completion, or an SSE stream of chunks ending in `data: [DONE]` when stream=true",
                    "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{response}"}},
                                "text/event-stream": {"schema": {"type": "string"}}}},
            **_errors(400, 401, 413, 500, 503),
        },
    }}


def openapi_schema() -> dict[str, Any]:
    """The schema as a JSON-ready dict."""
    from bitnet_cli import __version__

    chat = {"type": "object", "required": ["messages"],
            "properties": {"messages": {"type": "array", "minItems": 1, "items": _MESSAGE}, **_SAMPLING}}
    text = {"type": "object", "required": ["prompt"],
            "properties": {"prompt": {"oneOf": [{"type": "string"}, {"type": "array", "items": _INT}]}, **_SAMPLING}}
    chat_resp = {"type": "object", "properties": {
        "id": {"type": "string"}, "object": {"const": "chat.completion"}, "created": _INT, "model": {"type": "string"},
        "choices": {"type": "array", "items": {"type": "object", "properties": {
            "index": _INT, "message": {"type": "object", "properties": {"role": {"const": "assistant"}, "content": {"type": "string"}}},
            "finish_reason": {"type": "string", "enum": ["stop", "length"]}}}},
        "usage": _USAGE, "timings": {"type": "object"}}}
    text_resp = {"type": "object", "properties": {
        "id": {"type": "string"}, "object": {"const": "text_completion"}, "created": _INT, "model": {"type": "string"},
        "choices": {"type": "array", "items": {"type": "object", "properties": {
            "index": _INT, "text": {"type": "string"}, "finish_reason": {"type": "string", "enum": ["stop", "length"]}}}},
        "usage": _USAGE, "timings": {"type": "object"}}}
    models = {"type": "object", "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": {
        "type": "object", "properties": {"id": {"type": "string"}, "object": {"const": "model"}, "created": _INT,
                                         "owned_by": {"type": "string"}, "meta": {"type": "object"}}}}}}
    ok = {"type": "object", "properties": {"status": {"const": "ok"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "bitnet serve", "version": __version__,
                 "description": "OpenAI-compatible API for BitNet b1.58 models on the CPU."},
        "components": {
            "schemas": {"ChatRequest": chat, "CompletionRequest": text, "ChatCompletion": chat_resp,
                        "TextCompletion": text_resp, "ModelList": models, "Health": ok, "Error": _ERROR},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "Only when the server was started with --api-key."}},
        },
        "security": [{"bearer": []}, {}],
        "paths": {
            "/v1/chat/completions": _post("Chat completion", "ChatRequest", "ChatCompletion"),
            "/v1/completions": _post("Text completion", "CompletionRequest", "TextCompletion"),
            "/v1/models": {"get": {"summary": "The served model", "responses": {
                "200": {"description": "Model list", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ModelList"}}}},
                **_errors(401)}}},
            "/health": {"get": {"summary": "Readiness", "security": [], "responses": {
                "200": {"description": "Ready", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}},
                **_errors(500, 503)}}},
            "/openapi.json": {"get": {"summary": "This schema", "security": [],
                                      "responses": {"200": {"description": "OpenAPI document"}}}},
        },
    }
