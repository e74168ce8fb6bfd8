"""Where a forward pass spends its time: each kernel call timed inside the model, per step.

    python benchmarks/profile_forward.py -m model.gguf -t 2              # decode and a 128-token prefill
    python benchmarks/profile_forward.py -m model.gguf -t 1 -p 512 -n 32

Wraps the `bitnet_kernels` functions the model calls (ternary projections by shape, the head,
attention, norms) with timers, runs warm-up passes first (compile, page faults, tuning of the
busy-core fallback), then averages over the timed passes. For a flame graph of the same run:
`py-spy record -o profile.svg -- python benchmarks/profile_forward.py -m model.gguf`.
"""
from __future__ import annotations

import argparse
import collections
import sys
import time
from typing import Any, Callable

import numpy as np

import bitnet_cli
import bitnet_kernels as K

WRAPPED = ["ternary_linear", "dense_linear", "rope_attend", "rms_norm_quantize", "relu2_glu_quantize",
           "quantize_activations", "rms_norm", "embed_rows"]


def _timed(name: str, fn: Callable[..., Any], totals: dict[str, float]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        key = f"ternary {args[0].M}x{args[0].K}" if name == "ternary_linear" else name
        totals[key] += time.perf_counter() - t0
        return out

    return call


def profile(run: Callable[[], None], reps: int) -> tuple[float, dict[str, float]]:
    """(seconds per rep, {step: seconds per rep}) with the kernels wrapped only while timing."""
    totals: dict[str, float] = collections.defaultdict(float)
    originals = {name: getattr(K, name) for name in WRAPPED}
    for name, fn in originals.items():
        setattr(K, name, _timed(name, fn, totals))
    try:
        t0 = time.perf_counter()
        for _ in range(reps):
            run()
        total = (time.perf_counter() - t0) / reps
    finally:
        for name, fn in originals.items():
            setattr(K, name, fn)
    return total, {k: v / reps for k, v in totals.items()}


def report(title: str, total: float, steps: dict[str, float], tokens: int) -> str:
    lines = [f"{title}: {total * 1e3:.1f} ms ({tokens / total:.1f} t/s)"]
    for k, v in sorted(steps.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {k:28s} {v * 1e3:9.2f} ms  {100 * v / total:5.1f} %")
    rest = total - sum(steps.values())
    lines.append(f"  {'Python and numpy between':28s} {rest * 1e3:9.2f} ms  {100 * rest / total:5.1f} %")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("-t", "--threads", type=int, default=None)
    ap.add_argument("-p", "--n-prompt", type=int, default=128, help="prefill length (0 skips prefill)")
    ap.add_argument("-n", "--n-gen", type=int, default=40, help="decode steps timed (0 skips decode)")
    ap.add_argument("-r", "--reps", type=int, default=3, help="prefill repetitions timed")
    args = ap.parse_args(argv)
    model = bitnet_cli.load(args.model, threads=args.threads, n_ctx=args.n_prompt + args.n_gen + 64)
    ids = [int(i) for i in np.random.default_rng(0).integers(0, model.config.n_vocab, max(args.n_prompt, 16))]
    if args.n_prompt:
        def prefill() -> None:
            model.forward(ids[: args.n_prompt], model.new_cache())

        for _ in range(3):  # warm-up: compile, page faults, the busy-core fallback's first probes
            prefill()
        total, steps = profile(prefill, args.reps)
        print(report(f"prefill of {args.n_prompt} tokens", total, steps, args.n_prompt))
    if args.n_gen:
        cache = model.new_cache()
        model.forward(ids[:16], cache)
        for i in range(10):
            model.forward([ids[i]], cache)
        step = iter(range(1 << 30))
        total, steps = profile(lambda: model.forward([ids[next(step) % 16]], cache), args.n_gen)
        print(report("decode, per token", total, steps, 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
