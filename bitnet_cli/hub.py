"""Models from the Hugging Face hub: the registry of supported repos and cached downloads.

Downloads go through `huggingface_hub.snapshot_download`, so the HF cache and its environment
variables (`HF_HOME`, `HF_HUB_CACHE`, `HF_TOKEN`, `HF_HUB_OFFLINE`, `HF_ENDPOINT`) behave as in
every other HF tool. Every hub failure becomes one `DownloadError` line that says what to do.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bitnet_cli.errors import DownloadError, UserError

# What a checkpoint repo needs for conversion (mlx-lm's list plus the SentencePiece model).
CHECKPOINT_PATTERNS = ("*.json", "*.safetensors", "tokenizer.model", "*.tiktoken", "*.txt", "*.jinja")
GGUF_PATTERNS = ("*.json", "*.gguf")


@dataclass(frozen=True)
class RepoInfo:
    """A supported repo: the family the converter detects and the quant type to pick."""

    repo_id: str
    family: str
    quant: str  # recommended --quant-type
    kind: str = "checkpoint"  # checkpoint | gguf | embedding
    note: str = ""

    @property
    def name(self) -> str:
        return self.repo_id.split("/")[-1]

    @property
    def patterns(self) -> tuple[str, ...]:
        return GGUF_PATTERNS if self.kind == "gguf" else CHECKPOINT_PATTERNS


def _registry() -> dict[str, RepoInfo]:
    entries = [
        RepoInfo("1bitLLM/bitnet_b1_58-large", "1bitllm", "i2_s"),
        RepoInfo("1bitLLM/bitnet_b1_58-3B", "1bitllm", "i2_s"),
        RepoInfo("HF1BitLLM/Llama3-8B-1.58-100B-tokens", "llama-bitlinear", "i2_s"),
        *(RepoInfo(f"tiiuae/Falcon3-{size}-1.58bit", "falcon3", "i2_s")
          for size in ("1B-Instruct", "3B", "3B-Instruct", "7B", "7B-Instruct", "10B", "10B-Instruct")),
        RepoInfo("microsoft/BitNet-b1.58-2B-4T", "bitnet-packed", "i2_s",
                 note="TL1/TL2 kernels for its shapes are not shipped by bitnet.cpp; i2_s is the one to use"),
        *(RepoInfo(f"tiiuae/Falcon-E-{size}", "falcon-e", "i2_s")
          for size in ("1B-Base", "1B-Instruct", "3B-Base", "3B-Instruct")),
        RepoInfo("microsoft/bitnet-embedding-0.6b", "embedding", "i2_s", kind="embedding",
                 note="an embedding model (Qwen3); bitnet runs text-generation models only"),
        RepoInfo("microsoft/bitnet-embedding-270m", "embedding", "i2_s", kind="embedding",
                 note="an embedding model (Gemma3); bitnet runs text-generation models only"),
        RepoInfo("microsoft/BitNet-b1.58-2B-4T-gguf", "bitnet-packed", "i2_s", kind="gguf",
                 note="the official ggml-model-i2_s.gguf; nothing to convert"),
        RepoInfo("microsoft/bitnet-b1.58-2B-4T-bf16", "bitnet-bf16", "i2_s",
                 note="bf16 master weights; ternarized at conversion"),
    ]
    return {e.repo_id.lower(): e for e in entries}


REGISTRY: dict[str, RepoInfo] = _registry()
# The 17 repos bitnet.cpp's setup_env.py accepts for --hf-repo, in its order.
SETUP_ENV_REPOS: tuple[str, ...] = tuple(
    r.repo_id for r in REGISTRY.values() if not r.repo_id.endswith(("-gguf", "-bf16"))
)


def lookup(repo_id: str) -> RepoInfo | None:
    """The registry entry for a repo id (case-insensitive), or None."""
    return REGISTRY.get(repo_id.strip().lower())


def looks_like_repo_id(arg: str) -> bool:
    """`org/name` with no path-like parts: what the hub accepts as a model id."""
    parts = arg.split("/")
    return len(parts) == 2 and all(parts) and not arg.startswith((".", "~")) and "\\" not in arg


def is_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def download(repo_id: str, *, revision: str | None = None, local_dir: str | Path | None = None,
             cache_dir: str | Path | None = None, include: list[str] | None = None,
             exclude: list[str] | None = None, token: str | None = None, offline: bool | None = None,
             max_workers: int = 8) -> Path:
    """Download (or find in the cache) a repo snapshot; returns its local folder.

    `include` defaults to the registry's patterns for the repo (checkpoint or GGUF files).
    """
    from huggingface_hub import snapshot_download

    info = lookup(repo_id)
    if include is None:
        include = list(info.patterns) if info else list(CHECKPOINT_PATTERNS + ("*.gguf",))
    if offline is None:
        offline = is_offline()
    try:
        path = snapshot_download(
            repo_id, revision=revision, local_dir=local_dir, cache_dir=cache_dir,
            allow_patterns=include, ignore_patterns=exclude or None, token=token,
            local_files_only=offline, max_workers=max_workers,
        )
    except Exception as e:  # noqa: BLE001 - every hub failure becomes one line
        raise hub_error(e, repo_id, revision, offline) from e
    return Path(path)


def hub_error(e: Exception, repo_id: str, revision: str | None, offline: bool) -> Exception:
    """Map a huggingface_hub / network exception to a one-line DownloadError."""
    from huggingface_hub import errors as E

    url = f"https://huggingface.co/{repo_id}"
    if isinstance(e, E.GatedRepoError):
        return DownloadError(f"{repo_id} is a gated repo and this account has no access",
                             f"accept its terms on {url} and set HF_TOKEN (or pass --token)")
    if isinstance(e, E.RepositoryNotFoundError):
        return DownloadError(f"repo {repo_id} was not found on the hub",
                             "check the name (`bitnet download --list` shows the supported ones); for a private repo set HF_TOKEN")
    if isinstance(e, E.RevisionNotFoundError):
        return DownloadError(f"revision '{revision}' does not exist in {repo_id}", "pass an existing branch, tag or commit")
    if isinstance(e, E.RemoteEntryNotFoundError):
        return DownloadError(f"a file of {repo_id} is missing on the hub ({e})", "check --include patterns and --revision")
    if isinstance(e, E.LocalEntryNotFoundError):
        cause = e.__cause__ or e.__context__
        if offline or isinstance(cause, E.OfflineModeIsEnabled):
            return DownloadError(f"{repo_id} is not in the local cache and offline mode is on",
                                 f"run `bitnet download {repo_id}` while online (unset HF_HUB_OFFLINE)")
        return DownloadError(f"cannot reach the hub to download {repo_id} and it is not in the cache",
                             "check the network connection (or HF_ENDPOINT), then retry")
    if isinstance(e, E.HfHubHTTPError):
        status = getattr(getattr(e, "response", None), "status_code", "?")
        if status == 401:
            return DownloadError(f"the hub refused access to {repo_id} (401)", "check HF_TOKEN / --token")
        return DownloadError(f"the hub answered HTTP {status} for {repo_id}", "retry later; set BITNET_DEBUG=1 for details")
    if isinstance(e, (ConnectionError, TimeoutError)) or type(e).__module__.startswith(("httpx", "httpcore")):
        return DownloadError(f"cannot reach the hub to download {repo_id} ({type(e).__name__})",
                             "check the network connection (or HF_ENDPOINT), then retry")
    if isinstance(e, OSError) and getattr(e, "errno", None) == 28:
        return DownloadError(f"the disk is full while downloading {repo_id}", "free some space or set HF_HOME elsewhere")
    if isinstance(e, ValueError) and "repo" in str(e).lower():
        return UserError(f"'{repo_id}' is not a valid repo id", "use the form org/name, e.g. microsoft/BitNet-b1.58-2B-4T")
    return e


def resolve_model(path_or_repo: str | Path, *, revision: str | None = None, offline: bool | None = None,
                  token: str | None = None, include: list[str] | None = None) -> Path:
    """A local path as is, else a repo id downloaded into (or found in) the HF cache."""
    p = Path(os.path.expanduser(str(path_or_repo)))
    if p.exists():
        return p
    arg = str(path_or_repo)
    if not looks_like_repo_id(arg):
        raise UserError(f"no such file or folder: {arg}", "pass a local path or a hub repo id such as microsoft/BitNet-b1.58-2B-4T")
    return download(arg, revision=revision, offline=offline, token=token, include=include)


def find_gguf(folder: Path, quant: str | None = None) -> Path | None:
    """The GGUF in a downloaded folder (the one named for `quant` if several)."""
    files = sorted(folder.glob("*.gguf"))
    if quant:
        named = [f for f in files if f.name.lower() == f"ggml-model-{quant.lower()}.gguf"]
        if named:
            return named[0]
    return files[0] if files else None
