"""The scale sweep's phase clock: where the wall and CPU time of one sweep went."""

from __future__ import annotations

import time

from bench.sweep_worker import PhaseClock
from bench.tables import PHASES


def _busy(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_each_phase_ends_where_the_sweep_told_the_clock() -> None:
    clock = PhaseClock()
    _busy(0.05)
    clock.listed(100)
    clock.listed(200)  # the last page's progress ends the listing
    _busy(0.05)
    clock.sending(1, 3)
    _busy(0.10)
    clock.sending(2, 3)
    clock.sending(3, 3)
    phases = clock.phases()
    assert list(phases) == list(PHASES)
    assert phases["send"]["cpu_s"] >= 0.09
    assert phases["list"]["cpu_s"] >= 0.04
    assert phases["decide"]["cpu_s"] >= 0.04
    assert all(spent["wall_s"] >= spent["cpu_s"] * 0.5 >= 0 for spent in phases.values())


def test_with_nothing_sent_the_decisions_count_in_finish() -> None:
    clock = PhaseClock()
    clock.listed(100)
    _busy(0.05)
    phases = clock.phases()
    assert list(phases) == ["list", "finish"]
    assert phases["finish"]["cpu_s"] >= 0.04
