"""Online executor benchmarks: simulator speed, runtime overhead, policy quality.

    .venv/bin/python benchmarks/online_bench.py [--tasks N] [--quick] [--json FILE]
    allocator bench online [--tasks N] [--quick]     (same tables)

The machine is shared: the speed table reports CPU seconds next to wall
seconds, and the runtime table compares against ThreadPoolExecutor in the
same run (alternating rounds).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from allocator.cli.simulate import print_bench


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=1_000_000, help="tasks in the speed run")
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = ap.parse_args()
    rows = print_bench(args.tasks, quick=args.quick)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
