"""Two versions of the asyncio Runtime against the thread pool, in one process.

    .venv/bin/python benchmarks/runtime_ab.py [--old REV] [--rounds 5] [--runs 1]

Why: the runtime's wall ratio against `ThreadPoolExecutor` moves by +-15 % between
runs at the load of a shared machine, more than a change to the runtime's own
code does. Here the old runtime (`allocator/online/runtime.py` at git revision
REV, loaded beside the installed one) and the new one (the installed one) run
alternately in the same process, against the same pool rounds and over the same
core (compiled or not, as installed), so load changes hit both alike: only the
runtime's code differs. Each round runs the pool, then blocking and coroutine
no-op tasks (20,000, 8 workers, priority+stealing, as `bench.runtime_overhead`)
through old and new, the order of old and new swapped every round. One JSON row
per run: per runtime and mode, [wall ratio against the pool (the issue's
`runtime_vs_threadpool`), CPU per task as a multiple of the pool's], medians.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from allocator.online import bench, native_build
from allocator.online import runtime as new_runtime

ROOT = Path(__file__).resolve().parent.parent


def load_old(rev: str) -> ModuleType:
    """`allocator/online/runtime.py` at `rev`, as module `allocator.online.runtime_old`."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:allocator/online/runtime.py"],
                         check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "runtime_old.py"
    path.write_text(src, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("allocator.online.runtime_old", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # (its dataclasses look their module up)
    spec.loader.exec_module(mod)
    return mod


async def _run(runtime_cls: Any, n: int, workers: int, coro: bool, seed: int) -> float:
    """`bench._rt` with the Runtime class given: wall seconds, workload drawn before."""
    return await bench._rt(n, workers, coro, seed, runtime_cls=runtime_cls)


def one_run(old: ModuleType, rounds: int, n: int = 20_000) -> dict[str, Any]:
    """One row: medians over `rounds` alternating rounds."""
    times: dict[str, list[tuple[float, float]]] = {
        k: [] for k in ("pool", "old blocking", "new blocking", "old coroutines",
                        "new coroutines")}
    load = os.getloadavg()[0]
    for r in range(rounds):
        pairs = [("blocking", False), ("coroutines", True)]
        sides = [("old", old.Runtime), ("new", new_runtime.Runtime)]
        if r % 2:
            sides.reverse()
        c0 = time.process_time()
        times["pool"].append((bench._tpe(n, 8), time.process_time() - c0))
        for mode, coro in pairs:
            for side, cls in sides:
                c0 = time.process_time()
                wall = asyncio.run(_run(cls, n, 8, coro, r))
                times[f"{side} {mode}"].append((wall, time.process_time() - c0))
    base = statistics.median(w for w, _ in times["pool"])
    base_cpu = statistics.median(c for _, c in times["pool"])
    row: dict[str, Any] = {"load": round(load, 1), "build": native_build().build,
                           "pool_cpu_us": round(base_cpu / n * 1e6, 2)}
    for k, ts in times.items():
        if k != "pool":
            row[k] = [round(base / statistics.median(w for w, _ in ts), 3),
                      round(statistics.median(c for _, c in ts) / base_cpu, 3)]
    row["load_end"] = round(os.getloadavg()[0], 1)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--old", default="HEAD", help="git revision of the old runtime.py")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    old = load_old(args.old)
    for _ in range(args.runs):
        print(json.dumps({"old": args.old, **one_run(old, args.rounds)}), flush=True)


if __name__ == "__main__":
    main()
