"""The one clock module: every clock is a Clock; the waiting ones are SleepingClocks."""

from __future__ import annotations

import threading

import pytest

from allocator.batch import Watcher
from allocator.clock import Clock, MonotonicClock, SleepingClock, VirtualClock, WallClock
from allocator.errors import InvalidInputError


def test_every_clock_is_a_clock_and_the_waiting_ones_sleep() -> None:
    for c in (VirtualClock(), MonotonicClock(), WallClock(0.0)):
        assert isinstance(c, Clock)
    assert isinstance(VirtualClock(), SleepingClock)
    assert isinstance(MonotonicClock(), SleepingClock)
    assert not isinstance(WallClock(0.0), SleepingClock)


def test_virtual_sleep_moves_time_unless_stopped() -> None:
    c, stop = VirtualClock(5.0), threading.Event()
    c.sleep(2.5, stop)
    assert c.now() == 7.5
    stop.set()
    c.sleep(10.0, stop)
    assert c.now() == 7.5
    with pytest.raises(InvalidInputError):
        c.set(1.0)


def test_monotonic_sleep_returns_at_once_when_stopped() -> None:
    c, stop = MonotonicClock(), threading.Event()
    stop.set()
    t0 = c.now()
    c.sleep(30.0, stop)
    assert c.now() - t0 < 1.0


def test_the_watch_loop_runs_on_a_virtual_clock(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "in").mkdir()
    clock = VirtualClock()
    w = Watcher(tmp_path / "in", tmp_path / "out", every=30, clock=clock)
    w.run(threading.Event(), max_ticks=3)
    assert clock.now() == pytest.approx(60.0)
