#!/usr/bin/env python3
"""bitnet.cpp's run_inference.py flags over `bitnet run` (with -cnv: `-p` is the system prompt)."""
from __future__ import annotations

import argparse
import sys

from bitnet_cli.cli.app import main


def parse(argv: list[str]) -> list[str]:
    p = argparse.ArgumentParser(description="Run inference (bitnet.cpp-compatible flags)")
    p.add_argument("-m", "--model", default="models/bitnet_b1_58-3B/ggml-model-i2_s.gguf")
    p.add_argument("-n", "--n-predict", type=int, default=128)
    p.add_argument("-p", "--prompt", required=True)
    p.add_argument("-t", "--threads", type=int, default=2)
    p.add_argument("-c", "--ctx-size", type=int, default=2048)
    p.add_argument("-temp", "--temperature", type=float, default=0.8)
    p.add_argument("-cnv", "--conversation", action="store_true")
    a = p.parse_args(argv)
    args = ["run", "-m", a.model, "-n", str(a.n_predict), "-p", a.prompt, "-t", str(a.threads),
            "-c", str(a.ctx_size), "--temp", str(a.temperature)]
    return args + (["-cnv"] if a.conversation else [])


if __name__ == "__main__":
    main(parse(sys.argv[1:]))
