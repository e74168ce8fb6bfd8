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


# --------------------------------------------------------------------------------------------
# bitnet setup: download -> convert -> tune, from a prepared cache with no network
# --------------------------------------------------------------------------------------------
REPO_2B4T = "microsoft/BitNet-b1.58-2B-4T"


@pytest.fixture(scope="module")
def offline_cache(tmp_path_factory) -> Path:
    """An HF cache holding a tiny 2B-4T-layout checkpoint under the real repo id, and a GGUF repo."""
    import tiny_checkpoints as tc

    cache = tmp_path_factory.mktemp("hfcache")
    snap = make_cache(cache, REPO_2B4T, {})
    tc.write_checkpoint("bitnet-packed", snap)
    return cache


def test_setup_end_to_end_offline_then_skips(offline_cache, tmp_path):
    env = {"HF_HUB_CACHE": str(offline_cache), "HF_HUB_OFFLINE": "1"}
    args = ("setup", "-hr", REPO_2B4T, "-md", str(tmp_path / "models"), "-ld", str(tmp_path / "logs"), "-q", "i2_s", "-p")
    r = bitnet(*args, env=env)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "models" / "BitNet-b1.58-2B-4T" / "ggml-model-i2_s.gguf"
    assert r.stdout.strip() == str(out)
    from bitnet_cli.modelfile import open_model_file

    assert open_model_file(out).arch == "bitnet-b1.58"
    for step in ("download", "convert", "tune"):
        assert f"{step}" in r.stderr and (tmp_path / "logs" / f"{step}.log").stat().st_size > 0
    assert "skipped" not in r.stderr
    mtime = out.stat().st_mtime_ns
    again = bitnet(*args, env=env)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("already done, skipped") == 3
    assert out.stat().st_mtime_ns == mtime


def test_setup_with_a_model_in_hand_only_tunes(tmp_path, monkeypatch):
    """-m FILE: no download or convert; tuning writes its cache (redirected here) and warms up."""
    import tiny_checkpoints as tc
    from bitnet_cli.convert import convert_checkpoint
    from bitnet_cli.setup_pipeline import SetupPlan, run_setup
    import bitnet_kernels.tune as kt

    model = convert_checkpoint(tc.write_checkpoint("falcon-e", tmp_path / "ckpt"), tmp_path / "m.gguf")
    monkeypatch.setattr(kt, "cache_path", lambda: tmp_path / "tuned.json")
    lines: list[str] = []
    plan = SetupPlan(model=model, log_dir=tmp_path / "logs", threads=1)
    assert run_setup(plan, lines.append) == model
    assert len(lines) == 1 and lines[0].startswith("[1/1] tune") and "tuned for 1 threads" in lines[0]
    saved = json.loads((tmp_path / "tuned.json").read_text())
    keys = [k for host in saved["hosts"].values() for k in host]
    # The shapes the model runs: stacked Q/K/V (128+64+64 rows) and gate/up (2x384), and the head.
    assert any(k.startswith("i2_s|256x128|") for k in keys) and any(k.startswith("i2_s|768x128|") for k in keys)
    assert any(k.startswith("f16|") for k in keys)
    lines.clear()
    run_setup(plan, lines.append)
    assert "already done, skipped" in lines[0]


def test_setup_errors_are_one_line(offline_cache, tmp_path):
    env = {"HF_HUB_CACHE": str(offline_cache), "HF_HUB_OFFLINE": "1"}
    cases = [
        (("-hr", "microsoft/bitnet-embedding-270m"), "embedding model"),
        (("-hr", "org/not-cached"), "not in the local cache"),
        (("-hr", REPO_2B4T, "-q", "q4_0"), "unknown quant type"),
        (("-m", str(tmp_path / "none.gguf")), "no model file"),
        (("-md", str(tmp_path)), "no HF checkpoint"),
    ]
    for args, expect in cases:
        r = bitnet("setup", *args, "-ld", str(tmp_path / "logs"), "-md" if "-md" not in args else "--revision",
                   str(tmp_path / "models") if "-md" not in args else "main", env=env)
        assert expect in one_error_line(r), (args, r.stderr)


