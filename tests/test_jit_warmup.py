"""jit.WarmUp: interpreter exit waits for a warm-up still running.

A daemon thread still inside numba's compiler at interpreter finalisation
crashed the process (SIGSEGV, after a 2 s solve on a cold cache had printed
its plan); exit now joins the warm-up thread.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from allocator.jit import HAVE_NUMBA

SCRIPT = """
import sys, time
from pathlib import Path
from allocator.jit import WarmUp

def slow() -> None:
    time.sleep(1.0)
    Path(sys.argv[1]).write_text("done")
    warm.mark_ready()

warm = WarmUp(slow, "test-warm-up")
assert warm.ready() is False  # started, not done: the caller does without the kernels
"""


@pytest.mark.skipif(not HAVE_NUMBA, reason="without numba nothing warms up")
def test_exit_waits_for_a_running_warm_up(tmp_path: Path) -> None:
    marker = tmp_path / "done"
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(marker)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-500:]
    assert marker.read_text() == "done"


def test_cache_fresh_reads_numbas_index_of_that_module_and_kernel(tmp_path: Path) -> None:
    import os

    from allocator.jit import cache_fresh

    mod = tmp_path / "kern.py"
    mod.write_text("x = 1\n")
    assert not cache_fresh(str(mod), "walk")  # no cache at all: a warm-up compiles
    (tmp_path / "__pycache__").mkdir()
    other = tmp_path / "__pycache__" / "kern.other-12.py311.nbi"
    other.write_text("")
    assert not cache_fresh(str(mod), "walk")  # another kernel's index does not count
    index = tmp_path / "__pycache__" / "kern.walk-12.py311.nbi"
    index.write_text("")
    os.utime(mod, (1_000, 1_000))
    assert cache_fresh(str(mod), "walk")
    os.utime(index, (500, 500))  # the module changed after the cache was written
    assert not cache_fresh(str(mod), "walk")
