"""`bitnet download`: fetch a model repo into the Hugging Face cache (hf CLI flags)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

DOWNLOAD_EXAMPLES = [
    "bitnet download microsoft/BitNet-b1.58-2B-4T-gguf",
    "bitnet download microsoft/BitNet-b1.58-2B-4T --local-dir models/BitNet-b1.58-2B-4T",
    "bitnet download tiiuae/Falcon3-1B-Instruct-1.58bit --include '*.json' --include '*.safetensors'",
    "HF_HUB_OFFLINE=1 bitnet download microsoft/BitNet-b1.58-2B-4T   # cache only, prints the path",
]


def download(
    repo_id: Annotated[Optional[str], typer.Argument(help="Hub repo id, e.g. microsoft/BitNet-b1.58-2B-4T.", show_default=False)] = None,
    files: Annotated[Optional[list[str]], typer.Argument(help="Only these files (names or glob patterns).", show_default=False)] = None,
    include: Annotated[Optional[list[str]], typer.Option("--include", help="Glob pattern of files to get (repeatable; default: what conversion needs).")] = None,
    exclude: Annotated[Optional[list[str]], typer.Option("--exclude", help="Glob pattern of files to skip (repeatable).")] = None,
    revision: Annotated[Optional[str], typer.Option("--revision", help="Branch, tag or commit (default: main).")] = None,
    local_dir: Annotated[Optional[Path], typer.Option("--local-dir", help="Put the files in this folder instead of the HF cache.")] = None,
    cache_dir: Annotated[Optional[Path], typer.Option("--cache-dir", help="HF cache folder (default: $HF_HUB_CACHE or $HF_HOME/hub).")] = None,
    token: Annotated[Optional[str], typer.Option("--token", "-hft", help="Hub token (default: $HF_TOKEN or the saved login).", envvar="HF_TOKEN", show_envvar=False)] = None,
    offline: Annotated[bool, typer.Option("--offline", help="Use the cache only, never the network (as HF_HUB_OFFLINE=1).")] = False,
    max_workers: Annotated[int, typer.Option("--max-workers", help="Files downloaded in parallel.")] = 8,
    list_repos: Annotated[bool, typer.Option("--list", help="List the supported repos and exit.")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress bars; print only the path.")] = False,
) -> None:
    """Download a model repo (or find it in the cache) and print its local path on stdout.

    REPO_ID is a hub model id such as microsoft/BitNet-b1.58-2B-4T; FILES, if given, are the only
    files (names or glob patterns) to fetch.
    """
    from bitnet_cli import hub
    from bitnet_cli.errors import UserError

    if list_repos:
        _print_registry()
        return
    if not repo_id:
        raise UserError("no repo id given", "pass one, e.g. `bitnet download microsoft/BitNet-b1.58-2B-4T` (see --list)")
    if local_dir is not None and cache_dir is not None:
        raise UserError("--local-dir and --cache-dir cannot be used together",
                        "use --cache-dir (or HF_HOME) for the shared cache, or --local-dir for a one-off folder")
    if quiet:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    info = hub.lookup(repo_id)
    if info is None and not quiet:
        from bitnet_cli.ui import warn

        warn(f"{repo_id} is not in the list of BitNet repos (see --list); downloading it anyway")
    patterns = list(files or []) + list(include or []) or None
    path = hub.download(repo_id, revision=revision, local_dir=local_dir, cache_dir=cache_dir, include=patterns,
                        exclude=exclude, token=token, offline=offline or None, max_workers=max_workers)
    _check_named_files(repo_id, path, files or [])
    print(path)


def _check_named_files(repo_id: str, path: Path, files: list[str]) -> None:
    """A file named outright (not a pattern) that did not arrive is missing from the repo."""
    from bitnet_cli.errors import DownloadError

    missing = [f for f in files if not any(c in f for c in "*?[") and not (path / f).exists()]
    if missing:
        raise DownloadError(f"{repo_id} has no file {missing[0]}", "check the file name and --revision")


def _print_registry() -> None:
    from bitnet_cli import hub

    width = max(len(r.repo_id) for r in hub.REGISTRY.values())
    print(f"{'repo':<{width}}  {'family':<16} {'quant':<5} note")
    for r in hub.REGISTRY.values():
        print(f"{r.repo_id:<{width}}  {r.family:<16} {r.quant:<5} {r.note}".rstrip())


def register(app: typer.Typer) -> None:
    app.command(
        "download",
        epilog="Examples:\n\n" + "\n\n".join(f"  {e}" for e in DOWNLOAD_EXAMPLES),
    )(download)
