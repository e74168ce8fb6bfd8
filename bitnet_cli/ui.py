"""Terminal output: the one engine-side module that imports rich. Everything here goes to stderr."""
from __future__ import annotations

import os
import sys

from rich.console import Console

console = Console(stderr=True, no_color=bool(os.environ.get("NO_COLOR")), highlight=False)


def error(message: str) -> None:
    """Print one error line on stderr."""
    print(f"Error: {message}", file=sys.stderr, flush=True)


def info(message: str) -> None:
    """A status line on stderr (dim when on a terminal)."""
    console.print(message, style="dim", markup=False)


def warn(message: str) -> None:
    console.print(f"Warning: {message}", style="yellow", markup=False)
