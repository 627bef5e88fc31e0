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
