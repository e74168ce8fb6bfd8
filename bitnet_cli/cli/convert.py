"""`bitnet convert`: a Hugging Face BitNet checkpoint (folder or repo id) → a GGUF model file."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer


class OutType(str, Enum):
    i2_s = "i2_s"
    tl1 = "tl1"
    tl2 = "tl2"
    tq2_0 = "tq2_0"
    tq1_0 = "tq1_0"
    f16 = "f16"
    f32 = "f32"


class EmbdType(str, Enum):
    f16 = "f16"
    q8_0 = "q8_0"
    q6_k = "q6_k"
    f32 = "f32"


CONVERT_EXAMPLES = [
    "bitnet convert models/BitNet-b1.58-2B-4T -o models/BitNet-b1.58-2B-4T/ggml-model-i2_s.gguf",
    "bitnet convert microsoft/bitnet-b1.58-2B-4T-bf16 -o 2b4t-i2_s.gguf --quant-embd q6_k",
    "bitnet convert tiiuae/Falcon3-1B-Instruct-1.58bit --outtype tq2_0 -o falcon3-1b-tq2_0.gguf",
]


def convert(
    src: Annotated[str, typer.Argument(help="HF model folder (config.json + *.safetensors) or hub repo id.", show_default=False)],
    outfile: Annotated[Optional[Path], typer.Option("-o", "--outfile", help="Output .gguf (default: <folder>/ggml-model-<outtype>.gguf).")] = None,
    outtype: Annotated[OutType, typer.Option("--outtype", "-q", "--quant-type", help="Type of the ternary projections.", case_sensitive=False)] = OutType.i2_s,
    quant_embd: Annotated[Optional[EmbdType], typer.Option("--quant-embd", help="Type of the token embedding / untied head (default f16; f32 for --outtype f32).", case_sensitive=False)] = None,
    name: Annotated[Optional[str], typer.Option("--model-name", help="general.name to record (default: the folder or repo name).")] = None,
    revision: Annotated[Optional[str], typer.Option("--revision", help="Hub revision when SRC is a repo id.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Convert a BitNet b1.58 checkpoint to GGUF (I2_S by default). The output path goes to stdout.

    SRC is a Hugging Face model folder (config.json + *.safetensors + tokenizer files) or a hub repo id.
    """
    import time

    from bitnet_cli import hub
    from bitnet_cli.convert import convert_checkpoint
    from bitnet_cli.errors import UserError

    entry = None if Path(src).exists() else hub.lookup(src)
    if entry is not None and entry.kind == "gguf":
        raise UserError(f"{src} ships a ready GGUF file; there is nothing to convert",
                        f"run `bitnet download {src}` (or `bitnet setup -hr {src}`) and use the file directly")
    folder = hub.resolve_model(src, revision=revision, include=list(hub.CHECKPOINT_PATTERNS))
    if outfile is None:
        base = folder if Path(src).exists() else Path("models") / src.split("/")[-1]
        outfile = base / f"ggml-model-{outtype.value}.gguf"
    t0 = time.perf_counter()
    with _progress(quiet, outfile.name) as progress:
        out = convert_checkpoint(folder, outfile, outtype.value, quant_embd.value if quant_embd else None, progress, name=name)
    if not quiet:
        from bitnet_cli.ui import info

        info(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB) in {time.perf_counter() - t0:.1f} s")
    print(out)


class _progress:
    """A rich progress bar over tensors on stderr (nothing when quiet)."""

    def __init__(self, quiet: bool, label: str) -> None:
        self.quiet, self.label, self.bar, self.task = quiet, label, None, None

    def __enter__(self):  # noqa: ANN204
        if self.quiet:
            return None
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

        from bitnet_cli.ui import console

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                            TimeRemainingColumn(), console=console, transient=False)
        self.bar.start()
        self.task = self.bar.add_task(f"converting {self.label}", total=None)
        return self.update

    def update(self, done: int, total: int, name: str) -> None:
        self.bar.update(self.task, completed=done, total=total, description=f"{name:<32}")

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def register(app: typer.Typer) -> None:
    app.command("convert", epilog="Examples:\n\n" + "\n\n".join(f"  {e}" for e in CONVERT_EXAMPLES))(convert)
