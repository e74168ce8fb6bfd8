"""The decode-thread governor picks the faster thread count and follows changes in load."""
from __future__ import annotations

from bitnet_cli.governor import ThreadGovernor


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def run(gov: ThreadGovernor, clock: FakeClock, cost: dict[int, float], steps: int, used: list[int]) -> None:
    current = {"n": gov.threads}

    def set_threads(n):
        current["n"] = n

    gov.set_threads = set_threads
    for _ in range(steps):
        def work():
            used.append(current["n"])
            clock.now += cost[current["n"]]
        gov.step(work)


def test_uses_requested_threads_when_they_are_faster():
    clock, used = FakeClock(), []
    gov = ThreadGovernor(2, lambda n: None, probe_every=8, clock=clock)
    run(gov, clock, {2: 0.05, 1: 0.09}, 64, used)
    assert used[-20:].count(2) >= 17  # mostly 2 threads; an occasional 1-thread probe


def test_falls_back_to_one_thread_when_parallel_steps_stall_and_recovers():
    clock, used = FakeClock(), []
    gov = ThreadGovernor(2, lambda n: None, probe_every=8, clock=clock)
    run(gov, clock, {2: 0.05, 1: 0.09}, 20, used)
    used.clear()
    run(gov, clock, {2: 1.5, 1: 0.09}, 40, used)  # the second core got busy
    assert used[-20:].count(1) >= 17
    used.clear()
    run(gov, clock, {2: 0.05, 1: 0.09}, 60, used)  # and free again
    assert used[-20:].count(2) >= 17


def test_single_thread_request_never_goes_parallel():
    clock, used = FakeClock(), []
    gov = ThreadGovernor(1, lambda n: None, clock=clock)
    run(gov, clock, {1: 0.1, 2: 0.01}, 10, used)
    assert set(used) == {1}
