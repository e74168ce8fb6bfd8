"""Decode-thread governor: fall back to one thread while the other cores are busy.

Every parallel kernel ends in a barrier; when another process holds a core, one descheduled
worker stalls each barrier for a scheduler slice, and a 2-thread decode step can become many
times slower than a 1-thread one. The governor times decode steps at both counts, keeps a
running estimate of each, runs the faster, and re-probes the other now and then.
"""
from __future__ import annotations

import time
from collections.abc import Callable


class ThreadGovernor:
    """Chooses the thread count for each single-token step.

    Args:
        threads: the requested count (the governor only ever runs `threads` or 1).
        set_threads: applies a count (e.g. `bitnet_kernels.set_num_threads`).
        probe_every: steps between probes of the count not in use.
    """

    def __init__(self, threads: int, set_threads: Callable[[int], object], probe_every: int = 16,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.threads = threads
        self.set_threads = set_threads
        self.probe_every = probe_every
        self.clock = clock
        self.estimate: dict[int, float] = {}
        self.steps = 0

    def _choose(self) -> int:
        if self.threads <= 1:
            return 1
        for n in (self.threads, 1):  # measure both once before judging
            if n not in self.estimate:
                return n
        best = min(self.estimate, key=self.estimate.__getitem__)
        if self.steps % self.probe_every == 0:
            return 1 if best != 1 else self.threads
        return best

    def step(self, fn: Callable[[], object]) -> object:
        """Run one decode step under the chosen thread count and record its time."""
        n = self._choose()
        probing = bool(self.estimate) and n != min(self.estimate, key=self.estimate.__getitem__)
        self.set_threads(n)
        t0 = self.clock()
        try:
            return fn()
        finally:
            dt = self.clock() - t0
            old = self.estimate.get(n)
            # A probe replaces the stale estimate; the count in use is averaged, so one slow
            # step moves it a lot (stalls are 10x, not 10 %) but noise does not flip it.
            self.estimate[n] = dt if old is None or probing else 0.7 * old + 0.3 * dt
            self.steps += 1
            self.set_threads(self.threads)  # prefill and everything else keep the requested count
