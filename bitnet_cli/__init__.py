"""bitnet-cli: run BitNet b1.58 ternary LLMs on plain CPUs.

    >>> import bitnet_cli
    >>> model = bitnet_cli.load("ggml-model-i2_s.gguf")
    >>> print(bitnet_cli.generate(model, "Hello", max_tokens=16))
"""
from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

__all__ = ["load", "generate", "stream_generate", "__version__"]

if TYPE_CHECKING:
    from bitnet_cli.engine import Model


def load(path: Any, **kwargs: Any) -> "Model":
    """Load a GGUF model file (see `bitnet_cli.engine.load`)."""
    from bitnet_cli.engine import load as _load

    return _load(path, **kwargs)


def __getattr__(name: str) -> Any:
    # Lazy so that `import bitnet_cli` (and `bitnet --help`) stays fast.
    if name in ("generate", "stream_generate", "GenerationResponse"):
        from bitnet_cli import generation as _gen

        return getattr(_gen, name)
    raise AttributeError(name)
