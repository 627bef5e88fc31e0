"""Why a task was left unassigned, in words a user can act on.

Checked from the most structural cause to the least: no agent up, a missing
skill, allow/forbid lists, a demand no agent can hold, a hard deadline no
agent can meet, and finally competition for capacity or time.
"""

from __future__ import annotations

import numpy as np

from allocator.constraints import used_capacity as capacity_used
from allocator.problem import Problem, capacity_limit
from models import Unassigned, UnassignedReason


def _fmt(x: float) -> str:
    return f"{x:g}"


#: Reasons that depend on a task only through its eligibility group and demand
#: row (when it has no hard deadline, no per-agent demand and no topology rule):
#: :func:`explain_many` words them once per such key.
_SHARED_CODES = frozenset({
    UnassignedReason.NO_AGENT_UP, UnassignedReason.MISSING_SKILL,
    UnassignedReason.NOT_ALLOWED, UnassignedReason.DEMAND_EXCEEDS_CAPACITY,
    UnassignedReason.CAPACITY_EXHAUSTED,
})


def explain_many(problem: Problem, js: np.ndarray, agent_of: np.ndarray) -> list[Unassigned]:
    """:func:`explain_unassigned` for every task in `js`, in order.

    Tasks left out of a full cluster share their reason with every task of
    the same eligibility group and demand: 43k tasks out of a 500 x 50k plan
    took 7 s one by one. Such reasons are worded once per (group, demand)
    and given to the others under their own ids; the rest are explained
    one by one.
    """
    if js.size == 0:
        return []
    used = capacity_used(problem, agent_of)
    have = _up_skills(problem)
    shareable = not problem.demand_override and problem.topology is None
    group_of = problem.skill_groups[0] if shareable else None
    memo: dict[tuple[int, bytes], Unassigned] = {}
    # A migration-cap reason also depends on the task's current agent.
    homes: dict[tuple[int, bytes, int], Unassigned] = {}
    out: list[Unassigned] = []
    ids = problem.task_ids
    for j in js.tolist():
        key = None
        if group_of is not None and not problem.hard_deadline[j]:
            key = (int(group_of[j]), problem.demand_base[j].tobytes())
            hit = memo.get(key) or homes.get((*key, int(problem.current[j])))
            if hit is not None:
                out.append(Unassigned(task=ids[j], code=hit.code, reason=hit.reason))
                continue
        u = explain_unassigned(problem, j, agent_of, used, have_skills=have)
        if key is not None and u.code in _SHARED_CODES:
            memo[key] = u
        elif key is not None and u.code == UnassignedReason.MIGRATION_LIMIT:
            homes[(*key, int(problem.current[j]))] = u
        out.append(u)
    return out


def _up_skills(problem: Problem) -> list[set[str]]:
    """The skill sets of the agents that are up, in agent order."""
    agents = problem.snapshot.agents
    return [set(agents[i].skills) for i in np.flatnonzero(problem.up)]


def topology_blocks(problem: Problem, j: int, cands: np.ndarray, agent_of: np.ndarray
                    ) -> str | None:
    """The topology rule(s) that forbid task j on every agent in `cands` (which have room).

    None when some candidate takes j without breaking a topology rule. Each
    rule is read for all candidates at once from the placed tasks of j's
    group (and the groups it depends on), never an [m, n] array.
    """
    from allocator.constraints import transient_used

    topo = problem.topology
    assert topo is not None
    if cands.size == 0:
        return None
    g = int(topo.group_of[j])
    a = agent_of.copy()
    a[j] = -1
    blocked: dict[str, np.ndarray] = {}
    if g >= 0:
        mates = np.flatnonzero((topo.group_of == g) & (a >= 0))
        if topo.anti[g]:
            blocked["anti_affinity"] = np.isin(cands, a[mates])
        deps = topo.dep_idx[topo.dep_ptr[g]:topo.dep_ptr[g + 1]]
        if deps.size:
            dom = topo.domains[topo.dep_key[g]]
            ok = np.ones(cands.size, dtype=bool)
            for d in deps.tolist():
                there = np.unique(dom[a[(topo.group_of == d) & (a >= 0)]])
                ok &= np.isin(dom[cands], there)
            blocked["dependency"] = ~ok
        if topo.spread_min[g] > 1:
            dom = topo.domains[topo.spread_key[g]]
            covered = np.unique(dom[a[mates]])
            least = min(int(topo.spread_min[g]), mates.size + 1)
            fresh = ~np.isin(dom[cands], covered)
            blocked["spread"] = covered.size + fresh.astype(np.int64) < least
    if topo.transient.any() and problem.current[j] >= 0:
        a[j] = -1
        used = transient_used(problem, a)
        home = int(problem.current[j])
        need = problem.pair_demand(cands, np.full(cands.size, j))
        away = cands != home
        held = problem.pair_demand(np.array([home]), np.array([j]))[0]
        over_home = np.any((used[home] + held > capacity_limit(problem.capacity[home]))
                           & topo.transient)
        over_there = np.any((used[cands] + need > capacity_limit(problem.capacity[cands]))
                            & topo.transient[None, :], axis=1)
        blocked["transient"] = over_there | (away & over_home)
    hit = np.zeros(cands.size, dtype=bool)
    for mask in blocked.values():
        hit |= mask
    if not hit.all():
        return None
    names = [k for k, mask in blocked.items() if mask.any()]
    group = f" of group {topo.group_ids[g]!r}" if g >= 0 else ""
    return (f"every eligible agent with room is ruled out by the topology rule(s) "
            f"{', '.join(names)}{group}")


