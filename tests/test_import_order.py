"""Every engine module imports on its own, first, in a fresh interpreter.

An import cycle only shows when the cycle's second module is the first one
imported (``import allocator.bounds`` used to fail: bounds -> solvers ->
auto -> bounds, half initialised), which the rest of the suite never does
because ``allocator`` is already loaded by then.
"""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import importlib, pkgutil, sys, traceback
import allocator, models
names = sorted(m.name for pkg in (allocator, models)
               for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."))
names = [n for n in names if not n.endswith("__main__")]
failed = []
for name in names:
    for loaded in [m for m in sys.modules if m.split(".")[0] in ("allocator", "models")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        failed.append(name + ": " + traceback.format_exc(limit=1).strip().splitlines()[-1])
print(len(names))
print("\n".join(failed))
"""


def test_every_module_imports_first() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=240, check=True).stdout.splitlines()
    assert int(out[0]) > 100  # the walk found the engine, not an empty package
    assert out[1:] == [] or out[1:] == [""], "\n".join(out[1:])


def test_highs_loads_after_ortools_in_one_process() -> None:
    # ortools links its own HiGHS; highspy 1.15.x then failed to import after it
    # ("undefined symbol: Highs::releaseMemory"), which broke `milp` in any process that
    # had run CP-SAT first (auto, the HTTP workers). pyproject keeps highspy below 1.14.
    script = ("from ortools.sat.python import cp_model\n"
              "import highspy\n"
              "highspy.Highs()\n"
              "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "ok", out.stderr[-500:]
