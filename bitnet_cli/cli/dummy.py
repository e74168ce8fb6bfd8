"""`bitnet dummy`: write a random ternary model of a size preset (generate-dummy-bitnet-model.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

SIZES = "125M, 350M, 1B, 1.5B, 2.7B, 3.8B, 7B, 13B, 30B, 70B, 100B, 2B-4T"


def dummy(
    outfile: Annotated[
        Optional[Path],
        typer.Option("-o", "--outfile", help="Output GGUF path (default: models/dummy-bitnet-<size>.<outtype>.gguf)."),
    ] = None,
    outtype: Annotated[str, typer.Option("--outtype", help="Linear weight type: f32, f16, i2_s, tl1 or tl2.")] = "i2_s",
    model_size: Annotated[str, typer.Option("--model-size", help=f"Size preset: {SIZES}.")] = "2B-4T",
    seed: Annotated[int, typer.Option("-s", "--seed", help="RNG seed: the same seed gives the same weights in every type.")] = 0,
    quant_embd: Annotated[
        str, typer.Option("--quant-embd", help="Embedding / LM head type: f16 (as the official file), q8_0 or q6_k.")
    ] = "f16",
    model_name: Annotated[Optional[str], typer.Option("--model-name", help="general.name to record.", hidden=True)] = None,
    vocab_only: Annotated[
        bool, typer.Option("--vocab-only", help="Write the metadata and vocabulary only.", hidden=True)
    ] = False,
) -> None:
    """Write a dummy model with random ternary weights, for benchmarks and tests.

    The path goes to stdout; progress and size to stderr.
    """
    import time

    from bitnet_cli.dummy import check_outtype, dummy_model_nbytes, get_preset, write_dummy_model

    outtype = outtype.lower()
    get_preset(model_size)
    check_outtype(outtype)
    path = outfile or Path("models") / f"dummy-bitnet-{model_size.lower()}.{outtype}.gguf"
    path.parent.mkdir(parents=True, exist_ok=True)
    total = 0 if vocab_only else dummy_model_nbytes(model_size, outtype, quant_embd.lower())
    start = time.perf_counter()
    with _progress(total, f"{model_size} {outtype}") as advance:
        write_dummy_model(path, model_size, outtype, seed, progress=advance, name=model_name, vocab_only=vocab_only,
                          quant_embd=quant_embd.lower())
    from bitnet_cli.ui import info

    size = path.stat().st_size
    shown = f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"
    info(f"wrote {shown} in {time.perf_counter() - start:.1f} s")
    print(path)


class _progress:
    """A rich progress bar on stderr, driven by write_model_file's callback."""

    def __init__(self, total: int, label: str) -> None:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

        from bitnet_cli.ui import console

        self._bar = Progress(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
            console=console, transient=True, disable=total == 0,
        )
        self._task = self._bar.add_task(f"writing {label}", total=total)

    def __enter__(self):  # noqa: ANN204 - returns the callback
        self._bar.__enter__()
        return lambda done, total, name: self._bar.update(self._task, completed=done)

    def __exit__(self, *exc: object) -> None:
        self._bar.__exit__(*exc)


def register(app: typer.Typer) -> None:
    app.command("dummy")(dummy)
