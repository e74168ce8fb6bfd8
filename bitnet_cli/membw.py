"""This machine's DRAM read bandwidth, for `bitnet bench -v`'s "% of bandwidth" column.

It streams a buffer far larger than the L3 with the kernels' own loads and prefetch
(`bitnet_kernels.membw`), in the same run as the model, so the ratio holds whatever the machine.
"""
from __future__ import annotations

import numpy as np

DEFAULT_MIB = 512  # 16× the 32 MiB L3 of the reference machine: every pass streams from DRAM


def _buffer(mib: int) -> np.ndarray:
    # Written once so every page is really backed (no shared zero page, nothing to merge).
    buf = np.arange(mib * (1 << 20) // 8, dtype=np.uint64)
    buf *= np.uint64(0x9E3779B97F4A7C15)
    return buf


def read_bandwidth(threads: int = 1, *, mib: int = DEFAULT_MIB, passes: int = 8, buf: np.ndarray | None = None) -> float:
    """Best streaming read rate in bytes/s over `passes` passes, with `threads` threads."""
    from bitnet_kernels.membw import stream_read_gbs

    buf = _buffer(mib) if buf is None else buf
    return stream_read_gbs(threads, buf, passes=passes)["best"] * 1e9


def measure(thread_counts: list[int], *, mib: int = DEFAULT_MIB, passes: int = 8) -> dict[int, float]:
    """Bandwidth in bytes/s for each thread count, all on one buffer allocated once."""
    buf = _buffer(mib)
    return {t: read_bandwidth(t, passes=passes, buf=buf) for t in sorted(set(thread_counts))}
