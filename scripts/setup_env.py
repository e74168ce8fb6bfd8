#!/usr/bin/env python3
"""bitnet.cpp's `setup_env.py`, same flags, running `bitnet setup` (no compiler, no codegen).

    python scripts/setup_env.py -hr microsoft/BitNet-b1.58-2B-4T -q i2_s
    python scripts/setup_env.py -md models/BitNet-b1.58-2B-4T -q i2_s --quant-embd
"""
from __future__ import annotations

import argparse
import sys

from bitnet_cli.hub import SETUP_ENV_REPOS
from bitnet_cli.setup_pipeline import quant_choices


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Set up the environment for running inference")
    p.add_argument("--hf-repo", "-hr", type=str, choices=SETUP_ENV_REPOS, help="Model used for inference")
    p.add_argument("--model-dir", "-md", type=str, default="models", help="Directory to save/load the model")
    p.add_argument("--log-dir", "-ld", type=str, default="logs", help="Directory to save the logging info")
    p.add_argument("--quant-type", "-q", type=str, choices=quant_choices(), default="i2_s",
                   help="Quantization type")
    p.add_argument("--quant-embd", action="store_true", help="Quantize the embeddings to f16")
    p.add_argument("--use-pretuned", "-p", action="store_true", help="Use the pretuned kernel parameters")
    return p.parse_args(argv)


def to_cli(args: argparse.Namespace) -> list[str]:
    """The equivalent `bitnet setup` argument list."""
    cli = ["setup", "-md", args.model_dir, "-ld", args.log_dir, "-q", args.quant_type]
    if args.hf_repo:
        cli += ["-hr", args.hf_repo]
    if args.quant_embd:
        cli.append("--quant-embd")
    if args.use_pretuned:
        cli.append("--use-pretuned")
    return cli


def main(argv: list[str] | None = None) -> None:
    from bitnet_cli.cli.app import main as bitnet_main

    bitnet_main(to_cli(parse_args(argv)))


if __name__ == "__main__":
    main(sys.argv[1:])
