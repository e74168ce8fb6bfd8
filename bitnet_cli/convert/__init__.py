"""Hugging Face BitNet b1.58 checkpoints → GGUF model files (every family in the spec)."""
from __future__ import annotations

from bitnet_cli.convert.encode import EMBD_TYPES, OUTTYPES
from bitnet_cli.convert.pipeline import convert_checkpoint, open_checkpoint

__all__ = ["convert_checkpoint", "open_checkpoint", "OUTTYPES", "EMBD_TYPES"]
