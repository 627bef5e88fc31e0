"""The exact ROADEF cost of an assignment and its rule violations, from scratch.

This is the reference the solver's incremental bookkeeping is tested against
and what `bench roadef` reports `valid` from: it shares no state with the
solver, recomputes every sum from the assignment, and keeps all sums in exact
integers (int64 arrays, Python ints for totals).

Hard rules (a placement is valid when none is broken):
* capacity  - per machine and resource, usage <= capacity; for a transient
  resource a moved process also still counts on its initial machine;
* conflict  - the processes of one service sit on distinct machines;
* spread    - service s covers at least spreadMin(s) locations;
* dependency - if s depends on s2, every neighbourhood holding a process of s
  holds one of s2.
Soft terms (the cost): load, balance, process move, service move, machine move.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from allocator.errors import InvalidInputError
from allocator.roadef.instance import RoadefInstance


@dataclass(frozen=True)
class CostBreakdown:
    """The five cost terms of the challenge (each already weighted) and their total."""

    load: int
    balance: int
    process_move: int
    service_move: int
    machine_move: int

    @property
    def total(self) -> int:
        return (self.load + self.balance + self.process_move + self.service_move
                + self.machine_move)

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "total": self.total}


@dataclass(frozen=True)
class Violation:
    """One broken hard rule, naming what it concerns (None where it does not apply)."""

    rule: str  # "capacity" | "transient" | "conflict" | "spread" | "dependency"
    message: str
    machine: int | None = None
    service: int | None = None
    process: int | None = None
    resource: int | None = None
    neighbourhood: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def check_assignment(inst: RoadefInstance, assignment: np.ndarray) -> np.ndarray:
    """The assignment as int64[P] with every index in range, or InvalidInputError."""
    a = np.asarray(assignment)
    if a.shape != (inst.n_processes,) or (a.size and a.dtype.kind not in "iu"):
        raise InvalidInputError(f"expected {inst.n_processes} integer machine indices, "
                                f"got shape {a.shape} of {a.dtype}", field="assignment")
    a = a.astype(np.int64, copy=False)
    if a.size and (a.min() < 0 or a.max() >= inst.n_machines):
        p = int(np.argmax((a < 0) | (a >= inst.n_machines)))
        raise InvalidInputError(f"process {p}: machine {int(a[p])} does not exist "
                                f"({inst.n_machines} machines)", field=f"assignment[{p}]")
    return a


def usage(inst: RoadefInstance, assignment: np.ndarray) -> np.ndarray:
    """int64[M,R]: the summed requirements of the processes on each machine."""
    out = np.zeros((inst.n_machines, inst.n_resources), dtype=np.int64)
    np.add.at(out, assignment, inst.requirement)
    return out


def transient_usage(inst: RoadefInstance, assignment: np.ndarray,
                    use: np.ndarray | None = None) -> np.ndarray:
    """int64[M,R]: usage plus, on transient resources, moved processes at their origin."""
    out = usage(inst, assignment) if use is None else use.copy()
    moved = assignment != inst.initial
    if inst.transient.any() and moved.any():
        extra = np.zeros_like(out)
        np.add.at(extra, inst.initial[moved], inst.requirement[moved])
        out[:, inst.transient] += extra[:, inst.transient]
    return out


def evaluate(inst: RoadefInstance, assignment: np.ndarray) -> CostBreakdown:
    """The exact weighted cost terms of `assignment` (feasible or not)."""
    a = check_assignment(inst, assignment)
    use = usage(inst, a)
    over = np.maximum(0, use - inst.safety)
    load = int((over.sum(axis=0) * inst.load_weight).sum())
    free = inst.capacity - use
    balance = 0
    for b in inst.balances:
        balance += b.weight * int(np.maximum(0, b.target * free[:, b.r1] - free[:, b.r2]).sum())
    moved = a != inst.initial
    pm = int(inst.process_move_cost[moved].sum()) * inst.weight_process_move
    per_service = np.bincount(inst.service[moved], minlength=inst.n_services)
    sm = (int(per_service.max()) if per_service.size else 0) * inst.weight_service_move
    mm = int(inst.machine_move_cost[inst.initial[moved], a[moved]].astype(np.int64).sum())
    return CostBreakdown(load=load, balance=balance, process_move=pm, service_move=sm,
                         machine_move=mm * inst.weight_machine_move)


def violations(inst: RoadefInstance, assignment: np.ndarray, *,
               limit: int | None = None) -> list[Violation]:
    """Every broken hard rule of `assignment` (at most `limit` of them when given)."""
    a = check_assignment(inst, assignment)
    out: list[Violation] = []
    use = usage(inst, a)
    tuse = transient_usage(inst, a, use)
    for m, r in zip(*np.nonzero(tuse > inst.capacity), strict=True):
        m, r = int(m), int(r)
        if use[m, r] > inst.capacity[m, r]:
            out.append(Violation("capacity", f"machine {m} resource {r}: usage "
                                 f"{int(use[m, r])} > capacity {int(inst.capacity[m, r])}",
                                 machine=m, resource=r))
        else:
            out.append(Violation("transient", f"machine {m} transient resource {r}: usage "
                                 f"{int(use[m, r])} + {int(tuse[m, r] - use[m, r])} held by "
                                 f"processes moved away > capacity "
                                 f"{int(inst.capacity[m, r])}", machine=m, resource=r))
    # conflict: two processes of one service on one machine
    order = np.lexsort((a, inst.service))
    s_sorted, m_sorted = inst.service[order], a[order]
    dup = np.nonzero((s_sorted[1:] == s_sorted[:-1]) & (m_sorted[1:] == m_sorted[:-1]))[0]
    for i in dup:
        p, q = int(order[i]), int(order[i + 1])
        out.append(Violation("conflict", f"service {int(inst.service[p])}: processes {p} and "
                             f"{q} both on machine {int(a[p])}", machine=int(a[p]),
                             service=int(inst.service[p]), process=q))
    # spread: distinct locations per service
    S = inst.n_services
    loc_pairs = np.unique(inst.service * inst.n_locations + inst.location[a])
    n_loc = np.bincount(loc_pairs // max(1, inst.n_locations), minlength=S)
    for s in np.nonzero(n_loc < inst.spread_min)[0].tolist():
        out.append(Violation("spread", f"service {s}: {int(n_loc[s])} locations < "
                             f"spreadMin {int(inst.spread_min[s])}", service=s))
    # dependency: neighbourhoods of s must hold s2
    N = max(1, inst.n_neighbourhoods)
    hoods: dict[int, set[int]] = {}
    for key in np.unique(inst.service * N + inst.neighbourhood[a]).tolist():
        hoods.setdefault(key // N, set()).add(key % N)
    for s, deps in enumerate(inst.dependencies):
        for s2 in deps:
            for n in sorted(hoods.get(s, set()) - hoods.get(s2, set())):
                out.append(Violation("dependency", f"service {s} depends on service {s2}, "
                                     f"which has no process in neighbourhood {n}",
                                     service=s, neighbourhood=n))
    return out if limit is None else out[:limit]


def is_valid(inst: RoadefInstance, assignment: np.ndarray) -> bool:
    """True when `assignment` breaks no hard rule."""
    return not violations(inst, assignment, limit=1)


def aggregate_lower_bound(inst: RoadefInstance) -> int:
    """A valid lower bound: per resource, the load above the cluster's summed safety
    capacity must sit above some machine's safety (every other term is >= 0)."""
    excess = np.maximum(0, inst.requirement.sum(axis=0) - inst.safety.sum(axis=0))
    return int((excess * inst.load_weight).sum())
