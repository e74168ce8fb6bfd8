"""Thread count shared by every kernel: one thread runs serial kernels (no parallel region)."""
from __future__ import annotations

import numba

_threads: int | None = None


def set_num_threads(n: int) -> int:
    """Use `n` threads in kernels (clamped to Numba's pool size); returns the count in effect."""
    global _threads
    n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    _threads = n
    return n


def get_num_threads() -> int:
    """Threads the kernels use now (Numba's pool size until `set_num_threads` is called)."""
    return _threads if _threads is not None else numba.config.NUMBA_NUM_THREADS
