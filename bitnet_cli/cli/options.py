"""Option aliases defined once and reused by every command (llama.cpp flag names)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

ModelOpt = Annotated[
    Path,
    typer.Option("-m", "--model", help="Path to a GGUF model file.", envvar="BITNET_MODEL"),
]
PromptOpt = Annotated[Optional[str], typer.Option("-p", "--prompt", help="Prompt text.")]
NPredictOpt = Annotated[
    int, typer.Option("-n", "--n-predict", "--predict", help="Tokens to generate (-1 = until EOS or context full).")
]
ThreadsOpt = Annotated[
    Optional[int], typer.Option("-t", "--threads", help="CPU threads (default: all cores).", envvar="BITNET_THREADS")
]
CtxOpt = Annotated[
    int, typer.Option("-c", "--ctx-size", help="Context size in tokens (0 = the model's).", envvar="BITNET_CTX_SIZE")
]
TempOpt = Annotated[
    float, typer.Option("--temp", "-temp", "--temperature", help="Sampling temperature (0 = greedy).")
]
TopKOpt = Annotated[int, typer.Option("--top-k", help="Top-k sampling (0 = off).")]
TopPOpt = Annotated[float, typer.Option("--top-p", help="Top-p (nucleus) sampling (1.0 = off).")]
MinPOpt = Annotated[float, typer.Option("--min-p", help="Min-p sampling (0.0 = off).")]
RepeatPenaltyOpt = Annotated[float, typer.Option("--repeat-penalty", help="Penalty for repeated tokens (1.0 = off).")]
RepeatLastNOpt = Annotated[int, typer.Option("--repeat-last-n", help="Tokens the repeat penalty looks back over.")]
PresencePenaltyOpt = Annotated[float, typer.Option("--presence-penalty", help="Presence penalty (0.0 = off).")]
FrequencyPenaltyOpt = Annotated[float, typer.Option("--frequency-penalty", help="Frequency penalty (0.0 = off).")]
SeedOpt = Annotated[int, typer.Option("-s", "--seed", help="RNG seed (-1 = random).")]
VerboseOpt = Annotated[bool, typer.Option("-v", "--verbose", help="Print timings and details on stderr.")]
GpuLayersOpt = Annotated[Optional[int], typer.Option("-ngl", "--n-gpu-layers", hidden=True, help="Ignored (CPU only).")]


def sampling_params(temp: float, top_k: int, top_p: float, min_p: float, repeat_penalty: float,
                    repeat_last_n: int, presence_penalty: float, frequency_penalty: float, seed: int) -> Any:
    """The `SamplingParams` the shared sampling flags describe (validated there)."""
    from bitnet_cli.sampling import SamplingParams

    return SamplingParams(temp=temp, top_k=top_k, top_p=top_p, min_p=min_p, repeat_penalty=repeat_penalty,
                          repeat_last_n=repeat_last_n, presence_penalty=presence_penalty,
                          frequency_penalty=frequency_penalty, seed=seed)


def ignore_gpu_layers(n_gpu_layers: int | None) -> None:
    """llama.cpp's -ngl is accepted for compatibility and has no effect here."""
    if n_gpu_layers:
        from bitnet_cli.ui import warn

        warn("-ngl is ignored: bitnet runs on the CPU")
