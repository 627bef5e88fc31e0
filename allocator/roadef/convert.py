"""ROADEF/EURO 2012 machine reassignment <-> Snapshot with topology (models.topology).

`instance_to_snapshot` writes an instance in the engine's own vocabulary:
machines are agents (zone = location, neighbourhood, capacity, safety),
processes are tasks placed on their initial machine (group = service,
migration_cost = process move cost), services are groups (anti-affinity,
min_spread over zones, dependencies by neighbourhood), and the challenge's
weights become the topology terms. The machine move-cost matrix is written
per pair of zones when it is a function of the two locations (it usually
is), else per agent as the non-zero entries of its row. The snapshot's plan
objective then equals the challenge's cost (allocator.roadef.evaluate).

`snapshot_to_instance` goes back, for any snapshot the machine-reassignment
model can express (`unsupported_reason` says why not otherwise): the
topology backend (allocator.solvers.topology) solves through it.
"""

from __future__ import annotations

import numpy as np

from allocator.errors import UnsupportedError
from allocator.problem import Problem, compile_snapshot
from allocator.roadef.instance import Balance as RoadefBalance
from allocator.roadef.instance import RoadefInstance
from models import (
    Agent,
    Balance,
    Group,
    MigrationPolicy,
    Plan,
    Priority,
    Snapshot,
    SolveOptions,
    Task,
    Topology,
    Weights,
    ZoneMoveCost,
)

#: Penalty of leaving a process out of a converted snapshot: every process must
#: be placed in the challenge, so far above any instance's cost (set B's worst
#: initial costs are about 1e10) and below the engine's magnitude limit (1e15).
UNPLACED_PENALTY = 1e13
#: Rows of the machine move-cost matrix compared at once (bounded memory on set B).
_ROWS = 512


def resource_names(n: int) -> list[str]:
    """r0..r{n-1}, zero-padded so that sorting by name keeps the challenge's order."""
    width = len(str(max(n - 1, 0)))
    return [f"r{k:0{width}d}" for k in range(n)]


def _zone_matrix(inst: RoadefInstance) -> np.ndarray | None:
    """[L, L] cost between locations when the machine matrix is a function of them, else None."""
    loc, mmc = inst.location, inst.machine_move_cost
    L = inst.n_locations
    zone = np.full((L, L), -1, dtype=np.int64)
    M = inst.n_machines
    for lo in range(0, M, _ROWS):
        rows = np.arange(lo, min(lo + _ROWS, M))
        block = mmc[rows].astype(np.int64)
        li, lj = np.broadcast_arrays(loc[rows][:, None], loc[None, :])
        off = rows[:, None] != np.arange(M)[None, :]
        seen = zone[li, lj]
        if np.any(off & (seen >= 0) & (seen != block)):
            return None
        first = off & (seen < 0)
        zone[li[first], lj[first]] = block[first]
        if np.any(off & (zone[li, lj] != block)):
            return None
    return np.maximum(zone, 0)


def instance_to_snapshot(inst: RoadefInstance) -> Snapshot:
    """The instance as a Snapshot whose plan objective is the challenge's cost."""
    R = inst.n_resources
    res = resource_names(R)
    zones = _zone_matrix(inst)
    agent_ids = [f"m{i}" for i in range(inst.n_machines)]
    agents = []
    for i in range(inst.n_machines):
        row: dict[str, float] = {}
        if zones is None:
            costs = inst.machine_move_cost[i]
            row = {agent_ids[k]: float(costs[k]) for k in np.flatnonzero(costs).tolist()
                   if k != i}
        agents.append(Agent(
            id=agent_ids[i], zone=f"l{int(inst.location[i])}",
            neighbourhood=f"n{int(inst.neighbourhood[i])}",
            capacity={res[r]: float(inst.capacity[i, r]) for r in range(R)},
            safety={res[r]: float(inst.safety[i, r]) for r in range(R)},
            move_costs=row))
    tasks = [Task(id=f"p{j}", group=f"s{int(inst.service[j])}",
                  demand={res[r]: float(v) for r, v in enumerate(inst.requirement[j].tolist())
                          if v},
                  current_agent=agent_ids[int(inst.initial[j])],
                  migration_cost=float(inst.process_move_cost[j]))
             for j in range(inst.n_processes)]
    groups = [Group(id=f"s{s}", anti_affinity=True, min_spread=int(inst.spread_min[s]),
                    spread_key="zone", depends_on=[f"s{d}" for d in inst.dependencies[s]],
                    dependency_key="neighbourhood")
              for s in range(inst.n_services)]
    zone_moves = [] if zones is None else [
        ZoneMoveCost(**{"from": f"l{a}", "to": f"l{b}", "cost": float(zones[a, b])})
        for a, b in zip(*np.nonzero(zones), strict=True)]
    topo = Topology(
        groups=groups,
        transient=[res[r] for r in np.flatnonzero(inst.transient).tolist()],
        load_cost={res[r]: float(inst.load_weight[r]) for r in range(R)},
        balances=[Balance(resource=res[b.r1], against=res[b.r2], target=float(b.target),
                          weight=float(b.weight)) for b in inst.balances],
        zone_move_costs=zone_moves,
        group_move_weight=float(inst.weight_service_move),
        agent_move_weight=float(inst.weight_machine_move))
    weights = Weights(cost=0.0, migrations=float(inst.weight_process_move),
                      unassigned=dict.fromkeys(Priority, UNPLACED_PENALTY))
    return Snapshot(agents=agents, tasks=tasks, topology=topo, weights=weights,
                    migration=MigrationPolicy(), options=SolveOptions(solver="auto"),
                    name=inst.name)


