"""Making memory resident ahead of use, from a background thread, and the arena the loader copies
weights into.

A fresh page costs a fault when it is first touched: on the VMs measured here about 2 GB/s of
anonymous memory written, a quarter of a second for the 2B-4T shape's file read. `madvise` with
`MADV_POPULATE_READ` / `MADV_POPULATE_WRITE` (Linux 5.14+) does the same work in bulk, and from a
thread it runs with the GIL released while the caller goes on importing and preparing. Elsewhere
nothing happens, and the first touch pays as before.
"""
from __future__ import annotations

import ctypes
import mmap
import sys
import threading
from typing import Any

import numpy as np

POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22 if sys.platform == "linux" else None)
POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23 if sys.platform == "linux" else None)


def populate_in_background(spans: list[tuple[int, int]], advice: int | None, hold: Any) -> threading.Thread | None:
    """Apply `advice` to each (address, length) span, in order, from a daemon thread.

    `hold` is kept alive by the thread (the mapping the addresses point into). Returns the
    thread, or None where the advice does not exist.
    """
    if advice is None or not spans:
        return None
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    page = mmap.PAGESIZE

    def work(held: Any = hold) -> None:
        for addr, length in spans:
            lo = addr // page * page
            if madvise(lo, addr + length - lo, advice) != 0:
                return  # an older kernel (EINVAL): first touches fault pages in as before

    thread = threading.Thread(target=work, name="bitnet-populate", daemon=True)
    thread.start()
    return thread


class WeightArena:
    """One anonymous mapping for the weights the loader copies into the kernels' layout, handed
    out in consecutive 64-byte aligned pieces; `populate()` makes it resident in the background
    beforehand, so the copies run at memory speed instead of faulting page by page."""

    ALIGN = 64

    def __init__(self, nbytes: int) -> None:
        self._mm = mmap.mmap(-1, max(int(nbytes), 1))
        self.buf = np.frombuffer(self._mm, np.uint8)
        self._at = 0

    @classmethod
    def size_for(cls, sizes: list[int]) -> int:
        """Bytes for pieces of these sizes (or for fewer, larger pieces made of them)."""
        return sum(-(-int(n) // cls.ALIGN) * cls.ALIGN for n in sizes)

    def take(self, n: int) -> np.ndarray:
        """The next `n` bytes (uint8, 64-byte aligned)."""
        start = self._at
        if start + n > self.buf.size:
            raise ValueError(f"weight arena: {n} bytes asked, {self.buf.size - start} left")
        self._at = -(-(start + n) // self.ALIGN) * self.ALIGN
        return self.buf[start : start + n]

    def populate(self) -> threading.Thread | None:
        return populate_in_background([(self.buf.ctypes.data, self.buf.size)], POPULATE_WRITE, self._mm)

    def release_rest(self) -> None:
        """Give back the pages no piece was taken from (they may have been made resident)."""
        page = mmap.PAGESIZE
        start = -(-self._at // page) * page
        if start < self.buf.size and hasattr(self._mm, "madvise"):
            self._mm.madvise(mmap.MADV_DONTNEED, start, self.buf.size - start)
