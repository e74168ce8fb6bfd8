#!/usr/bin/env python3
"""bitnet.cpp's `utils/convert-helper-bitnet.py <model-dir>`: bf16 safetensors → I2_S GGUF.

Upstream preprocesses the checkpoint in place, writes an f32 GGUF and runs llama-quantize; here
one streaming `bitnet convert` writes `<model-dir>/ggml-model-i2s-bitnet.gguf` directly and the
checkpoint folder is left untouched.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Convert a BitNet bf16 safetensors checkpoint to an I2_S GGUF")
    p.add_argument("model_dir", type=Path, help="folder with config.json, model.safetensors, tokenizer files")
    args = p.parse_args(argv)
    from bitnet_cli.cli.app import main as bitnet_main

    out = args.model_dir / "ggml-model-i2s-bitnet.gguf"
    bitnet_main(["convert", str(args.model_dir), "-o", str(out), "--outtype", "i2_s"])


if __name__ == "__main__":
    main(sys.argv[1:])