# -- back: a snapshot as an instance --------------------------------------------------------


def _integral(values: np.ndarray) -> bool:
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    return bool(np.all(finite == np.round(finite)) and np.all(np.abs(finite) < 2**62))


def unsupported_reason(snapshot: Snapshot, problem: Problem | None = None) -> str | None:
    """Why the machine-reassignment model cannot express this snapshot (None: it can).

    It places every task, starting from its current agent, on up agents
    with integer capacities, demands and costs; it has no skills, allow /
    forbid lists, per-agent overrides, deadlines or time terms, and every
    group with several tasks is anti-affine.
    """
    w = snapshot.weights
    for i, a in enumerate(snapshot.agents):
        if a.status != "up":
            return f"agents[{i}] is {a.status} (every agent must be up)"
        if a.skills and any(t.skills for t in snapshot.tasks):
            return f"agents[{i}].skills: skills are not modelled"
    for j, t in enumerate(snapshot.tasks):
        if t.current_agent is None:
            return (f"tasks[{j}].current_agent: every task needs a current agent "
                    "(the topology solver improves a placement)")
        for field in ("skills", "allowed_agents", "forbidden_agents", "overrides"):
            if getattr(t, field):
                return f"tasks[{j}].{field}: not modelled by the topology solver"
        if t.hard_deadline:
            return f"tasks[{j}].hard_deadline: deadlines are not modelled"
    for name in ("makespan", "imbalance", "tardiness"):
        if getattr(w, name) > 0:
            return f"weights.{name} = {getattr(w, name)}: only 0 is modelled"
    if w.cost > 0 and any(a.cost_rate > 0 for a in snapshot.agents):
        return "weights.cost with agent cost_rate: placement costs are not modelled"
    if snapshot.migration.label_factors or snapshot.migration.pair_factors:
        return "migration.label_factors / pair_factors: use Agent.move_costs instead"
    if snapshot.options.max_migrations is not None:
        return "options.max_migrations is not modelled"
    topo = snapshot.topology
    groups = topo.groups if topo is not None else []
    sizes: dict[str, int] = {}
    for t in snapshot.tasks:
        if t.group is not None:
            sizes[t.group] = sizes.get(t.group, 0) + 1
    for k, g in enumerate(groups):
        if not g.anti_affinity and sizes.get(g.id, 0) > 1:
            return (f"topology.groups[{k}].anti_affinity is false: every group of several "
                    "tasks must be anti-affine")
    spread_keys = {g.spread_key for g in groups if g.min_spread > 1}
    dep_keys = {g.dependency_key for g in groups if g.depends_on}
    if len(spread_keys) > 1:
        return f"topology.groups: several spread keys {sorted(spread_keys)} (one is modelled)"
    if len(dep_keys) > 1:
        return f"topology.groups: several dependency keys {sorted(dep_keys)} (one is modelled)"
    p = problem if problem is not None else compile_snapshot(snapshot)
    t_arr = p.topology
    checks: list[tuple[str, np.ndarray]] = [
        ("agents[].capacity", p.capacity), ("tasks[].demand", p.demand_base),
        ("tasks[].migration_cost", p.migration_cost),
        ("weights.migrations", np.array([w.migrations]))]
    if t_arr is not None:
        checks += [("agents[].safety", t_arr.safety), ("topology.load_cost", t_arr.load_cost),
                   ("topology.balances", np.concatenate([t_arr.bal_target, t_arr.bal_weight])),
                   ("topology move costs", np.concatenate([t_arr.zone_cost.reshape(-1),
                                                           t_arr.pair_cost])),
                   ("topology weights", np.array([t_arr.group_move_weight,
                                                  t_arr.agent_move_weight]))]
    for field, values in checks:
        if not _integral(np.asarray(values, dtype=float)):
            return f"{field}: the topology solver needs integers (scale the units)"
    return None


