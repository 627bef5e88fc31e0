"""Topology optimisation from load data: where capacity is short or idle, and what
adding, removing or moving machines between zones would save.

`analyse_topology(snapshot, plan=None, ...)` reads a placement (the plan's, else
the tasks' current agents) and reports, per zone and per neighbourhood,
capacity, load, utilisation per resource and load above safety; hot and cold
zones; LP shadow prices per zone (a zone-level LP relaxation solved with
HiGHS: the duals of its capacity and safety rows); the spread and dependency
rules that bind (no slack left); and what-ifs, each priced by a re-solve of
the changed snapshot with the same backend, budget and seed as the baseline.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from allocator.errors import InvalidInputError
from allocator.problem import Problem, compile_snapshot
from models import Agent, Plan, Snapshot

#: A zone is hot (cold) when its pressure (largest utilisation over the
#: resources) is this far above (below) the cluster's, or it has load above
#: safety (hot): 10 points separate a busy zone from noise in the load data.
HOT_MARGIN = 0.10
#: Zone-level LP relaxations larger than this many task x zone columns are skipped
#: (the report says so): beyond it HiGHS takes longer than the rest of the report.
LP_MAX_COLUMNS = 2_000_000
#: Candidate agents tried per task when evacuating a removed machine.
EVACUATION_CANDIDATES = 32
#: The zone label of agents that carry no zone (reported and priced like any zone).
NO_ZONE = "(none)"


@dataclass
class WhatIf:
    action: str  # add | remove | move
    k: int
    source: str | None
    target: str | None
    objective: float | None
    saving: float | None
    valid: bool
    note: str = ""
    #: Move costs of re-placing a removed machine's tasks (in the objective's units,
    #: priced on the original snapshot); included in `objective` and `saving`.
    evacuation_cost: float = 0.0


@dataclass
class TopologyReport:
    placement: str  # "plan" or "current"
    resources: list[str]
    zones: list[dict[str, Any]]
    neighbourhoods: list[dict[str, Any]]
    hot: list[str]
    cold: list[str]
    binding: list[dict[str, str]]
    lp: dict[str, Any]
    baseline: dict[str, Any] = field(default_factory=dict)
    what_if: list[WhatIf] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "what_if"}
        out["what_if"] = [w.__dict__ for w in self.what_if]
        return out


def placement_of(problem: Problem, plan: Plan | None) -> np.ndarray:
    """[n] agent of each task: the plan's, else the current one (-1 = not placed)."""
    if plan is None:
        return problem.current.copy()
    a = np.full(problem.n, -1, dtype=np.int64)
    for row in plan.assignments:
        j, i = problem.task_index.get(row.task), problem.agent_index.get(row.agent)
        if j is None or i is None:
            raise InvalidInputError(f"plan places {row.task!r} on {row.agent!r}, which the "
                                    "snapshot does not have", field="plan.assignments")
        a[j] = i
    return a


def _domain_table(problem: Problem, agent_of: np.ndarray, key: str) -> list[dict[str, Any]]:
    snap = problem.snapshot
    used = np.zeros((problem.m, problem.n_resources))
    on = np.flatnonzero(agent_of >= 0)
    np.add.at(used, agent_of[on], problem.pair_demand(agent_of[on], on))
    topo = problem.topology
    safety = topo.safety if topo is not None else np.full(used.shape, np.inf)
    over = np.maximum(used - safety, 0.0)
    members: dict[str, list[int]] = defaultdict(list)
    for i, a in enumerate(snap.agents):
        members[a.topology_value(key) or NO_ZONE].append(i)
    rows = []
    for name in sorted(members):
        idx = np.array(members[name])
        cap = problem.capacity[idx].sum(axis=0)
        load = used[idx].sum(axis=0)
        util = np.divide(load, cap, out=np.zeros_like(load), where=cap > 0)
        res = problem.resources
        rows.append({
            key: name, "agents": int(idx.size),
            "tasks": int(np.isin(agent_of, idx).sum()),
            "capacity": dict(zip(res, cap.tolist(), strict=True)),
            "load": dict(zip(res, load.tolist(), strict=True)),
            "utilisation": dict(zip(res, util.round(4).tolist(), strict=True)),
            "above_safety": dict(zip(res, over[idx].sum(axis=0).tolist(), strict=True)),
            "pressure": float(util.max(initial=0.0)),
        })
    return rows


