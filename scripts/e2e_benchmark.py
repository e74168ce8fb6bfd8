#!/usr/bin/env python3
"""bitnet.cpp's `utils/e2e_benchmark.py`, over `bitnet bench`: same flags, same llama-bench table.

    python scripts/e2e_benchmark.py -m models/BitNet-b1.58-2B-4T/ggml-model-i2_s.gguf -n 200 -p 256 -t 4

Upstream runs `llama-bench -m M -n N -ngl 0 -b 1 -t T -p P -r 5`. This runs
`bitnet bench -m M -n N -p P -t T -r 5`: its prompt goes through in batches of 512 like llama-bench's
default, since `-b 1` would time the prompt one token at a time (pass `-b 1` through `--` to get it).
"""
from __future__ import annotations

import argparse
import sys


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description="Run an end-to-end throughput benchmark (bitnet bench).")
    p.add_argument("-m", "--model", type=str, required=True, help="Path to the model file.")
    p.add_argument("-n", "--n-token", type=int, default=128, help="Tokens to generate (tg test).")
    p.add_argument("-p", "--n-prompt", type=int, default=512, help="Prompt tokens (pp test; a count).")
    p.add_argument("-t", "--threads", type=int, default=2, help="Threads.")
    return p.parse_known_args(argv)


def main(argv: list[str] | None = None) -> None:
    args, extra = parse_args(argv)
    from bitnet_cli.cli.app import main as bitnet_main

    extra = [a for a in extra if a != "--"]
    bitnet_main(["bench", "-m", args.model, "-n", str(args.n_token), "-p", str(args.n_prompt),
                 "-t", str(args.threads), "-r", "5", *extra])


if __name__ == "__main__":
    main(sys.argv[1:])
