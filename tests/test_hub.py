"""`bitnet download` / `bitnet setup` against a prepared HF cache (offline) and a local fake hub.

Never touches the real network: the offline tests set HF_HUB_OFFLINE=1 over a cache built by
hand, and the online tests point HF_ENDPOINT at a stdlib HTTP server on 127.0.0.1 that speaks
the few hub routes `snapshot_download` uses (repo info, tree listing, HEAD/GET resolve).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from bitnet_cli import hub
from bitnet_cli.errors import DownloadError, UserError

SHA = "0123456789abcdef0123456789abcdef01234567"


def bitnet(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "BITNET_DEBUG"))}
    e.update({"NO_COLOR": "1", "COLUMNS": "200", "HF_HUB_DISABLE_TELEMETRY": "1", **env})
    return subprocess.run([sys.executable, "-m", "bitnet_cli", *args], capture_output=True, text=True, env=e, timeout=300)


def one_error_line(r: subprocess.CompletedProcess) -> str:
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error: ")]
    assert r.returncode == 1, r.stderr
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    return errors[0]


def make_cache(cache: Path, repo_id: str, files: dict[str, bytes]) -> Path:
    """The hub cache layout by hand: models--org--name/{refs/main, snapshots/<sha>/...}."""
    root = cache / ("models--" + repo_id.replace("/", "--"))
    snap = root / "snapshots" / SHA
    for name, data in files.items():
        (snap / name).parent.mkdir(parents=True, exist_ok=True)
        (snap / name).write_bytes(data)
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(SHA)
    return snap


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------
def test_registry_has_the_17_setup_env_repos_and_the_official_gguf():
    assert len(hub.SETUP_ENV_REPOS) == 17
    for repo in ("1bitLLM/bitnet_b1_58-large", "HF1BitLLM/Llama3-8B-1.58-100B-tokens",
                 "tiiuae/Falcon3-10B-Instruct-1.58bit", "microsoft/BitNet-b1.58-2B-4T",
                 "tiiuae/Falcon-E-3B-Instruct", "microsoft/bitnet-embedding-270m"):
        assert repo in hub.SETUP_ENV_REPOS
    gguf = hub.lookup("microsoft/bitnet-b1.58-2b-4t-GGUF")  # case-insensitive
    assert gguf is not None and gguf.kind == "gguf" and "*.gguf" in gguf.patterns
    for info in hub.REGISTRY.values():
        assert info.family and info.quant in ("i2_s", "tl1", "tl2")
        assert ("*.safetensors" in info.patterns) == (info.kind != "gguf")


def test_download_list_prints_registry():
    r = bitnet("download", "--list", env={})
    assert r.returncode == 0
    assert "microsoft/BitNet-b1.58-2B-4T-gguf" in r.stdout and "tiiuae/Falcon-E-1B-Base" in r.stdout


def test_resolve_model_local_path_and_bad_names(tmp_path):
    assert hub.resolve_model(tmp_path) == tmp_path
    with pytest.raises(UserError, match="no such file"):
        hub.resolve_model(str(tmp_path / "missing" / "deeper"))
    assert hub.looks_like_repo_id("microsoft/BitNet-b1.58-2B-4T")
    assert not hub.looks_like_repo_id("./models/x") and not hub.looks_like_repo_id("a/b/c")


# --------------------------------------------------------------------------------------------
# offline: a prepared cache
# --------------------------------------------------------------------------------------------
def test_offline_download_finds_the_cached_snapshot(tmp_path):
    snap = make_cache(tmp_path / "hub", "org/tiny-bitnet", {"config.json": b"{}", "model.safetensors": b"x"})
    r = bitnet("download", "org/tiny-bitnet", env={"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip().splitlines()[-1]) == snap


def test_offline_download_via_hf_home(tmp_path):
    snap = make_cache(tmp_path / "home" / "hub", "org/tiny-bitnet", {"config.json": b"{}"})
    path = hub.download("org/tiny-bitnet", cache_dir=tmp_path / "home" / "hub", offline=True)
    assert path == snap
    r = bitnet("download", "org/tiny-bitnet", "--offline", env={"HF_HOME": str(tmp_path / "home")})
    assert r.returncode == 0 and r.stdout.strip() == str(snap)


def test_offline_miss_is_one_line(tmp_path):
    r = bitnet("download", "org/absent", env={"HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    line = one_error_line(r)
    assert "not in the local cache" in line and "bitnet download org/absent" in line


def test_offline_miss_in_process_raises_download_error(tmp_path):
    with pytest.raises(DownloadError, match="offline"):
        hub.download("org/absent", cache_dir=tmp_path, offline=True)


# --------------------------------------------------------------------------------------------
# online: a fake hub on 127.0.0.1
# --------------------------------------------------------------------------------------------
class FakeHub:
    """Serves {repo_id: {path: bytes}} like the hub; repos in `gated` answer 403 GatedRepo."""

    def __init__(self, repos: dict[str, dict[str, bytes]], gated: tuple[str, ...] = ()) -> None:
        self.repos, self.gated, self.requests = repos, set(gated), []
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _handler(self) -> type:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def reply(self, code: int, body: bytes, headers: dict[str, str], head: bool) -> None:
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def route(self, head: bool) -> None:
                path = unquote(urlparse(self.path).path)
                fake.requests.append(path)
                for repo, files in fake.repos.items():
                    if repo in fake.gated and repo in path:
                        return self.reply(403, b"{}", {"X-Error-Code": "GatedRepo", "X-Error-Message": "gated"}, head)
                    if path.startswith((f"/api/models/{repo}/revision/", f"/api/models/{repo}/tree/")):
                        if "/revision/" in path:
                            body = {"id": repo, "sha": SHA, "siblings": [{"rfilename": f} for f in files]}
                        else:
                            body = [{"type": "file", "path": f, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                                    for f, b in files.items()]
                        return self.reply(200, json.dumps(body).encode(), {"Content-Type": "application/json"}, head)
                    if path.startswith(f"/{repo}/resolve/"):
                        name = path[len(f"/{repo}/resolve/"):].split("/", 1)[1]
                        if name not in files:
                            return self.reply(404, b"", {"X-Error-Code": "EntryNotFound"}, head)
                        data = files[name]
                        return self.reply(200, data, {"X-Repo-Commit": SHA, "ETag": f'"{hashlib.sha1(data).hexdigest()}"'}, head)
                return self.reply(404, b"{}", {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"}, head)

            def do_GET(self) -> None:  # noqa: N802
                self.route(False)

            def do_HEAD(self) -> None:  # noqa: N802
                self.route(True)

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def fake_hub():
    files = {"config.json": b'{"architectures": ["BitNetForCausalLM"]}', "model.safetensors": b"\0" * 4096,
             "tokenizer.json": b"{}", "README.md": b"# tiny", "pytorch_model.bin": b"\1" * 100}
    h = FakeHub({"org/tiny-bitnet": files, "org/gated-bitnet": {"config.json": b"{}"}}, gated=("org/gated-bitnet",))
    yield h
    h.close()


def test_online_download_uses_allow_patterns(fake_hub, tmp_path):
    r = bitnet("download", "org/tiny-bitnet", env={"HF_ENDPOINT": fake_hub.url, "HF_HUB_CACHE": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    snap = Path(r.stdout.strip().splitlines()[-1])
    assert snap == tmp_path / "models--org--tiny-bitnet" / "snapshots" / SHA
    assert sorted(p.name for p in snap.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    assert (snap / "model.safetensors").read_bytes() == b"\0" * 4096


def test_online_download_local_dir_and_include(fake_hub, tmp_path):
    out = tmp_path / "m"
    r = bitnet("download", "org/tiny-bitnet", "--local-dir", str(out), "--include", "*.md", "-q",
               env={"HF_ENDPOINT": fake_hub.url, "HF_HUB_CACHE": str(tmp_path / "c")})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(out.resolve())
    assert (out / "README.md").read_text() == "# tiny" and not (out / "config.json").exists()


@pytest.mark.parametrize("repo,expect", [
    ("org/no-such-repo", "was not found on the hub"),
    ("org/gated-bitnet", "gated repo"),
])
def test_online_errors_are_one_line(fake_hub, tmp_path, repo, expect):
    r = bitnet("download", repo, env={"HF_ENDPOINT": fake_hub.url, "HF_HUB_CACHE": str(tmp_path)})
    assert expect in one_error_line(r)


def test_missing_named_file_is_one_line(fake_hub, tmp_path):
    r = bitnet("download", "org/tiny-bitnet", "nope.gguf", env={"HF_ENDPOINT": fake_hub.url, "HF_HUB_CACHE": str(tmp_path)})
    assert "has no file nope.gguf" in one_error_line(r)


def test_no_network_is_one_line(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = bitnet("download", "org/tiny-bitnet", env={"HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HUB_CACHE": str(tmp_path)})
    assert "cannot reach the hub" in one_error_line(r)
