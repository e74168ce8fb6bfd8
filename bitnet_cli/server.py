"""`bitnet serve`: an OpenAI-compatible HTTP server on the standard library.

``http.server.ThreadingHTTPServer``: one thread per connection, and generation serialised by
the engine's lock (see server_engine.py). No extra dependency, nothing to install, and the
only concurrency the engine can use anyway. Streaming uses SSE over chunked transfer encoding,
so connections stay alive between requests.
"""
from __future__ import annotations

import hmac
import json
import select
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from bitnet_cli.errors import BitnetError
from bitnet_cli.sampling import SamplingParams
from bitnet_cli.server_api import (
    ApiError,
    GenRequest,
    chunk_body,
    completion_body,
    new_id,
    parse_request,
    timings,
    usage_chunk,
)
from bitnet_cli.server_engine import Engine

DISCONNECT_CHECK_EVERY = 8  # tokens between checks that the client is still there


@dataclass
class ServerConfig:
    """Everything a request handler needs besides the engine."""

    alias: str = "bitnet"
    api_key: str | None = None
    cors_origins: str = "*"
    max_body: int = 1 << 20  # bytes
    default_max_tokens: int = -1
    max_tokens_limit: int = 1 << 20
    sampling: SamplingParams = field(default_factory=SamplingParams)
    read_timeout: float = 30.0
    verbose: bool = False
    created: int = field(default_factory=lambda: int(time.time()))


class BitnetHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], engine: Engine, config: ServerConfig) -> None:
        self.engine, self.config = engine, config
        super().__init__(address, Handler)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "bitnet-serve"
    server: BitnetHTTPServer
    _body_read = False  # per request: whether the body was consumed (else close the connection)

    # -- plumbing --------------------------------------------------------------------------------
    def setup(self) -> None:
        self.timeout = self.server.config.read_timeout  # applied to the socket by StreamRequestHandler
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        if self.server.config.verbose:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_OPTIONS(self) -> None:
        self.send_response(204)
        self._cors()
        self.send_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", "Authorization, Content-Type")
        self.send_header("Access-Control-Max-Age", "86400")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _dispatch(self, method: str) -> None:
        path = urlsplit(self.path).path.rstrip("/") or "/"
        self._body_read = False
        try:
            route = ROUTES.get(path)
            if route is None:
                raise ApiError(404, f"no such endpoint: {method} {path}")
            if method not in route:
                raise ApiError(405, f"{path} does not accept {method}")
            name, public = route[method]
            if not public:
                self._check_key()
            getattr(self, name)()
        except (ApiError, BitnetError) as e:  # BitnetError: e.g. a template rejecting the messages
            err = e if isinstance(e, ApiError) else ApiError(400, str(e))
            if err.status in (408, 413) or (method != "GET" and not self._body_read):
                self.close_connection = True  # an unread body may still be on the wire
            self._send_json(err.status, err.body())
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True
        except Exception as e:  # noqa: BLE001 - one bad request must not take the server down
            sys.stderr.write(f"Error: {type(e).__name__}: {e} (while serving {method} {path})\n")
            self.close_connection = True
            try:
                self._send_json(500, ApiError(500, "internal error").body())
            except OSError:
                pass

    def _check_key(self) -> None:
        key = self.server.config.api_key
        if not key:
            return
        auth = self.headers.get("Authorization", "")
        given = auth[7:].strip() if auth.lower().startswith("bearer ") else self.headers.get("X-Api-Key", "")
        if not hmac.compare_digest(given.encode(), key.encode()):
            raise ApiError(401, "invalid or missing API key (send 'Authorization: Bearer KEY')")

    def _cors(self) -> None:
        origins = self.server.config.cors_origins
        if origins:
            self.send_header("Access-Control-Allow-Origin", origins)

    def _send_json(self, status: int, body: Any) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self._cors()
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _read_json(self) -> Any:
        if self.headers.get("Transfer-Encoding", "identity").lower() != "identity":
            raise ApiError(400, "chunked request bodies are not supported; send Content-Length")
        try:
            n = int(self.headers.get("Content-Length", ""))
        except ValueError:
            n = -1
        if n < 0:
            raise ApiError(400, "a JSON body with a Content-Length header is required")
        limit = self.server.config.max_body
        if n > limit:
            raise ApiError(413, f"the request body is {n} bytes; this server accepts at most {limit}")
        try:
            data = self.rfile.read(n)
        except socket.timeout:
            raise ApiError(408, "timed out reading the request body") from None
        self._body_read = True
        if len(data) < n:
            raise ApiError(400, "the request body is incomplete")
        try:
            return json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ApiError(400, f"the request body is not valid JSON: {e}") from None

    def _client_gone(self) -> bool:
        """True when the peer closed its side (a readable socket with nothing to read)."""
        sock = self.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    # -- endpoints -------------------------------------------------------------------------------
    def get_health(self) -> None:
        engine = self.server.engine
        engine.require_ready()
        self._send_json(200, {"status": "ok"})

    def get_models(self) -> None:
        cfg, engine = self.server.config, self.server.engine
        entry: dict[str, Any] = {"id": cfg.alias, "object": "model", "created": cfg.created, "owned_by": "bitnet"}
        if engine.state == "ready":
            m = engine.model
            entry["meta"] = {"n_ctx": engine.n_ctx, "n_vocab": engine.vocab_size,
                             "n_ctx_train": getattr(m.config, "n_ctx_train", None),
                             "n_params": _safe(lambda: m.n_params), "size": _safe(lambda: m.file_size)}
        self._send_json(200, {"object": "list", "data": [entry]})

    def get_openapi(self) -> None:
        from bitnet_cli.server_openapi import openapi_schema

        self._send_json(200, openapi_schema())

    def post_chat(self) -> None:
        self._complete("chat")

    def post_text(self) -> None:
        self._complete("text")

    def _complete(self, kind: str) -> None:
        cfg, engine = self.server.config, self.server.engine
        engine.require_ready()
        body = self._read_json()
        req = parse_request(body, kind, defaults=cfg.sampling, default_max_tokens=cfg.default_max_tokens,
                            max_tokens_limit=min(cfg.max_tokens_limit, engine.n_ctx), vocab_size=engine.vocab_size)
        ids = engine.encode(req)
        with engine.slot():
            if self._client_gone():  # it gave up while queued
                self.close_connection = True
                return
            if req.stream:
                self._stream(req, ids)
            else:
                self._whole(req, ids)

    def _whole(self, req: GenRequest, ids: list[int]) -> None:
        engine, cfg = self.server.engine, self.server.config
        parts, last = [], None
        gen = engine.generate(req, ids)
        try:
            for i, r in enumerate(gen):
                parts.append(r.text)
                last = r
                if i % DISCONNECT_CHECK_EVERY == DISCONNECT_CHECK_EVERY - 1 and self._client_gone():
                    self.close_connection = True
                    return
        finally:
            gen.close()
        n_gen = last.generation_tokens if last else 0
        extra = {"timings": timings(last, len(ids) - getattr(last, "cached_tokens", 0))} if last else {}
        self._send_json(200, completion_body(req, new_id(req.kind), cfg.alias, "".join(parts),
                                             last.finish_reason if last else "length", len(ids), n_gen, extra))

    def _stream(self, req: GenRequest, ids: list[int]) -> None:
        engine, cfg = self.server.engine, self.server.config
        rid, created, alias = new_id(req.kind), int(time.time()), cfg.alias
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Accel-Buffering", "no")
        self.send_header("Transfer-Encoding", "chunked")
        self._cors()
        self.end_headers()
        if req.kind == "chat":
            self._event(chunk_body(req, rid, alias, role=True, created=created))
        last = None
        gen = engine.generate(req, ids)
        try:
            for i, r in enumerate(gen):
                last = r
                if r.text:
                    self._event(chunk_body(req, rid, alias, text=r.text, created=created))
                if i % DISCONNECT_CHECK_EVERY == DISCONNECT_CHECK_EVERY - 1 and self._client_gone():
                    raise BrokenPipeError
        except OSError:
            raise
        except Exception as e:  # noqa: BLE001 - the headers are sent: report it in the stream
            sys.stderr.write(f"Error: {type(e).__name__}: {e} (while streaming)\n")
            self._event({"error": ApiError(500, f"generation failed: {e}").body()["error"]})
            self._end_stream()
            self.close_connection = True
            return
        finally:
            gen.close()
        final = chunk_body(req, rid, alias, finish=last.finish_reason if last else "length", created=created)
        if last is not None:  # llama-server puts its timings on the last chunk
            final["timings"] = timings(last, len(ids) - getattr(last, "cached_tokens", 0))
        self._event(final)
        if req.include_usage:
            self._event(usage_chunk(req, rid, alias, len(ids), last.generation_tokens if last else 0))
        self._write_chunk(b"data: [DONE]\n\n")
        self._end_stream()

    def _event(self, obj: Any) -> None:
        self._write_chunk(b"data: " + json.dumps(obj, ensure_ascii=False).encode("utf-8") + b"\n\n")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def _safe(fn: Any) -> Any:
    try:
        return fn()
    except Exception:  # noqa: BLE001 - optional metadata
        return None


