"""`bitnet setup`: download → convert → tune/warm the kernels (setup_env.py's flags)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

SETUP_EXAMPLES = [
    "bitnet setup -hr microsoft/BitNet-b1.58-2B-4T -q i2_s",
    "bitnet setup -hr tiiuae/Falcon3-7B-Instruct-1.58bit -md models -ld logs",
    "bitnet setup -md models/my-bitnet-checkpoint -q i2_s",
    "bitnet setup -m models/BitNet-b1.58-2B-4T/ggml-model-i2_s.gguf   # only tune and warm up",
]


def setup(
    hf_repo: Annotated[Optional[str], typer.Option("-hr", "--hf-repo", help="Hub repo to set up (`bitnet download --list`).")] = None,
    model_dir: Annotated[Path, typer.Option("-md", "--model-dir", help="Where models go (each repo in <model-dir>/<name>), or a checkpoint folder without -hr.")] = Path("models"),
    model: Annotated[Optional[Path], typer.Option("-m", "--model", help="An existing GGUF: only tune and warm the kernels for it.")] = None,
    log_dir: Annotated[Path, typer.Option("-ld", "--log-dir", help="Folder for the step logs.")] = Path("logs"),
    quant_type: Annotated[str, typer.Option("-q", "--quant-type", help="Quantization type: i2_s (recommended), tl1 or tl2 (bitnet.cpp's lookup-table formats).")] = "i2_s",
    quant_embd: Annotated[bool, typer.Option("--quant-embd", help="Store the embedding as f16 (bitnet.cpp's flag; f16 is already the default).")] = False,
    embd_type: Annotated[Optional[str], typer.Option("--embd-type", help="Embedding type: f16, q8_0, q6_k or f32.")] = None,
    use_pretuned: Annotated[bool, typer.Option("-p", "--use-pretuned", help="Use the shipped kernel tuning instead of tuning on this CPU.")] = False,
    revision: Annotated[Optional[str], typer.Option("--revision", help="Hub revision to download.")] = None,
    threads: Annotated[Optional[int], typer.Option("-t", "--threads", help="Threads for tuning and warm-up (default: all cores).")] = None,
) -> None:
    """Set up a model: download, convert, tune and warm the kernels. Prints the model path on stdout."""
    from bitnet_cli.errors import UserError
    from bitnet_cli.setup_pipeline import SetupPlan, quant_choices, run_setup
    from bitnet_cli.ui import info

    q = quant_type.lower()
    if q not in quant_choices():
        raise UserError(f"unknown quant type '{quant_type}'", f"choose one of: {', '.join(quant_choices())}")
    if model is not None and hf_repo:
        raise UserError("-m and -hr cannot be used together", "pass -hr REPO to set up from the hub, or -m FILE for a model in hand")
    embd = embd_type or ("f16" if quant_embd else None)
    plan = SetupPlan(hf_repo=hf_repo, model_dir=model_dir, model=model, quant_type=q, quant_embd=embd,
                     use_pretuned=use_pretuned, log_dir=log_dir, revision=revision, threads=threads)
    out = run_setup(plan, info)
    info(f"ready: bitnet run -m {out} -p \"Hello\"")
    print(out)


def register(app: typer.Typer) -> None:
    app.command("setup", epilog="Examples:\n\n" + "\n\n".join(f"  {e}" for e in SETUP_EXAMPLES))(setup)
