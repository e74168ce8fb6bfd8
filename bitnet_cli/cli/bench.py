"""`bitnet bench`: llama-bench's flags and tables for bitnet-cli (results on stdout, progress on stderr)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

IntList = Optional[list[str]]


def bench(
    model: Annotated[Optional[list[Path]], typer.Option("-m", "--model", help="GGUF model file (repeatable).")] = None,
    n_prompt: Annotated[IntList, typer.Option("-p", "--n-prompt", help="Prompt tokens per pp test, comma list (default 512; a count, unlike `run -p`).")] = None,
    n_gen: Annotated[IntList, typer.Option("-n", "--n-gen", help="Tokens generated per tg test, comma list (default 128).")] = None,
    pg: Annotated[IntList, typer.Option("-pg", help="A pp+tg test PROMPT,GEN (repeatable).")] = None,
    n_depth: Annotated[IntList, typer.Option("-d", "--n-depth", help="KV cache depth before each test, comma list (default 0).")] = None,
    threads: Annotated[IntList, typer.Option("-t", "--threads", help="Threads; comma list (default: all cores).", envvar="BITNET_THREADS")] = None,
    batch_size: Annotated[int, typer.Option("-b", "--batch-size", help="Prompt tokens per forward pass.")] = 512,
    repetitions: Annotated[int, typer.Option("-r", "--repetitions", help="Timed runs per test.")] = 5,
    output: Annotated[str, typer.Option("-o", "--output", help="md, csv, json or jsonl.")] = "md",
    no_warmup: Annotated[bool, typer.Option("--no-warmup", help="Skip the untimed warm-up run.")] = False,
    delay: Annotated[float, typer.Option("--delay", help="Seconds to sleep before each test.")] = 0.0,
    progress: Annotated[bool, typer.Option("--progress", help="Also a stderr line per repetition.")] = False,
    model_size: Annotated[Optional[str], typer.Option("--model-size", help="Dummy model sizes to generate and run, e.g. 125M,2B-4T.")] = None,
    quant_type: Annotated[str, typer.Option("--quant-type", "-q", help="Dummy model types: i2_s, tl1, tl2 (comma list).")] = "i2_s",
    plot_file: Annotated[Optional[Path], typer.Option("--plot", help="Draw t/s against model size to this PNG.")] = None,
    compare: Annotated[Optional[str], typer.Option("--compare", help="Also run this peer on the same weights: llama.cpp.")] = None,
    compare_type: Annotated[str, typer.Option("--compare-type", help="Peer weight types: tq2_0, tq1_0, f16 (comma list).")] = "tq2_0",
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Add bandwidth achieved and its share of this machine's, measured in the same run.")] = False,
) -> None:
    """Measure prompt (pp) and generation (tg) tokens/s like llama-bench."""
    from bitnet_cli.bench import OUTPUT_FORMATS, parse_int_list, parse_pg, print_progress
    from bitnet_cli.bench_suite import BenchOptions, effective_threads
    from bitnet_cli.errors import UserError

    if output not in OUTPUT_FORMATS:
        raise UserError(f"unknown output format '{output}'", f"choose from {', '.join(OUTPUT_FORMATS)}")
    if repetitions < 1 or batch_size < 1:
        raise UserError("-r and -b must be 1 or more", "for example -r 5 -b 512")
    if compare is not None and compare.lower() not in ("llama.cpp", "llamacpp", "llama-cpp"):
        raise UserError(f"unknown peer '{compare}'", "the peer bitnet bench can run is llama.cpp")
    try:
        opts = BenchOptions(
            models=list(model or []), model_sizes=_split(model_size), quant_types=_split(quant_type),
            n_prompt=parse_int_list(n_prompt or ["512"], "-p"), n_gen=parse_int_list(n_gen or ["128"], "-n"),
            pg=parse_pg(pg), depths=parse_int_list(n_depth or ["0"], "-d"),
            threads=effective_threads(parse_int_list(threads, "-t"), print_progress),
            repetitions=repetitions, n_batch=batch_size, warmup=not no_warmup, delay=delay, verbose=verbose, per_rep=progress,
            compare="llama.cpp" if compare else None, compare_types=_split(compare_type),
        )
    except ValueError as e:
        raise UserError(str(e), "see `bitnet bench --help`") from None
    _run(opts, output, plot_file)


def _split(text: str | None) -> list[str]:
    return [s.strip() for s in (text or "").split(",") if s.strip()]


def _run(opts, output: str, plot_file: Path | None) -> None:  # noqa: ANN001
    import sys

    from bitnet_cli.bench import compare_rows, format_ratios, format_results, print_progress
    from bitnet_cli.bench_suite import plot, run_suite

    results = run_suite(opts, print_progress)
    print(format_results(results, output, opts.verbose), flush=True)
    pairs = compare_rows(results)
    if pairs:
        # Machine-readable stdout stays one document; the ratios then go to stderr.
        target = sys.stdout if output == "md" else sys.stderr
        print("\n" + format_ratios(pairs), file=target, flush=True)
    if plot_file is not None:
        plot(results, plot_file)
        print_progress(f"plot written to {plot_file}")


def register(app: typer.Typer) -> None:
    app.command("bench", no_args_is_help=True)(bench)
