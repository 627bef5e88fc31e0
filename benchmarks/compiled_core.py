"""The online core compiled with mypyc, against the same code as plain Python.

    .venv/bin/python benchmarks/compiled_core.py [--pairs 3] [--rounds 7] [--sim 0]

Why: issue #15's runtime goal (>= 1.0x ThreadPoolExecutor's throughput on
no-op tasks, priorities and stealing on) is bounded by the core's decision
per task (~1,450 Python bytecodes; docs/benchmarks/online-perf.md, rounds 5
and 7). This measures what compiling that same code buys, without changing
how the project is built or installed.

Copies this tree's `allocator` and `models` packages into two temporary
directories (with the project's mypy settings), compiles the core's
modules in one of them with mypyc (shipped with mypy, a dev dependency;
needs a C compiler and the Python headers), then runs
`bench.runtime_overhead` (and `bench.sim_speed` with `--sim N` tasks) in a
fresh process per copy, the copies alternating. Prints one JSON row per run
(the load average beside it). Nothing is written into the tree.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The modules every decision runs through (the runtime's own module subclasses
#: asyncio.Future, which mypyc cannot compile, and stays Python).
COMPILED = ["allocator/online/core.py", "allocator/online/placement.py",
            "allocator/online/queues.py", "allocator/online/state.py",
            "allocator/online/stealing.py", "allocator/online/simulator.py"]

_RUN = """
import json, os, sys
import allocator.online.core as core
from allocator.online import bench
rounds, sim = int(sys.argv[1]), int(sys.argv[2])
row = {"code": sys.argv[3], "core_module": os.path.basename(core.__file__),
       "load": round(os.getloadavg()[0], 1)}
for r in bench.runtime_overhead(tasks=20_000, rounds=rounds):
    row[r["mode"]] = {"runtime_vs_threadpool": round(r["runtime_vs_threadpool"], 3),
                      "cpu_us_per_task": round(r["cpu_us_per_task"], 2),
                      "cpu_vs_pool": round(r["cpu_vs_tpe"], 3)}
if sim:
    for r in bench.sim_speed(sim):
        row["sim " + r["policy"]] = round(r["events_per_cpu_s"])
row["load_end"] = round(os.getloadavg()[0], 1)
print(json.dumps(row))
"""


def _copy(dest: Path) -> None:
    skip = shutil.ignore_patterns("__pycache__", "*.so", "*.pyc")
    for pkg in ("allocator", "models"):
        shutil.copytree(ROOT / pkg, dest / pkg, ignore=skip)
    # The project's mypy settings but its package list (mypyc gets the modules).
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    lines = ["[mypy]"] + [f"{k} = {_ini(v)}" for k, v in cfg.items() if k != "packages"]
    (dest / "mypy.ini").write_text("\n".join(lines) + "\n")


def _ini(v: object) -> str:
    if isinstance(v, list):
        return ", ".join(map(str, v))
    return str(v).lower() if isinstance(v, bool) else str(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=7, help="runtime_overhead rounds per run")
    ap.add_argument("--sim", type=int, default=0, help="also sim_speed with this many tasks")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="allocator-mypyc-") as tmp:
        plain, compiled = Path(tmp, "plain"), Path(tmp, "compiled")
        _copy(plain)
        _copy(compiled)
        subprocess.run([sys.executable, "-m", "mypyc", *COMPILED], cwd=compiled, check=True,
                       stdout=subprocess.DEVNULL)
        for _ in range(args.pairs):
            for name, where in (("plain", plain), ("mypyc", compiled)):
                env = dict(os.environ, PYTHONPATH=str(where))
                out = subprocess.run(
                    [sys.executable, "-c", _RUN, str(args.rounds), str(args.sim), name],
                    cwd=where, env=env, check=True, capture_output=True, text=True).stdout
                row = json.loads(out.strip().splitlines()[-1])
                expect = ".so" if name == "mypyc" else ".py"
                if not row["core_module"].endswith(expect):  # pragma: no cover - a broken build
                    raise RuntimeError(f"{name}: imported {row['core_module']}")
                sys.stdout.write(json.dumps(row) + "\n")
                sys.stdout.flush()


if __name__ == "__main__":
    main()
