"""`bitnet serve` on a free localhost port, driven by the official `openai` client and raw HTTP."""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import openai
import pytest

from bitnet_cli.sampling import SamplingParams
from bitnet_cli.server import ServerConfig, start_server
from bitnet_cli.server_engine import Engine

try:
    from test_chat import EchoModel
except ImportError:  # tests/ made a package
    from tests.test_chat import EchoModel

KEY = "test-key"
LONG_REPLY = "abcdefghij" * 30


class SlowEcho(EchoModel):
    """EchoModel that takes a little while per step and notes overlapping forward calls."""

    def __init__(self, *a, delay=0.002, **kw):
        super().__init__(*a, **kw)
        self.delay, self.active, self.max_active = delay, 0, 0
        self.guard = threading.Lock()

    def forward(self, tokens, cache, last_only=True):
        with self.guard:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            time.sleep(self.delay)
            return super().forward(tokens, cache, last_only)
        finally:
            with self.guard:
                self.active -= 1


def _serve(engine, **cfg):
    config = ServerConfig(alias="tiny", api_key=KEY, max_body=8192, sampling=SamplingParams(temp=0), **cfg)
    httpd = start_server(engine, config, "127.0.0.1", 0, load_in_background=False)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return httpd


@pytest.fixture(scope="module")
def server():
    model = SlowEcho(n_ctx=256, reply="Hello there", delay=0.0)
    httpd = _serve(Engine(lambda: model))
    yield httpd, model
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def client(server):
    port = server[0].server_address[1]
    return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0, timeout=30)


