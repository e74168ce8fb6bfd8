"""`bitnet run`: one-shot generation (llama-cli / run_inference.py flags)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bitnet_cli.cli.options import (
    GpuLayersOpt,
    ignore_gpu_layers,
    sampling_params,
    CtxOpt,
    FrequencyPenaltyOpt,
    MinPOpt,
    ModelOpt,
    NPredictOpt,
    PresencePenaltyOpt,
    PromptOpt,
    RepeatLastNOpt,
    RepeatPenaltyOpt,
    SeedOpt,
    TempOpt,
    ThreadsOpt,
    TopKOpt,
    TopPOpt,
    VerboseOpt,
)


def run(
    model: ModelOpt,
    prompt: PromptOpt = None,
    n_predict: NPredictOpt = 128,
    threads: ThreadsOpt = None,
    ctx_size: CtxOpt = 2048,
    temp: TempOpt = 0.8,
    top_k: TopKOpt = 40,
    top_p: TopPOpt = 0.95,
    min_p: MinPOpt = 0.05,
    repeat_penalty: RepeatPenaltyOpt = 1.0,
    repeat_last_n: RepeatLastNOpt = 64,
    presence_penalty: PresencePenaltyOpt = 0.0,
    frequency_penalty: FrequencyPenaltyOpt = 0.0,
    seed: SeedOpt = -1,
    file: Annotated[Optional[Path], typer.Option("-f", "--file", help="Read the prompt from a file ('-' = stdin).")] = None,
    stop: Annotated[Optional[list[str]], typer.Option("--stop", "-r", "--reverse-prompt", help="Stop at this string (repeatable).")] = None,
    ignore_eos: Annotated[bool, typer.Option("--ignore-eos", help="Keep generating past end-of-sequence tokens.")] = False,
    conversation: Annotated[bool, typer.Option("-cnv", "--conversation", help="Chat mode; -p is then the system prompt.")] = False,
    system_prompt: Annotated[Optional[str], typer.Option("-sys", "--system-prompt", help="System prompt for chat mode.")] = None,
    no_warmup: Annotated[bool, typer.Option("--no-warmup", help="Skip the untimed warm-up run (kernel code then loads inside the prompt's timing).")] = False,
    n_gpu_layers: GpuLayersOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Generate text from a prompt. Text goes to stdout; speeds to stderr."""
    from bitnet_cli.errors import UserError
    ignore_gpu_layers(n_gpu_layers)
    sampling = sampling_params(temp, top_k, top_p, min_p, repeat_penalty, repeat_last_n,
                               presence_penalty, frequency_penalty, seed)
    if conversation:
        from bitnet_cli.cli.chat import run_chat

        run_chat(model=model, system_prompt=system_prompt or prompt, threads=threads, ctx_size=ctx_size,
                 n_predict=n_predict, sampling=sampling, verbose=verbose)
        return
    text = _read_prompt(prompt, file)
    if text is None:
        raise UserError("no prompt given", "pass -p TEXT or -f FILE")
    if n_predict < -1:
        raise UserError(f"invalid -n {n_predict}", "pass a token count, or -1 for 'until end of text'")
    _generate(model, text, n_predict, threads, ctx_size, sampling, stop or [], ignore_eos, not no_warmup, verbose)


def _read_prompt(prompt: str | None, file: Path | None) -> str | None:
    import sys

    from bitnet_cli.errors import UserError

    if file is None:
        return prompt
    if str(file) == "-":
        return sys.stdin.read()
    if not file.is_file():
        raise UserError(f"no prompt file at {file}", "check the path given to -f")
    return file.read_text(encoding="utf-8")


def _generate(model_path: Path, text: str, n_predict: int, threads: int | None, ctx_size: int,
              sampling, stop: list[str], ignore_eos: bool, warmup: bool, verbose: bool) -> None:
    import sys
    import time

    import bitnet_cli
    from bitnet_cli.chat import warm_up
    from bitnet_cli.generation import stream_generate
    from bitnet_cli.ui import info

    t0 = time.perf_counter()
    model = bitnet_cli.load(model_path, n_ctx=ctx_size, threads=threads)
    if warmup:  # as llama-cli: the kernels' code loads here, not inside the prompt's t/s
        warm_up(model)
    load_s = time.perf_counter() - t0
    last = None
    for r in stream_generate(model, text, max_tokens=n_predict, sampling=sampling, stop=stop, ignore_eos=ignore_eos):
        sys.stdout.write(r.text)
        sys.stdout.flush()
        last = r
    sys.stdout.write("\n")
    sys.stdout.flush()
    if last is None:
        return
    if verbose:
        info(f"load time: {load_s:.2f} s")
    info(
        f"[ Prompt: {last.prompt_tokens} tokens, {last.prompt_tps:.2f} t/s | "
        f"Generation: {last.generation_tokens} tokens, {last.generation_tps:.2f} t/s ]"
    )


def register(app: typer.Typer) -> None:
    app.command("run", no_args_is_help=True)(run)
