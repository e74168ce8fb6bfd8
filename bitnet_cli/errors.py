"""User-facing errors: each says what is wrong and what to do; the CLI prints one line."""
from __future__ import annotations


class BitnetError(Exception):
    """Base class for errors meant for users.

    Args:
        message: what is wrong.
        hint: what to do about it (optional).
    """

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class UserError(BitnetError):
    """Bad flag values, missing files and other input mistakes."""


class ModelFormatError(BitnetError):
    """A model file that is not a valid GGUF, or is truncated or inconsistent."""


class UnsupportedModelError(BitnetError):
    """A valid file or checkpoint that uses an architecture or type we do not run."""


class DownloadError(BitnetError):
    """The hub could not give us a file (offline, gated, missing)."""
