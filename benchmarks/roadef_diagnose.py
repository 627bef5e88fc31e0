"""Where the cost of a machine reassignment placement sits, against what no placement avoids.

    python benchmarks/roadef_diagnose.py data/roadef/A/model_a2_2.txt [SOLUTION] [--json]

For the initial placement and, when given, a solution file (the challenge's
assignment format, as `bench roadef --out` writes it): the five cost terms,
the load on machines with no safety capacity (every unit there costs) and on
the others, and per resource the usage above safety and the room below it
on the others, and the transient room left. Then the processes that can never
leave a zero-safety machine (no other machine's capacity minus its *initial*
usage holds them on every transient resource: a moved-away process holds its
transient room at home, so that is all the room a newcomer can ever get) and
a lower bound from them: their full load plus the aggregate bound of the rest
(the usage above the other machines' summed safety). Written for issue #18's
diagnosis of a2_2 and a2_3 (docs/benchmarks/roadef.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def stuck_processes(inst: Any) -> np.ndarray:
    """Processes that start on a zero-safety machine and fit on no other machine's
    static room (capacity minus initial usage on transient resources, capacity on all)."""
    from allocator.roadef.evaluate import usage

    zero = inst.safety.sum(axis=1) == 0
    tr = inst.transient
    room = inst.capacity - usage(inst, inst.initial)
    out = []
    for p in np.flatnonzero(zero[inst.initial]).tolist():
        r = inst.requirement[p]
        ok = (inst.capacity >= r).all(axis=1) & ~zero
        if tr.any():
            ok &= (room[:, tr] >= r[tr]).all(axis=1)
        if not ok.any():
            out.append(p)
    return np.asarray(out, dtype=np.int64)


def zero_safety_bound(inst: Any) -> int:
    """A lower bound: the stuck processes' full load plus the aggregate load bound of
    the others over the machines with a safety capacity."""
    zero = inst.safety.sum(axis=1) == 0
    stuck = stuck_processes(inst)
    rest = np.ones(inst.n_processes, dtype=bool)
    rest[stuck] = False
    fixed = int((inst.requirement[stuck] @ inst.load_weight).sum())
    excess = np.maximum(0, inst.requirement[rest].sum(axis=0) - inst.safety[~zero].sum(axis=0))
    return fixed + int((excess * inst.load_weight).sum())


def split(inst: Any, a: np.ndarray) -> dict[str, Any]:
    from allocator.roadef.evaluate import evaluate, transient_usage, usage

    zero = inst.safety.sum(axis=1) == 0
    use = usage(inst, a)
    hard = transient_usage(inst, a, use)
    over = np.maximum(0, use - inst.safety)
    room = np.maximum(0, inst.safety - use)
    return {
        "cost": evaluate(inst, a).as_dict(),
        "moved": int((a != inst.initial).sum()),
        "load_on_zero_safety_machines": int((over[zero] @ inst.load_weight).sum()),
        "load_on_other_machines": int((over[~zero] @ inst.load_weight).sum()),
        "others_over_safety_per_resource": over[~zero].sum(axis=0).tolist(),
        "others_room_below_safety_per_resource": room[~zero].sum(axis=0).tolist(),
        "transient_room_left": (inst.capacity - hard)[:, inst.transient].sum(axis=0).tolist(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("solution", type=Path, nargs="?")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from allocator.roadef.instance import read_assignment, read_instance

    model: Path = args.model
    inst = read_instance(model, model.with_name(model.name.replace("model_", "assignment_", 1)))
    zero = np.flatnonzero(inst.safety.sum(axis=1) == 0)
    stuck = stuck_processes(inst)
    row: dict[str, Any] = {
        "instance": inst.name,
        "transient_resources": np.flatnonzero(inst.transient).tolist(),
        "zero_safety_machines": zero.tolist(),
        "stuck_processes": stuck.tolist(),
        "stuck_load": int((inst.requirement[stuck] @ inst.load_weight).sum()),
        "zero_safety_lower_bound": zero_safety_bound(inst),
        "initial": split(inst, inst.initial),
    }
    if args.solution is not None:
        sol = read_assignment(args.solution, inst.n_processes, inst.n_machines)
        row["solution"] = split(inst, np.asarray(sol, dtype=np.int64))
    if args.json:
        sys.stdout.write(json.dumps(row) + "\n")
    else:
        for key, value in row.items():
            sys.stdout.write(f"{key}: {value}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