def explain_unassigned(problem: Problem, j: int, agent_of: np.ndarray,
                       used: np.ndarray | None = None, *,
                       have_skills: list[set[str]] | None = None) -> Unassigned:
    """The reason task j is not placed in assignment `agent_of`.

    `used` is :func:`capacity_used` of `agent_of` and `have_skills` the up
    agents' skill sets; pass them when explaining many tasks of one plan so
    they are computed once.
    """
    snap = problem.snapshot
    task = snap.task_at(j)
    tid = problem.task_ids[j]
    up = problem.up
    if not up.any():
        return Unassigned(task=tid, code=UnassignedReason.NO_AGENT_UP, reason="no agent is up")
    if task.skills:
        have = _up_skills(problem) if have_skills is None else have_skills
        missing = [s for s in task.skills if not any(s in h for h in have)]
        if missing:
            return Unassigned(
                task=tid,
                code=UnassignedReason.MISSING_SKILL,
                reason=f"no up agent has skill(s) {', '.join(missing)}",
            )
        if not any(set(task.skills) <= h for h in have):
            return Unassigned(
                task=tid,
                code=UnassignedReason.MISSING_SKILL,
                reason=f"no up agent has all of the skills {', '.join(task.skills)}",
            )
    # One column of each rule: no tasks x agents array (Problem.col_*).
    static = problem.col_static(j)
    if not static.any():
        return Unassigned(
            task=tid,
            code=UnassignedReason.NOT_ALLOWED,
            reason="every up agent with the skills is excluded by allowed_agents/forbidden_agents",
        )
    fits = static & problem.col_fits(j)
    if not fits.any():
        cands = np.flatnonzero(static)
        dem = problem.col_demand(j)[cands]
        worst = []
        for k, r in enumerate(problem.resources):
            need = dem[:, k]
            if np.all(need > capacity_limit(problem.capacity[cands, k])):
                worst.append(
                    f"{r} {_fmt(float(need.min()))} > max capacity "
                    f"{_fmt(float(problem.capacity[cands, k].max()))}"
                )
        detail = "; ".join(worst) if worst else "no single resource, but no agent fits all"
        return Unassigned(
            task=tid,
            code=UnassignedReason.DEMAND_EXCEEDS_CAPACITY,
            reason=f"demand exceeds every eligible agent's capacity ({detail})",
        )
    if not (fits & problem.col_deadline_ok(j)).any():
        best = float(problem.col_duration(j)[fits].min())
        return Unassigned(
            task=tid,
            code=UnassignedReason.DEADLINE_UNREACHABLE,
            reason=(
                f"cannot meet deadline {_fmt(problem.deadline[j])}: released at "
                f"{_fmt(problem.release[j])}, needs at least {_fmt(best)} on the fastest agent"
            ),
        )
    elig = np.flatnonzero(problem.col_eligible(j))
    # Capacity left on each eligible agent given the rest of the plan.
    if used is None:
        used = capacity_used(problem, agent_of)
    free = problem.capacity[elig] - used[elig]
    need = problem.pair_demand(elig, np.full(elig.size, j))
    short = np.any(need > capacity_limit(free), axis=1)
    if problem.topology is not None and not short.all():
        blocked = topology_blocks(problem, j, elig[~short], agent_of)
        if blocked is not None:
            return Unassigned(task=tid, code=UnassignedReason.TOPOLOGY_RULE, reason=blocked)
    if short.all():
        return Unassigned(
            task=tid,
            code=UnassignedReason.CAPACITY_EXHAUSTED,
            reason=f"capacity exhausted on all {len(elig)} eligible agent(s) by other tasks",
        )
    cap = snap.options.max_migrations
    home = int(problem.current[j])
    if cap is not None and home >= 0 and not np.any(elig[~short] == home):
        # Every agent with room would be a migration: the cap decides if it is spent.
        moved = int(((problem.current >= 0) & (agent_of >= 0)
                     & (agent_of != problem.current)).sum())
        if moved >= cap:
            return Unassigned(
                task=tid,
                code=UnassignedReason.MIGRATION_LIMIT,
                reason=(f"it cannot stay on {problem.agent_ids[home]!r} and moving it would "
                        f"exceed options.max_migrations = {cap} ({moved} task(s) move)"),
            )
    if problem.hard_deadline[j]:
        return Unassigned(
            task=tid,
            code=UnassignedReason.DEADLINE_CONFLICT,
            reason=(
                f"cannot meet deadline {_fmt(problem.deadline[j])} on any eligible agent "
                "given the higher-value work planned before it"
            ),
        )
    cheapest = float(problem.col_cost(j)[elig].min()) * problem.snapshot.weights.cost
    penalty = float(problem.unassigned_penalty[j])
    if cheapest > penalty:
        return Unassigned(
            task=tid,
            code=UnassignedReason.NOT_WORTH_PLACING,
            reason=(
                f"leaving it out costs {_fmt(penalty)}, less than the cheapest placement "
                f"({_fmt(cheapest)})"
            ),
        )
    return Unassigned(
        task=tid,
        code=UnassignedReason.SOLVER_LIMIT,
        reason="the solver found no better plan containing it within its budget",
    )