def classify(zones: list[dict[str, Any]], problem: Problem, agent_of: np.ndarray
             ) -> tuple[list[str], list[str]]:
    """(hot, cold) zones: pressure HOT_MARGIN above / below the cluster's, or above safety."""
    on = np.flatnonzero(agent_of >= 0)
    load = problem.pair_demand(agent_of[on], on).sum(axis=0)
    cap = problem.capacity.sum(axis=0)
    overall = float(np.divide(load, cap, out=np.zeros_like(load), where=cap > 0).max(
        initial=0.0))
    hot, cold = [], []
    for z in zones:
        above = sum(z["above_safety"].values()) > 0
        if above or z["pressure"] > overall + HOT_MARGIN:
            hot.append(z["zone"])
            z["status"] = "hot"
        elif z["pressure"] < overall - HOT_MARGIN:
            cold.append(z["zone"])
            z["status"] = "cold"
        else:
            z["status"] = "normal"
    hot.sort(key=lambda name: -next(z["pressure"] for z in zones if z["zone"] == name))
    cold.sort(key=lambda name: next(z["pressure"] for z in zones if z["zone"] == name))
    return hot, cold


def binding_rules(problem: Problem, agent_of: np.ndarray) -> list[dict[str, str]]:
    """Spread and dependency rules with no slack left in this placement."""
    topo = problem.topology
    out: list[dict[str, str]] = []
    if topo is None:
        return out
    for g, gid in enumerate(topo.group_ids):
        mates = np.flatnonzero((topo.group_of == g) & (agent_of >= 0))
        if topo.spread_min[g] > 1 and mates.size:
            dom = topo.domains[topo.spread_key[g], agent_of[mates]]
            covered = np.unique(dom).size
            need = min(int(topo.spread_min[g]), mates.size)
            if covered <= need:
                out.append({"group": gid, "rule": "spread", "detail": (
                    f"covers {covered} {topo.keys[topo.spread_key[g]]} value(s), needs {need}")})
        for d in topo.dep_idx[topo.dep_ptr[g]:topo.dep_ptr[g + 1]].tolist():
            dom = topo.domains[topo.dep_key[g]]
            mine = set(dom[agent_of[mates]].tolist())
            theirs = np.flatnonzero((topo.group_of == d) & (agent_of >= 0))
            counts = np.bincount(dom[agent_of[theirs]], minlength=int(dom.max()) + 1) \
                if theirs.size else np.zeros(0, dtype=np.int64)
            tight = [v for v in mine if v < counts.size and counts[v] == 1]
            if tight:
                out.append({"group": gid, "rule": "dependency", "detail": (
                    f"needs group {topo.group_ids[d]!r} in {len(tight)} "
                    f"{topo.keys[topo.dep_key[g]]} value(s) held by a single task")})
    return out


def zone_lp(problem: Problem, agent_of: np.ndarray) -> dict[str, Any]:
    """Zone-level LP relaxation: tasks split fractionally over zones; the duals of the
    capacity and safety rows are each zone's shadow prices per resource.

    min   sum_zr load_cost[r] * over_zr + sum_jz move_jz * y_jz
    s.t.  sum_z y_jz = 1                              (each placed task)
          sum_j d_jr y_jz - over_zr <= safety_zr      (safety rows)
          sum_j d_jr y_jz <= capacity_zr              (capacity rows)
    move_jz: the task's move cost (weights.migrations x migration_cost, plus the
    agent-pair weight x the zones' move cost) when z is not its current zone.
    """
    import scipy.sparse as sp
    from scipy.optimize import linprog

    topo = problem.topology
    names = sorted({zone_label(a) for a in problem.snapshot.agents})
    z_index = {z: k for k, z in enumerate(names)}
    zone_of = np.array([z_index[zone_label(a)] for a in problem.snapshot.agents])
    Z, R = len(names), problem.n_resources
    tasks = np.flatnonzero(agent_of >= 0)
    n = tasks.size
    if n * Z > LP_MAX_COLUMNS or n == 0:
        return {"solved": False, "note": f"{n} tasks x {Z} zones: LP skipped"}
    demand = problem.demand_base[tasks]
    cap = np.zeros((Z, R))
    np.add.at(cap, zone_of, problem.capacity)
    safety_ag = topo.safety if topo is not None else np.full((problem.m, R), np.inf)
    safety_ag = np.where(np.isfinite(safety_ag), safety_ag, problem.capacity)
    safe = np.zeros((Z, R))
    np.add.at(safe, zone_of, safety_ag)
    load_cost = topo.load_cost if topo is not None else np.zeros(R)
    home = zone_of[agent_of[tasks]]
    w = problem.snapshot.weights
    move = np.full((n, Z), w.migrations * problem.migration_cost[tasks][:, None])
    if topo is not None and topo.zone_cost.size:
        zc = np.zeros((Z, Z))
        for a, za in enumerate(topo.zone_names):
            for b, zb in enumerate(topo.zone_names):
                zc[z_index[za], z_index[zb]] = topo.zone_cost[a, b]
        move += topo.agent_move_weight * zc[home]
    move[np.arange(n), home] = 0.0
    # Columns: y[j, z] (n * Z), then over[z, r] (Z * R).
    ny = n * Z
    c = np.concatenate([move.reshape(-1), np.tile(load_cost, Z)])
    rows_eq = np.repeat(np.arange(n), Z)
    a_eq = sp.csr_matrix((np.ones(ny), (rows_eq, np.arange(ny))), shape=(n, ny + Z * R))
    jj, zz = np.divmod(np.arange(ny), Z)
    blocks = []
    for r in range(R):
        vals = demand[jj, r]
        blocks.append(sp.csr_matrix((vals, (zz, np.arange(ny))), shape=(Z, ny + Z * R)))
    d_rows = sp.vstack(blocks).tocsr()  # row r * Z + z
    # over[z, r] is column ny + z * R + r; safety row r * Z + z.
    rz_r, rz_z = np.divmod(np.arange(Z * R), Z)
    over = sp.csr_matrix((-np.ones(Z * R), (np.arange(Z * R), ny + rz_z * R + rz_r)),
                         shape=(Z * R, ny + Z * R))
    a_ub = sp.vstack([d_rows + over, d_rows]).tocsr()
    b_ub = np.concatenate([safe.T.reshape(-1), cap.T.reshape(-1)])
    res = linprog(c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=np.ones(n),
                  bounds=(0, None), method="highs")
    if res.status != 0:
        return {"solved": False, "note": f"LP {res.message}"}
    duals = -np.asarray(res.ineqlin.marginals)  # >= 0: saving per unit of extra room
    safety_price = duals[:Z * R].reshape(R, Z).T
    cap_price = duals[Z * R:].reshape(R, Z).T
    return {
        "solved": True, "objective": float(res.fun),
        "zones": {z: {"capacity": dict(zip(problem.resources, cap_price[k].round(6).tolist(),
                                           strict=True)),
                      "safety": dict(zip(problem.resources, safety_price[k].round(6).tolist(),
                                         strict=True))}
                  for k, z in enumerate(names)},
    }