# path -> method -> (handler method, public: no API key needed)
ROUTES: dict[str, dict[str, tuple[str, bool]]] = {
    "/health": {"GET": ("get_health", True)},
    "/v1/health": {"GET": ("get_health", True)},
    "/openapi.json": {"GET": ("get_openapi", True)},
    "/v1/openapi.json": {"GET": ("get_openapi", True)},
    "/v1/models": {"GET": ("get_models", False)},
    "/models": {"GET": ("get_models", False)},
    "/v1/chat/completions": {"POST": ("post_chat", False)},
    "/chat/completions": {"POST": ("post_chat", False)},
    "/v1/completions": {"POST": ("post_text", False)},
    "/completions": {"POST": ("post_text", False)},
}


def start_server(engine: Engine, config: ServerConfig, host: str = "127.0.0.1", port: int = 8080,
                 load_in_background: bool = True, on_ready: Any = None) -> BitnetHTTPServer:
    """Bind the server and start loading the model; call ``serve_forever()`` on the result."""
    from bitnet_cli.errors import UserError

    try:
        httpd = BitnetHTTPServer((host, port), engine, config)
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}",
                        "pick another --port, or stop the program using it") from None

    def load() -> None:
        engine.load()
        if engine.state == "error":
            httpd.shutdown()
        elif on_ready is not None:
            on_ready()

    if load_in_background:
        threading.Thread(target=load, name="bitnet-load", daemon=True).start()
    else:
        engine.load()
    return httpd
