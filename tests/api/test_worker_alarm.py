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


def test_a_ready_worker_has_the_pareto_stack_imported() -> None:
    """The pareto capability imported numba on a worker's first request: inside a 0.5 s
    limit the import outran it, the pool killed the worker, and its fresh replacement
    failed the next request the same way (no pareto request ever answered 200)."""
    import subprocess

    code = (
        "import sys\n"
        "from api.worker import _preload_capabilities\n"
        "import allocator.engine\n"
        "from allocator.solvers import solver_names\n"
        "solver_names(); allocator.engine._preload(); _preload_capabilities()\n"
        "before = set(sys.modules)\n"
        "from allocator.pareto import parse_objectives, pick\n"
        "from allocator.problem import compile_snapshot\n"
        "from allocator.solvers.base import Budget\n"
        "from allocator.solvers.exact_front import exact_front\n"
        "from allocator.solvers.nsga2 import Nsga2Config, nsga2_front\n"
        "print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] == 'numba'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout
