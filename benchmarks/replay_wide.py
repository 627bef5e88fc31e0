"""Wide-job replay on a real log: every policy over the whole log and in job windows.

For each policy: one replay of the whole log (processors from the header),
timed (replay only), with the `allocator replay --json` row; then the log cut
into consecutive windows of `--window` jobs, each replayed from an empty
machine (Zhang et al., SC'20), mean bounded slowdown over the windows. The
baseline for speed is the single-server executor replay of the same log (fifo
on 10 agents, `allocator replay --agents 10 -p fifo`), timed in the same run:
the `x executor` column is its wall time over the policy's.

    .venv/bin/python benchmarks/replay_wide.py [LOG] [--window 1024] [-p easy ...]

Prints markdown tables and `uptime` (the machine is shared: read the ratios).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from allocator.cluster import read_swf_cluster
from allocator.cluster.bench import run_policy
from allocator.cluster.metrics import width_rows
from allocator.cluster.sim import simulate

ROOT = Path(__file__).resolve().parents[1]
KTH = ROOT / "data" / "traces" / "KTH-SP2-1996-2.1-cln.swf.gz"
POLICIES = ("fcfs", "easy", "conservative", "sjf", "sjf+easy", "sjf+conservative",
            "edf", "edf+easy", "edf+conservative", "priority+easy", "fair-user",
            "fair-user+easy", "fair-group+easy", "fair-user+conservative", "f1", "f1+easy")


def fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    return str(v)


def table(rows: list[dict[str, object]], cols: list[str]) -> str:
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("log", nargs="?", default=str(KTH))
    ap.add_argument("--window", type=int, default=1024)
    ap.add_argument("-p", "--policy", action="append")
    a = ap.parse_args()
    pols = a.policy or list(POLICIES)
    tr = read_swf_cluster(a.log)
    print(tr.summary())
    print(f"load before: {os.getloadavg()}")

    from allocator.workloads import read_swf
    from allocator.workloads.replay import replay

    w = read_swf(a.log)
    t0 = time.perf_counter()
    replay(w, "fifo", agents=10, samples=0)
    base = time.perf_counter() - t0
    print(f"\nbaseline: executor replay, fifo on 10 single servers: {base:.2f} s "
          f"({len(w) / base:,.0f} jobs/s)\n")

    rows, wins = [], []
    for p in pols:
        r = run_policy(tr.jobs, tr.procs, p)
        row = {**r.row, "wall_s": r.wall_s, "jobs_per_s": r.jobs_per_s,
               "x executor": base / r.wall_s}
        rows.append(row)
        win = run_policy(tr.jobs, tr.procs, p, job_window=a.window)
        wins.append({"policy": p, "windows": win.windows,
                     "mean_bounded_slowdown": win.row["mean_bounded_slowdown"],
                     "mean_wait": win.row["mean_wait"], "p95_wait": win.row["p95_wait"],
                     "utilisation": win.row["utilisation"],
                     "recorded_mean_bounded_slowdown":
                         win.row["recorded_mean_bounded_slowdown"],
                     "valid": win.row["valid"]})
        print(f"{p}: {r.wall_s:.3g} s, bsld {r.row['mean_bounded_slowdown']:.4g}, "
              f"windows bsld {win.row['mean_bounded_slowdown']:.4g}", flush=True)
    print("\n## Whole log\n")
    print(table(rows, ["policy", "jobs", "procs", "mean_wait", "mean_bounded_slowdown",
                       "p95_wait", "utilisation", "recorded_mean_wait",
                       "recorded_mean_bounded_slowdown", "valid", "wall_s", "jobs_per_s",
                       "x executor"]))
    print(f"\n## {a.window}-job windows from an empty machine (mean over windows)\n")
    print(table(wins, ["policy", "windows", "mean_bounded_slowdown", "mean_wait", "p95_wait",
                       "utilisation", "recorded_mean_bounded_slowdown", "valid"]))
    print("\n## By width class (whole log)\n")
    wr = []
    for p in ("fcfs", "easy", "conservative", "sjf+easy", "fair-user+easy"):
        if p in pols:
            wr += width_rows(tr.jobs, simulate(tr.jobs, tr.procs, p))
    print(table(wr, ["policy", "width", "jobs", "work_share", "mean_wait",
                     "mean_bounded_slowdown", "p95_wait", "recorded_mean_wait",
                     "recorded_mean_bounded_slowdown"]))
    print(f"\nload after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
