"""Thread count shared by every kernel, and the fallback to serial kernels when cores are busy.

With one thread the kernels run serially: no parallel region, no barrier. With more, every
parallel region ends in a barrier that waits for *every* worker, so a worker descheduled by
another process stalls the call for a scheduler time slice (measured: 1-thread GEMV 1.4 ms mean,
2-thread 10 ms mean on an overloaded 2-core box). `Adaptive` times both variants per weight shape
as they run and uses the serial kernel while it is the faster one, probing the other now and then,
so a busy core costs about 1-thread speed instead of milliseconds per call.
`BITNET_ADAPTIVE_THREADS=0` turns this off.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any, Callable, Hashable, Iterator

import numba

_threads: int | None = None


def set_num_threads(n: int) -> int:
    """Use `n` threads in kernels (clamped to Numba's pool size); returns the count in effect."""
    global _threads
    n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    _threads = n
    ADAPTIVE.reset()
    return n


def get_num_threads() -> int:
    """Threads the kernels use now (Numba's pool size until `set_num_threads` is called)."""
    return _threads if _threads is not None else numba.config.NUMBA_NUM_THREADS


class Adaptive:
    """Per-key running means of parallel and serial call times; picks the faster one.

    Starts parallel and measures serial on the second call. Afterwards it runs the faster side
    and probes the other one after `probe_every` calls; each probe that confirms the choice
    doubles the interval (up to `max_interval`), so a lasting state costs few slow probes, while
    a probe that flips the choice resets it. Means are exponential (weight `alpha`), so a change
    in load shows within a few calls.
    """

    def __init__(self, probe_every: int = 16, max_interval: int = 2048, alpha: float = 0.25, margin: float = 1.15) -> None:
        self.probe_every, self.max_interval, self.alpha, self.margin = probe_every, max_interval, alpha, margin
        self.enabled = os.environ.get("BITNET_ADAPTIVE_THREADS", "1") != "0"
        self._state: dict[Hashable, list[float]] = {}  # key -> [mean_par, mean_ser, calls, interval, next_probe]

    def reset(self) -> None:
        self._state.clear()

    @contextlib.contextmanager
    def disabled(self) -> Iterator[None]:
        """Always run the parallel kernels inside this block (tuning and benchmarks time them)."""
        old, self.enabled = self.enabled, False
        try:
            yield
        finally:
            self.enabled = old

    def _faster_is_parallel(self, st: list[float]) -> bool:
        return st[0] <= self.margin * st[1]

    def use_parallel(self, key: Hashable) -> bool:
        if not self.enabled:
            return True
        st = self._state.get(key)
        if st is None:
            return True
        if st[1] == 0.0:
            return False  # the second call measures serial once
        parallel = self._faster_is_parallel(st)
        return not parallel if st[2] >= st[4] else parallel

    def record(self, key: Hashable, parallel: bool, seconds: float) -> None:
        st = self._state.get(key)
        if st is None:
            # The third call probes again, so a cold first call cannot decide the matter.
            st = self._state[key] = [0.0, 0.0, 0.0, float(self.probe_every), 2.0]
        before = self._faster_is_parallel(st) if st[0] and st[1] else None
        i = 0 if parallel else 1
        probe = before is not None and parallel != before
        if st[i] == 0.0 or probe:
            # A first call (cold pages, first touch of the weights) or a probe of the side not in
            # use replaces the estimate: averaging would let one stale outlier pin the slower side.
            st[i] = seconds
        else:
            st[i] += self.alpha * (seconds - st[i])
        st[2] += 1
        if probe:
            st[3] = min(self.max_interval, st[3] * 2) if self._faster_is_parallel(st) == before else float(self.probe_every)
            st[4] = st[2] + st[3]

    def run(self, key: Hashable, parallel_call: Callable[..., None], serial_call: Callable[..., None], *args: Any) -> None:
        """Run whichever variant is currently faster for `key` (with `args`), and time it."""
        if not self.enabled:  # always parallel: nothing to time
            parallel_call(*args)
            return
        par = self.use_parallel(key)
        t0 = time.perf_counter()
        (parallel_call if par else serial_call)(*args)
        self.record(key, par, time.perf_counter() - t0)


ADAPTIVE = Adaptive()


_synced: dict[int, int] = {}  # Python thread id -> thread count already given to Numba there


def sync_threads() -> int:
    """The kernels' thread count, made Numba's count in the calling thread (Numba's is per thread)."""
    threads = get_num_threads()
    if threads > 1 and _synced.get(threading.get_ident()) != threads:
        if numba.get_num_threads() != threads:
            numba.set_num_threads(threads)
        _synced[threading.get_ident()] = threads
    return threads


def run_threaded(key: Hashable, parallel: Callable[..., None], serial: Callable[..., None], *args: Any,
                 worth_it: bool = True) -> None:
    """`serial(*args)` with one thread, or when `worth_it` is false (too little work to pay for a
    parallel region); otherwise `parallel(*args)` or `serial(*args)`, whichever `ADAPTIVE` finds
    faster now for `key`. Every kernel call that may run in parallel goes through here."""
    if sync_threads() == 1 or not worth_it:
        serial(*args)
    else:
        ADAPTIVE.run(key, parallel, serial, *args)
