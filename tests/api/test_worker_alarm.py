"""The worker's hard time limit never interrupts a module being imported."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from allocator.usecases import TimeUp
from api import worker


@pytest.fixture
def armed_worker() -> Iterator[None]:
    """A work item in progress with the worker's SIGALRM handler installed."""
    old = signal.signal(signal.SIGALRM, worker._on_alarm)
    worker._current = worker._Current("w")
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        worker._current = None


def test_the_alarm_waits_for_an_import_to_finish(tmp_path: Path, armed_worker: None,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A TimeUp raised inside a module's body left a half-imported package in sys.modules
    (numba, imported by the first pareto request of a worker): every later request of
    that worker failed with 500 'partially initialized module numba.core.types'."""
    (tmp_path / "slow_mod_g.py").write_text(
        "import time\n"
        "for _ in range(40):\n"
        "    time.sleep(0.005)\n"
        "DONE = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "slow_mod_g", raising=False)
    signal.setitimer(signal.ITIMER_REAL, 0.02)
    with pytest.raises(TimeUp):
        import slow_mod_g  # noqa: F401

        signal.pause()  # the deferred alarm lands here, after the import
    assert sys.modules["slow_mod_g"].DONE
