"""The `bitnet` Typer app: command registration and error mapping."""
from __future__ import annotations

import importlib
import os
import sys

import typer

app = typer.Typer(
    name="bitnet",
    help="Run BitNet b1.58 ternary LLMs on plain CPUs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Each module defines `register(app)`; they import only typer at module level.
COMMANDS = [
    "run",
    "chat",
    "serve",
    "bench",
    "download",
    "convert",
    "setup",
    "dummy",
]

for _name in COMMANDS:
    importlib.import_module(f"bitnet_cli.cli.{_name}").register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the app, turning user errors into one line and an exit code."""
    from bitnet_cli.errors import BitnetError

    debug = os.environ.get("BITNET_DEBUG", "") not in ("", "0")
    try:
        app(args=argv, standalone_mode=False)
    except BitnetError as e:
        if debug:
            raise
        from bitnet_cli.ui import error

        error(str(e))
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        if debug:
            raise
        print("", file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - the last line of defence for users
        if debug:
            raise
        _handle_other(e)


def _handle_other(e: Exception) -> None:
    from bitnet_cli.ui import error

    # Typer/click usage errors carry their own exit code and message.
    exit_code = getattr(e, "exit_code", None)
    show = getattr(e, "show", None)
    if exit_code is not None and callable(show):
        show()
        sys.exit(exit_code)
    if type(e).__name__ == "Abort":
        sys.exit(130)
    if isinstance(e, FileNotFoundError):
        error(f"{e.filename or e}: no such file — check the path")
    elif isinstance(e, MemoryError):
        error("out of memory — use a smaller model or a smaller context (-c)")
    else:
        error(f"{type(e).__name__}: {e} — rerun with BITNET_DEBUG=1 for the traceback and report it")
    sys.exit(1)