def _key_index(snapshot: Snapshot, key: str | None, default: str) -> np.ndarray:
    """[m] index of each agent's value of a topology key (0 when it has none)."""
    values: dict[str | None, int] = {}
    return np.array([values.setdefault(a.topology_value(key or default), len(values))
                     for a in snapshot.agents], dtype=np.int64)


def problem_to_instance(problem: Problem) -> RoadefInstance:
    """The compiled snapshot as an instance (raises UnsupportedError naming what does not fit).

    Machines and processes keep the snapshot's agent and task order; tasks
    without a group become services of their own.
    """
    snapshot = problem.snapshot
    reason = unsupported_reason(snapshot, problem)
    if reason is not None:
        raise UnsupportedError(f"the topology solver cannot take this snapshot: {reason}",
                               field="options.solver")
    topo = snapshot.topology
    t_arr = problem.topology
    groups = topo.groups if topo is not None else []
    m, n, R = problem.m, problem.n, problem.n_resources
    spread_key = next((g.spread_key for g in groups if g.min_spread > 1), None)
    dep_key = next((g.dependency_key for g in groups if g.depends_on), None)
    location = _key_index(snapshot, spread_key, "zone")
    neighbourhood = _key_index(snapshot, dep_key, "neighbourhood")
    G = len(groups)
    group_of = t_arr.group_of if t_arr is not None else np.full(n, -1, dtype=np.int64)
    loose = np.flatnonzero(group_of < 0)
    service = group_of.copy()
    service[loose] = G + np.arange(loose.size)
    sizes = np.bincount(group_of[group_of >= 0], minlength=G)
    g_index = {g.id: k for k, g in enumerate(groups)}
    spread = np.ones(G + loose.size, dtype=np.int64)
    spread[:G] = np.minimum([g.min_spread for g in groups], sizes) if G else []
    deps = tuple(tuple(g_index[d] for d in g.depends_on) for g in groups) + ((),) * loose.size
    capacity = problem.capacity.astype(np.int64)
    if t_arr is not None:
        safety = np.where(np.isfinite(t_arr.safety), t_arr.safety, problem.capacity)
        load = t_arr.load_cost
        transient = t_arr.transient.copy()
        balances = tuple(RoadefBalance(int(a), int(b), int(t), int(wt)) for a, b, t, wt in zip(
            t_arr.bal_r1, t_arr.bal_r2, t_arr.bal_target, t_arr.bal_weight, strict=True))
        move = np.zeros((m, m), dtype=np.int64)
        if t_arr.zone_cost.size:
            z = t_arr.zone_of
            ok = z >= 0
            move[np.ix_(ok, ok)] = t_arr.zone_cost[np.ix_(z[ok], z[ok])].astype(np.int64)
        if t_arr.pair_keys.size:
            move[t_arr.pair_keys // max(m, 1), t_arr.pair_keys % max(m, 1)] = t_arr.pair_cost
        np.fill_diagonal(move, 0)
        wsm, wmm = t_arr.group_move_weight, t_arr.agent_move_weight
    else:
        safety, load, transient = problem.capacity, np.zeros(R), np.zeros(R, dtype=bool)
        balances, move, wsm, wmm = (), np.zeros((m, m), dtype=np.int64), 0.0, 0.0
    if move.size and move.max() <= np.iinfo(np.int32).max:
        move = move.astype(np.int32)
    return RoadefInstance(
        name=snapshot.name or "snapshot",
        transient=transient.astype(bool),
        load_weight=np.asarray(load).astype(np.int64),
        neighbourhood=neighbourhood,
        location=location,
        capacity=capacity,
        safety=np.asarray(safety).astype(np.int64),
        machine_move_cost=move,
        spread_min=spread,
        dependencies=deps,
        service=service.astype(np.int64),
        requirement=problem.demand_base.astype(np.int64),
        process_move_cost=problem.migration_cost.astype(np.int64),
        balances=balances,
        weight_process_move=int(snapshot.weights.migrations),
        weight_service_move=int(wsm),
        weight_machine_move=int(wmm),
        initial=problem.current.astype(np.int64).copy(),
    )


def snapshot_to_instance(snapshot: Snapshot) -> RoadefInstance:
    """The snapshot as a machine reassignment instance (see :func:`problem_to_instance`)."""
    return problem_to_instance(compile_snapshot(snapshot))


def plan_assignment(problem: Problem, plan: Plan) -> np.ndarray:
    """[P] machine index of each process under a plan of the converted snapshot (for
    `write_assignment`); every task must be placed."""
    agent_of = plan.agent_of()
    missing = [t for t in problem.task_ids if t not in agent_of]
    if missing:
        raise UnsupportedError(f"{len(missing)} task(s) unplaced (e.g. {missing[0]!r}); a "
                               "machine reassignment places every process", field="plan")
    return np.array([problem.agent_index[agent_of[t]] for t in problem.task_ids],
                    dtype=np.int64)
