#!/usr/bin/env python3
"""Drop-in for bitnet.cpp's run_inference_server.py: the same flags, served by `bitnet serve`.

    python scripts/run_inference_server.py -m models/BitNet-b1.58-2B-4T/ggml-model-i2_s.gguf

-p/--prompt becomes the system prompt of chat requests that carry none (upstream passed it to
llama-server as -p). -ngl and -cb, which upstream always added, mean nothing on this CPU-only
engine; requests queue for the one engine instead of batching.
"""
from __future__ import annotations

import argparse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Run an OpenAI-compatible inference server")
    p.add_argument("-m", "--model", type=str, default="models/bitnet_b1_58-3B/ggml-model-i2_s.gguf",
                   help="Path to model file")
    p.add_argument("-p", "--prompt", type=str, default=None, help="System prompt for the model")
    p.add_argument("-n", "--n-predict", type=int, default=4096, help="Number of tokens to predict")
    p.add_argument("-t", "--threads", type=int, default=2, help="Number of threads to use")
    p.add_argument("-c", "--ctx-size", type=int, default=2048, help="Size of the context window")
    p.add_argument("--temperature", type=float, default=0.8, help="Temperature for sampling")
    p.add_argument("--host", type=str, default="127.0.0.1", help="IP address to listen on")
    p.add_argument("--port", type=int, default=8080, help="Port to listen on")
    return p


def to_serve_args(args: argparse.Namespace) -> list[str]:
    """The `bitnet serve` command line equivalent to the upstream flags."""
    argv = ["serve", "-m", args.model, "-n", str(args.n_predict), "-t", str(args.threads),
            "-c", str(args.ctx_size), "--temp", str(args.temperature), "--host", args.host,
            "--port", str(args.port)]
    if args.prompt:
        argv += ["--system-prompt", args.prompt]
    return argv


def main(argv: list[str] | None = None) -> None:
    from bitnet_cli.cli.app import main as bitnet_main

    bitnet_main(to_serve_args(build_parser().parse_args(argv)))


if __name__ == "__main__":
    main()
