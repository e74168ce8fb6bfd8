#!/usr/bin/env python3
"""bitnet.cpp's utils/generate-dummy-bitnet-model.py, over `bitnet dummy`.

Same flags and defaults (f16, 7B). The positional template-model folder is accepted and ignored:
the presets carry every hyper-parameter and the vocabulary is built in.
"""
from __future__ import annotations

import argparse
import sys

OUTTYPES = ["f32", "f16", "i2_s", "tl1", "tl2"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Write a dummy BitNet model with random ternary weights.")
    p.add_argument("model", nargs="?", help="template model folder (accepted for compatibility, ignored)")
    p.add_argument("--outfile", "-o", help="output GGUF path")
    p.add_argument("--outtype", choices=OUTTYPES, default="f16", help="linear weight type (default: f16)")
    p.add_argument("--model-size", default="7B", help="size preset: 125M ... 100B, or 2B-4T (default: 7B)")
    p.add_argument("--seed", type=int, default=0, help="RNG seed")
    p.add_argument("--model-name", help="general.name to record")
    p.add_argument("--vocab-only", action="store_true", help="write the metadata and vocabulary only")
    p.add_argument("--bigendian", action="store_true", help="not supported: files are little-endian")
    p.add_argument("--use-temp-file", action="store_true", help="ignored: tensors are always streamed")
    p.add_argument("--verbose", action="store_true", help="ignored")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.bigendian:
        print("Error: big-endian output is not supported — drop --bigendian", file=sys.stderr)
        sys.exit(1)
    if args.model is not None:
        print(f"note: the template model folder '{args.model}' is ignored; the presets carry every setting", file=sys.stderr)
    cli = ["dummy", "--outtype", args.outtype, "--model-size", args.model_size, "--seed", str(args.seed)]
    if args.outfile:
        cli += ["--outfile", args.outfile]
    if args.model_name:
        cli += ["--model-name", args.model_name]
    if args.vocab_only:
        cli.append("--vocab-only")
    from bitnet_cli.cli.app import main as bitnet_main

    bitnet_main(cli)


if __name__ == "__main__":
    main()
