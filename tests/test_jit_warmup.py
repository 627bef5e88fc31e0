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


# numba highlights its (internal, often caught) typing-error messages with
# colorama when colorama is importable (Ray puts its vendored copy on sys.path).
# colorama.init()/deinit() assign sys.stdout process-wide and deinit restores the
# stream saved at the first init: from a warm-up thread compiling on a cold
# cache, that dropped (and so closed) the stream another thread had installed
# (a CliRunner capture in CI; an MCP stdio transport would lose its stdout).
STALE_STDOUT = """
import io, sys, threading
sys.path.append(sys.argv[1])
import allocator
import numba.core.errors as errors

done = threading.Event()

def compile_messages() -> None:  # what numba's typing does while a kernel compiles
    for _ in range(20000):
        errors.termcolor().code("x")
    done.set()

threading.Thread(target=compile_messages).start()
swapped = 0
while not done.is_set():
    mine = io.StringIO()
    sys.stdout = mine
    for _ in range(50):
        swapped += sys.stdout is not mine
sys.stdout = sys.__stdout__
print(swapped)
"""


def _colorama_dir() -> str | None:
    import importlib.util

    spec = importlib.util.find_spec("colorama")
    if spec is not None and spec.origin:
        return str(Path(spec.origin).parent.parent)
    ray = importlib.util.find_spec("ray")
    if ray is not None and ray.origin:
        vendored = Path(ray.origin).parent / "thirdparty_files"
        if (vendored / "colorama").is_dir():
            return str(vendored)
    return None


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed")
def test_numba_compiles_never_swap_sys_stdout_even_with_colorama_importable() -> None:
    where = _colorama_dir()
    if where is None:
        pytest.skip("no colorama (nor Ray's vendored copy) to import")
    out = subprocess.run([sys.executable, "-c", STALE_STDOUT, where], capture_output=True,
                         text=True, timeout=120, cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "0", "another thread replaced sys.stdout"