def test_setup_from_the_prebuilt_gguf_repo(tmp_path):
    """A GGUF repo is not converted: its file is placed at <model-dir>/<name>/ggml-model-i2_s.gguf."""
    import tiny_checkpoints as tc
    from bitnet_cli.convert import convert_checkpoint

    cache = tmp_path / "cache"
    snap = make_cache(cache, "microsoft/BitNet-b1.58-2B-4T-gguf", {"README.md": b"x"})
    src = convert_checkpoint(tc.write_checkpoint("bitnet-bf16", tmp_path / "ckpt"), snap / "ggml-model-i2_s.gguf")
    r = bitnet("setup", "-hr", "microsoft/BitNet-b1.58-2B-4T-gguf", "-md", str(tmp_path / "models"),
               "-ld", str(tmp_path / "logs"), "-p", env={"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr
    out = tmp_path / "models" / "BitNet-b1.58-2B-4T-gguf" / "ggml-model-i2_s.gguf"
    assert r.stdout.strip() == str(out) and out.read_bytes() == src.read_bytes()


def _script(name: str):  # noqa: ANN202
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "scripts" / name
    spec = importlib.util.spec_from_file_location(name.replace("-", "_")[:-3], path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_setup_env_script_mirrors_upstream_flags():
    mod = _script("setup_env.py")
    args = mod.parse_args(["-hr", "tiiuae/Falcon3-1B-Instruct-1.58bit", "-md", "m", "-ld", "l", "-q", "i2_s", "--quant-embd", "-p"])
    assert mod.to_cli(args) == ["setup", "-md", "m", "-ld", "l", "-q", "i2_s", "-hr", "tiiuae/Falcon3-1B-Instruct-1.58bit",
                                "--quant-embd", "--use-pretuned"]
    with pytest.raises(SystemExit):
        mod.parse_args(["-hr", "someone/else"])  # upstream restricts -hr to its 17 repos


def test_convert_helper_script_writes_i2s_next_to_the_checkpoint(tmp_path):
    import tiny_checkpoints as tc
    from bitnet_cli.modelfile import GGMLType, open_model_file

    src = tc.write_checkpoint("bitnet-bf16", tmp_path / "m")
    before = sorted(p.name for p in src.iterdir())
    r = subprocess.run([sys.executable, str(Path(__file__).resolve().parent.parent / "scripts" / "convert-helper-bitnet.py"),
                        str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = src / "ggml-model-i2s-bitnet.gguf"
    assert open_model_file(out).tensors["blk.0.attn_q.weight"].ggml_type == GGMLType.I2_S
    assert sorted(p.name for p in src.iterdir()) == sorted(before + [out.name])  # checkpoint untouched


def test_setup_online_through_the_fake_hub(tmp_path):
    """download (HTTP) -> convert -> tune, with HF_ENDPOINT on 127.0.0.1."""
    import tiny_checkpoints as tc

    src = tc.write_checkpoint("falcon-e", tmp_path / "src")
    files = {p.name: p.read_bytes() for p in src.iterdir()}
    hub_ = FakeHub({"tiiuae/Falcon-E-1B-Instruct": {**files, "onebitllms.bin": b"\0"}})
    try:
        r = bitnet("setup", "-hr", "tiiuae/Falcon-E-1B-Instruct", "-md", str(tmp_path / "models"),
                   "-ld", str(tmp_path / "logs"), "-p", env={"HF_ENDPOINT": hub_.url, "HF_HUB_CACHE": str(tmp_path / "c")})
    finally:
        hub_.close()
    assert r.returncode == 0, r.stderr
    out = tmp_path / "models" / "Falcon-E-1B-Instruct" / "ggml-model-i2_s.gguf"
    assert r.stdout.strip() == str(out)
    assert any(p.endswith("/resolve/" + SHA + "/model.safetensors") for p in hub_.requests)
    assert not any(p.endswith("onebitllms.bin") for p in hub_.requests)  # outside the allow patterns
