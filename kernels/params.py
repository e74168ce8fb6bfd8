"""Kernel parameters (tile shape, prefetch distance, parallel chunks) per shape, and their defaults.

`tune.py` fills the table from its cache or presets. Each weight keeps the parameters it looked up
per (n-kind, threads) until `version` changes, so a tuned table applies to weights prepared
before it was loaded too.
"""
from __future__ import annotations

from typing import Any

# n-kind: "gemv" for one token, "gemm" for several.
DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    ("i2_s", "gemv"): {"pf": 4096, "chunks": 0},  # chunks 0 = one per thread
    ("i2_s", "gemm"): {"block": "4x2", "tok_block": 128, "chunks": 0},
    ("dense", "gemv"): {"pf": 8192, "chunks": 0},
    ("dense", "gemm"): {"tok_block": 64, "chunks": 0},
}

_table: dict[tuple[str, int, int, str, int], dict[str, Any]] = {}
version = 0  # bumped on every change, so per-weight call plans know to look again


def n_kind(n: int) -> str:
    return "gemv" if n == 1 else "gemm"


def lookup(quant: str, M: int, K: int, kind: str, threads: int) -> dict[str, Any]:
    """Tuned parameters for this shape and thread count, else the defaults for the quant family."""
    hit = _table.get((quant, M, K, kind, threads))
    if hit is not None:
        return hit
    family = quant if (quant, kind) in DEFAULTS else "dense"
    return DEFAULTS[(family, kind)]


def set_params(quant: str, M: int, K: int, kind: str, threads: int, params: dict[str, Any]) -> None:
    """Record parameters for one (quant, shape, n-kind, threads); unknown keys are kept as given."""
    global version
    family = quant if (quant, kind) in DEFAULTS else "dense"
    _table[(quant, M, K, kind, threads)] = {**DEFAULTS[(family, kind)], **params}
    version += 1


def remove(M: int, K: int) -> None:
    """Forget every entry of one shape."""
    global version
    for key in [k for k in _table if k[1:3] == (M, K)]:
        del _table[key]
    version += 1


def clear() -> None:
    global version
    _table.clear()
    version += 1


def chunks_for(params: dict[str, Any], threads: int) -> int:
    c = int(params.get("chunks", 0))
    return c if c > 0 else threads
