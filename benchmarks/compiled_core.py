"""The installed mypyc-compiled online core against the same code as plain Python.

    .venv/bin/python benchmarks/compiled_core.py [--pairs 3] [--rounds 7] [--sim 0]

Why: issue #15's runtime goal (>= 1.0x ThreadPoolExecutor's throughput on
no-op tasks, priorities and stealing on) is bounded by the core's decision
per task (docs/benchmarks/online-perf.md, rounds 5 and 7), which is why the
install compiles the core with mypyc (setup.py). This measures what that buys:
fresh processes of the same install, alternating between the compiled build
and `ALLOCATOR_PURE_PYTHON=1` (the Python source of the same modules), each
running `bench.runtime_overhead` (and `bench.sim_speed` with `--sim N` tasks).
One JSON row per run, the load average beside it. Needs a compiled install
(`allocator --version` says `online core: mypyc`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from allocator import _native

_RUN = """
import json, os, sys
from allocator.online import bench, native_build
rounds, sim = int(sys.argv[1]), int(sys.argv[2])
row = {"code": native_build().build, "load": round(os.getloadavg()[0], 1)}
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


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=7, help="runtime_overhead rounds per run")
    ap.add_argument("--sim", type=int, default=0, help="also sim_speed with this many tasks")
    args = ap.parse_args()
    installed, _ = _native.decide()
    if installed.build != _native.MYPYC:
        sys.exit(f"no compiled online core to compare: {installed.reason}")
    base = {k: v for k, v in os.environ.items() if k != _native.ENV_PURE}
    for _ in range(args.pairs):
        for name, env in (("pure", {_native.ENV_PURE: "1"}), ("mypyc", {})):
            out = subprocess.run(
                [sys.executable, "-c", _RUN, str(args.rounds), str(args.sim)],
                env=base | env, check=True, capture_output=True, text=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
            if row["code"] != name:  # pragma: no cover - a broken build
                raise RuntimeError(f"asked for {name}, ran {row['code']}")
            sys.stdout.write(json.dumps(row) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