def zone_label(agent: Agent) -> str:
    """The agent's zone, or NO_ZONE: a snapshot without zones is one zone to the report."""
    return agent.zone or NO_ZONE


# -- what-ifs -------------------------------------------------------------------------------


def _template(snapshot: Snapshot, zone: str) -> Agent | None:
    agents = [a for a in snapshot.agents if zone_label(a) == zone]
    if not agents:
        return None
    agents.sort(key=lambda a: sorted(a.capacity.items()))
    return agents[len(agents) // 2]


def with_added(snapshot: Snapshot, zone: str, k: int, tag: str = "new") -> Snapshot:
    """The snapshot with k copies of a typical (median-capacity) agent of `zone`."""
    tpl = _template(snapshot, zone)
    if tpl is None:
        raise InvalidInputError(f"no agent in zone {zone!r}", field="zone")
    taken = {a.id for a in snapshot.agents}
    extra = []
    for q in range(k):
        new_id = f"{tag}-{zone}-{q}"
        while new_id in taken:
            new_id += "'"
        taken.add(new_id)
        extra.append(tpl.model_copy(update={"id": new_id}))
    return snapshot.model_copy(update={"agents": list(snapshot.agents) + extra})


def evacuation_cost(problem: Problem, agent_of: np.ndarray) -> float:
    """The weighted move terms of going from the current placement to `agent_of`
    (task migrations, group and agent-pair move costs): what emptying a machine costs
    before any re-solve, since the re-solve starts from the evacuated placement."""
    from allocator.objectives import (
        term_agent_moves,
        term_group_moves,
        term_migrations,
        term_weights,
    )

    w = term_weights(problem)
    total = w["migrations"] * term_migrations(problem, agent_of)
    if problem.topology is not None:
        total += (w["group_moves"] * term_group_moves(problem, agent_of)
                  + w["agent_moves"] * term_agent_moves(problem, agent_of))
    return float(total)


def with_removed(snapshot: Snapshot, zone: str, k: int) -> tuple[Snapshot | None, str, float]:
    """The snapshot without the k least-loaded agents of `zone`, their tasks first
    re-placed (current agent) on other agents where every hard rule holds, and the
    move cost of that evacuation (:func:`evacuation_cost`).

    (None, why, 0) when there are not k agents or their tasks fit nowhere.
    """
    from allocator.constraints import assignment_feasible

    problem = compile_snapshot(snapshot)
    in_zone = [i for i, a in enumerate(snapshot.agents) if zone_label(a) == zone]
    if len(in_zone) <= k:
        return None, f"zone {zone!r} has {len(in_zone)} agent(s)", 0.0
    cur = problem.current
    load = np.bincount(cur[cur >= 0], minlength=problem.m)
    gone = sorted(in_zone, key=lambda i: (load[i], i))[:k]
    a = cur.copy()
    keep = np.setdiff1d(np.arange(problem.m), gone)
    for j in np.flatnonzero(np.isin(cur, gone)).tolist():
        a[j] = -1
        room = problem.capacity[keep] - np.array(
            [problem.demand_base[a == i].sum(axis=0) for i in keep])
        same = np.array([zone_label(snapshot.agents[i]) == zone for i in keep])
        order = np.lexsort((-room.min(axis=1), ~same))[:EVACUATION_CANDIDATES]
        for i in keep[order].tolist():
            a[j] = i
            if assignment_feasible(problem, np.where(a >= 0, a, -1)):
                break
            a[j] = -1
        if a[j] < 0:
            return None, f"task {problem.task_ids[j]!r} on a removed agent fits nowhere", 0.0
    ids = problem.agent_ids
    gone_ids = {ids[i] for i in gone}
    tasks = [t.model_copy(update={"current_agent": ids[a[j]]}) if cur[j] in gone else t
             for j, t in enumerate(snapshot.tasks)]
    agents = [ag.model_copy(update={"move_costs": {b: c for b, c in ag.move_costs.items()
                                                   if b not in gone_ids}})
              for ag in snapshot.agents if ag.id not in gone_ids]
    return (snapshot.model_copy(update={"agents": agents, "tasks": tasks}), "",
            evacuation_cost(problem, a))


def analyse_topology(snapshot: Snapshot, plan: Plan | None = None, *, k: int = 1,
                     what_if: bool = True, time_limit: float = 2.0, seed: int = 0,
                     solver: str | None = None) -> TopologyReport:
    """The topology report of a snapshot's placement (see the module docstring)."""
    from allocator.engine import solve
    from allocator.validate import validate

    if k < 1:
        raise InvalidInputError(f"must be >= 1, got {k}", field="k")
    problem = compile_snapshot(snapshot)
    agent_of = placement_of(problem, plan)
    zones = _domain_table(problem, agent_of, "zone")
    hoods = _domain_table(problem, agent_of, "neighbourhood")
    hot, cold = classify(zones, problem, agent_of)
    lp = zone_lp(problem, agent_of)
    if lp.get("solved"):
        for row in zones:
            row["shadow_price"] = lp["zones"][row["zone"]]
    report = TopologyReport(placement="plan" if plan is not None else "current",
                            resources=list(problem.resources), zones=zones,
                            neighbourhoods=hoods, hot=hot, cold=cold,
                            binding=binding_rules(problem, agent_of), lp=lp)
    if not what_if or len(zones) < 1:
        return report

    def resolve(s: Snapshot) -> tuple[float | None, bool, str]:
        p = solve(s, solver=solver, time_limit=time_limit, seed=seed)
        return p.objective, validate(s, p) == [], p.solver

    from allocator.errors import AllocatorError

    try:
        base_obj, base_ok, base_solver = resolve(snapshot)
    except AllocatorError as e:  # e.g. no backend models this snapshot's rules
        report.baseline = {"error": e.message, "solver": solver or snapshot.options.solver}
        return report
    report.baseline = {"objective": base_obj, "valid": base_ok, "solver": base_solver,
                       "time_limit": time_limit, "seed": seed}
    ranked = sorted(zones, key=lambda z: -z["pressure"])
    sinks = hot or [ranked[0]["zone"]]
    sources = cold or [z["zone"] for z in ranked[::-1] if z["zone"] not in sinks][:1]

    def record(action: str, src: str | None, dst: str | None, s: Snapshot | None,
               why: str = "", evacuation: float = 0.0) -> None:
        if s is None:
            report.what_if.append(WhatIf(action, k, src, dst, None, None, False, why))
            return
        obj, ok, _ = resolve(s)
        if obj is not None:
            obj += evacuation
        saving = None if obj is None or base_obj is None else base_obj - obj
        report.what_if.append(WhatIf(action, k, src, dst, obj, saving, ok, why, evacuation))

    for sink in sinks:
        record("add", None, sink, with_added(snapshot, sink, k))
    for source in sources:
        s, why, evac = with_removed(snapshot, source, k)
        record("remove", source, None, s, why, evac)
    for src in sources:
        for dst in sinks:
            if src == dst:
                continue
            s, why, evac = with_removed(snapshot, src, k)
            record("move", src, dst, None if s is None else with_added(s, dst, k, "moved"),
                   why, evac)
    return report