def _raw(server, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", server[0].server_address[1], timeout=30)
    h = {"Authorization": f"Bearer {KEY}", **(headers or {})}
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
        h.setdefault("Content-Type", "application/json")
    conn.request(method, path, body=body, headers=h)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, dict(r.getheaders()), data


MSGS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def test_chat_completion(client):
    r = client.chat.completions.create(model="tiny", messages=MSGS)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == "Hello there"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens == 12 and r.usage.total_tokens == r.usage.prompt_tokens + 12
    assert r.model == "tiny"


def test_chat_stream(client):
    chunks = list(client.chat.completions.create(model="tiny", messages=MSGS, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello there"
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == ["stop"]
    assert chunks[-1].usage.completion_tokens == 12 and not chunks[-1].choices


def test_stream_ends_with_done(server):
    status, headers, data = _raw(server, "POST", "/v1/chat/completions", {"messages": MSGS, "stream": True})
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = [e for e in data.decode().split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    assert all(e.startswith("data: ") for e in events)
    final = json.loads(events[-2][6:])
    assert final["choices"][0]["finish_reason"] == "stop" and final["timings"]["predicted_n"] == 12


def test_max_tokens_and_stop(client):
    r = client.chat.completions.create(model="tiny", messages=MSGS, max_tokens=3)
    assert r.choices[0].message.content == "Hel" and r.choices[0].finish_reason == "length"
    r = client.chat.completions.create(model="tiny", messages=MSGS, stop=[" th"])
    assert r.choices[0].message.content == "Hello" and r.choices[0].finish_reason == "stop"


def test_text_completion(client):
    r = client.completions.create(model="tiny", prompt="Assistant: ", max_tokens=5)
    assert r.object == "text_completion" and r.choices[0].text == "Hello"
    assert r.choices[0].finish_reason == "length"
    chunks = list(client.completions.create(model="tiny", prompt="Assistant: ", max_tokens=5, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == "Hello"


def test_ignore_eos_runs_to_max_tokens(client):
    r = client.chat.completions.create(model="tiny", messages=MSGS, max_tokens=15, extra_body={"ignore_eos": True})
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 15


def test_logit_bias_and_sampling_fields(client, server):
    model = server[1]
    h_id = model.tokenizer.index["H"]
    r = client.chat.completions.create(model="tiny", messages=MSGS, max_tokens=1, logit_bias={str(h_id): -100})
    assert r.choices[0].message.content != "H"
    r = client.chat.completions.create(model="tiny", messages=MSGS, max_tokens=2, temperature=0.5, top_p=0.9,
                                       seed=3, presence_penalty=0.1, extra_body={"top_k": 5, "min_p": 0.1})
    assert r.choices[0].message.content == "He"  # a dominant logit survives every filter


def test_models_health_openapi(client, server):
    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny"]
    assert _raw(server, "GET", "/health", headers={"Authorization": ""})[0] == 200
    status, _, data = _raw(server, "GET", "/openapi.json")
    schema = json.loads(data)
    assert status == 200 and schema["openapi"].startswith("3.")
    assert {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health"} <= set(schema["paths"])


def test_prefix_reuse_across_requests(client, server):
    model = server[1]
    client.chat.completions.create(model="tiny", messages=MSGS)
    n = len(model.calls)
    follow = MSGS + [{"role": "assistant", "content": "Hello there"}, {"role": "user", "content": "More"}]
    client.chat.completions.create(model="tiny", messages=follow)
    prefill = "".join(model.tokenizer.vocab[t] for t in model.calls[n])
    assert prefill.startswith("<|eot_id|>User: More")  # the shared prefix came from the cache


@pytest.mark.parametrize("body,fragment", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ({"messages": []}, "non-empty list"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "needs a role"),
    ({"messages": MSGS, "temperature": "hot"}, "'temperature' must be a number"),
    ({"messages": MSGS, "temperature": -1}, "temperature must be >= 0"),
    ('{"messages": [{"role": "user", "content": "x"}], "top_k": NaN}', "'top_k' must be an integer"),
    ({"messages": MSGS, "seed": 1.5}, "'seed' must be an integer"),
    ({"messages": MSGS, "logit_bias": {"99999": 1}}, "out of range"),
    ({"prompt": "x"}, "non-empty list"),
    ({"messages": MSGS, "n": 2}, "only n=1"),
    ({"messages": MSGS, "max_tokens": 0}, "at least 1"),
    ({"messages": MSGS, "max_tokens": 100000}, "at most 256"),
    ({"messages": MSGS, "stop": 5}, "'stop' must be"),
    ({"messages": MSGS, "tools": [{"type": "function"}]}, "not supported"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "only text parts"),
    ({"messages": [{"role": "user", "content": "x" * 300}]}, "the context holds 256"),
])
def test_bad_requests_are_400(server, body, fragment):
    status, _, data = _raw(server, "POST", "/v1/chat/completions", body)
    err = json.loads(data)["error"]
    assert status == 400 and err["code"] == 400 and err["type"] == "invalid_request_error"
    assert fragment in err["message"]


def test_openai_client_sees_400(client):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x" * 300}])


def test_oversized_body_is_413(server):
    status, headers, data = _raw(server, "POST", "/v1/chat/completions", "x" * 20000,
                                 headers={"Content-Type": "application/json"})
    assert status == 413 and json.loads(data)["error"]["code"] == 413


def test_auth_routes_and_cors(server, client):
    port = server[0].server_address[1]
    bad = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="tiny", messages=MSGS)
    assert _raw(server, "GET", "/v1/nothing")[0] == 404
    assert _raw(server, "GET", "/v1/chat/completions")[0] == 405
    status, headers, _ = _raw(server, "OPTIONS", "/v1/chat/completions", headers={"Origin": "http://x"})
    assert status == 204 and headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in headers["Access-Control-Allow-Methods"]
    # Still healthy after all of that.
    assert client.chat.completions.create(model="tiny", messages=MSGS).choices[0].message.content == "Hello there"


def test_two_clients_at_once_queue():
    model = SlowEcho(n_ctx=512, reply=LONG_REPLY[:40], delay=0.003)
    httpd = _serve(Engine(lambda: model))
    port = httpd.server_address[1]
    results, errors = {}, []

    def ask(i, stream):
        try:
            c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0, timeout=60)
            if stream:
                chunks = c.chat.completions.create(model="tiny", messages=MSGS, stream=True)
                results[i] = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
            else:
                results[i] = c.chat.completions.create(model="tiny", messages=MSGS).choices[0].message.content
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=ask, args=(i, i % 2 == 0)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    httpd.shutdown()
    httpd.server_close()
    assert not errors
    assert results == {i: LONG_REPLY[:40] for i in range(3)}
    assert model.max_active == 1  # the engine ran one request at a time


def test_disconnect_mid_stream_frees_engine():
    model = SlowEcho(n_ctx=1024, reply=LONG_REPLY, delay=0.003)
    httpd = _serve(Engine(lambda: model))
    port = httpd.server_address[1]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/v1/chat/completions", body=json.dumps({"messages": MSGS, "stream": True}),
                 headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    resp.fp.readline()  # the first chunk arrived: generation is under way
    conn.sock.close()
    conn.close()
    c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0, timeout=60)
    r = c.chat.completions.create(model="tiny", messages=MSGS, max_tokens=2)
    httpd.shutdown()
    httpd.server_close()
    assert r.choices[0].message.content == "ab"
    # The abandoned reply (300 tokens) stopped long before its end.
    assert len(model.calls) < 150


def test_loading_is_503_then_ready():
    gate = threading.Event()

    def loader():
        gate.wait(30)
        return EchoModel()

    engine = Engine(loader)
    config = ServerConfig(alias="tiny", sampling=SamplingParams(temp=0))
    httpd = start_server(engine, config, "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    srv = (httpd,)
    try:
        status, _, data = _raw(srv, "GET", "/health")
        assert status == 503 and json.loads(data)["error"]["message"] == "Loading model"
        status, _, _ = _raw(srv, "POST", "/v1/chat/completions", {"messages": MSGS})
        assert status == 503
        gate.set()
        for _ in range(200):
            if engine.state != "loading":
                break
            time.sleep(0.01)
        assert _raw(srv, "GET", "/health")[0] == 200
    finally:
        gate.set()
        httpd.shutdown()
        httpd.server_close()


def test_load_failure_stops_server():
    from bitnet_cli.errors import ModelFormatError

    def loader():
        raise ModelFormatError("not a GGUF file", "check the path")

    engine = Engine(loader)
    httpd = start_server(engine, ServerConfig(), "127.0.0.1", 0)
    done = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    done.start()
    done.join(10)
    httpd.server_close()
    assert not done.is_alive() and engine.state == "error" and "not a GGUF" in str(engine.error)


def test_run_inference_server_script_maps_upstream_flags():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / "run_inference_server.py"
    spec = importlib.util.spec_from_file_location("run_inference_server", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    args = mod.build_parser().parse_args(["-m", "m.gguf", "-p", "Be nice", "--temperature", "0.2", "--port", "9000"])
    argv = mod.to_serve_args(args)
    assert argv[:3] == ["serve", "-m", "m.gguf"]
    pairs = dict(zip(argv[3::2], argv[4::2]))
    assert pairs == {"-n": "4096", "-t": "2", "-c": "2048", "--temp": "0.2", "--host": "127.0.0.1",
                     "--port": "9000", "--system-prompt": "Be nice"}
    from typer.testing import CliRunner

    from bitnet_cli.cli.app import app
    from bitnet_cli.errors import UserError

    r = CliRunner().invoke(app, [*argv[:-2], "-m", "/nonexistent/model.gguf"])
    assert isinstance(r.exception, UserError) and "no model file" in str(r.exception)


# -- on a real (tiny, random) model file -------------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_server(tiny_model):
    import bitnet_cli

    engine = Engine(lambda: bitnet_cli.load(tiny_model, n_ctx=128, threads=1))
    httpd = _serve(engine)
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_real_model_with_openai_client(tiny_server):
    port = tiny_server.server_address[1]
    c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0, timeout=120)
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    whole = c.chat.completions.create(model="tiny", messages=msgs, max_tokens=6, temperature=0)
    assert whole.choices[0].finish_reason in ("stop", "length")
    assert 1 <= whole.usage.completion_tokens <= 6 and whole.usage.prompt_tokens > 10
    chunks = list(c.chat.completions.create(model="tiny", messages=msgs, max_tokens=6, temperature=0, stream=True))
    streamed = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert streamed == whole.choices[0].message.content  # greedy: same text either way
    text = c.completions.create(model="tiny", prompt="Once upon a time", max_tokens=4, temperature=0)
    assert text.usage.completion_tokens <= 4 and text.choices[0].finish_reason in ("stop", "length")
    with pytest.raises(openai.BadRequestError):  # 128-token context
        c.completions.create(model="tiny", prompt="word " * 200, max_tokens=4)
    assert [m.id for m in c.models.list().data] == ["tiny"]


def test_missing_or_bad_content_length_is_400(server):
    port = server[0].server_address[1]
    for header in ("", "Content-Length: -5\r\n", "Content-Length: abc\r\n"):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                      f"{header}\r\n".encode())
            reply = b""
            while chunk := s.recv(4096):  # the server closes the connection after the error
                reply += chunk
            reply = reply.decode()
        assert reply.startswith("HTTP/1.1 400") and "Content-Length header is required" in reply


def test_port_in_use_is_user_error():
    from bitnet_cli.errors import UserError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(UserError, match="cannot listen on 127.0.0.1"):
            start_server(Engine(lambda: EchoModel()), ServerConfig(), "127.0.0.1", s.getsockname()[1])
