"""Every hard constraint of a plan, named and vectorised on the compiled Problem.

One list, :data:`HARD_CONSTRAINTS`, names them all. Each is a function
``check(problem, schedule) -> np.ndarray[bool]`` marking the offending tasks
(or agents): empty of True where the constraint does not bite. The backends'
repairs, the local search, NSGA-II's repair and operators, the exact front and
the plan builder all read the rules from here, so "feasible" means one thing
whatever produced the plan. :mod:`allocator.validate` keeps its own plain
reading of the same rules on the pydantic objects (an independent check).

=============== ===== ========================================================
name            scope rule
=============== ===== ========================================================
eligibility     task  a placed task is on an up agent with its skills and
                      within its allowed / forbidden lists
capacity        agent per resource, the placed demands fit the capacity
                      (with :data:`CAPACITY_RTOL` / :data:`CAPACITY_ATOL`)
release         task  no task starts before its release (nor before `now`)
hard_deadline   task  a task with a hard deadline ends by it
concurrency     agent an agent never runs more tasks at once than its
                      concurrency
max_migrations  task  at most ``options.max_migrations`` placed tasks sit on
                      another agent than their ``current_agent``
anti_affinity   task  placed tasks of an anti-affine group sit on distinct
                      agents (models.topology)
spread          task  placed tasks of a group cover at least
                      ``min(min_spread, placed)`` values of its spread key
dependency      task  a placed task's dependency-key value (neighbourhood)
                      holds a placed task of each group its group depends on
transient       agent per transient resource, the placed demands plus those
                      of tasks that moved away from the agent fit its capacity
=============== ===== ========================================================

A *migration* is a placed task whose agent differs from its current agent
(exactly the plan's ``migrations`` list); leaving a task out is not a
migration (it costs its unassigned penalty instead).

:func:`enforce` is the shared repair: it turns any assignment into one that
meets every rule (moving a task home or elsewhere where that keeps the rest,
else leaving it out) and is the plan builder's last step.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from allocator.objectives import Schedule, build_schedule, moved_mask, used_capacity
from allocator.problem import CAPACITY_ATOL, CAPACITY_RTOL, Problem, capacity_limit

__all__ = [
    "CAPACITY_ATOL",
    "CAPACITY_RTOL",
    "HARD_CONSTRAINTS",
    "TIME_ATOL",
    "TOPOLOGY_RULES",
    "HardConstraint",
    "assignment_feasible",
    "capacity_limit",
    "enforce",
    "is_feasible",
    "violations",
]

#: Slack when comparing float times (start vs release, end vs deadline).
TIME_ATOL = 1e-9


# -- helpers shared by the checks and the repairs ------------------------------


def pair_static_eligible(problem: Problem, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """[k] agent i[k] is up, has task j[k]'s skills and passes its allow / forbid lists.

    Reads the dense mask when a backend has built it, else the rules
    (:class:`allocator.problem.StaticRules`), so the plan builder never
    materialises a tasks x agents matrix itself.
    """
    return problem.pair_static(i, j)


def migration_cap(problem: Problem) -> int | None:
    """``options.max_migrations`` (None: no cap)."""
    return problem.snapshot.options.max_migrations


def agent_schedule(problem: Problem, i: int, js: np.ndarray, order_key: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) of tasks `js` on agent i, list-scheduled as :func:`build_schedule` does."""
    js = np.asarray(js, dtype=np.int64)
    order = np.lexsort((js, order_key[js]))  # positions in js, in schedule order
    dur = problem.pair_duration(np.full(js.size, i), js)
    lanes = [problem.now] * int(problem.concurrency[i])
    start = np.empty(js.size)
    end = np.empty(js.size)
    for k in order.tolist():
        free = heapq.heappop(lanes)
        s = max(free, float(problem.release[js[k]]))
        start[k], end[k] = s, s + dur[k]
        heapq.heappush(lanes, end[k])
    return start, end


# -- the hard constraints -------------------------------------------------------


def eligibility(problem: Problem, schedule: Schedule) -> np.ndarray:
    """Hard. [n] placed tasks on an agent that is down, lacks a skill or is not allowed."""
    a = schedule.agent_of
    bad = np.zeros(problem.n, dtype=bool)
    on = np.flatnonzero(a >= 0)
    if on.size:
        bad[on] = ~pair_static_eligible(problem, a[on], on)
    return bad


def capacity(problem: Problem, schedule: Schedule) -> np.ndarray:
    """Hard. [m] agents holding more of some resource than their capacity (with tolerance)."""
    used = used_capacity(problem, schedule.agent_of)
    return np.any(used > capacity_limit(problem.capacity), axis=1)


def release(problem: Problem, schedule: Schedule) -> np.ndarray:
    """Hard. [n] placed tasks starting before their release (or before `now`)."""
    on = schedule.agent_of >= 0
    with np.errstate(invalid="ignore"):
        early = schedule.start < problem.release - TIME_ATOL
    return on & early


def hard_deadline(problem: Problem, schedule: Schedule) -> np.ndarray:
    """Hard. [n] placed tasks with a hard deadline that end after it."""
    on = (schedule.agent_of >= 0) & problem.hard_deadline
    with np.errstate(invalid="ignore"):
        late = schedule.end > problem.deadline + TIME_ATOL
    return on & late


def concurrency(problem: Problem, schedule: Schedule) -> np.ndarray:
    """Hard. [m] agents running more tasks at once than their concurrency.

    One sweep over all agents: events sorted by (agent, time, ends first),
    so back-to-back tasks do not overlap.
    """
    on = np.flatnonzero(schedule.agent_of >= 0)
    bad = np.zeros(problem.m, dtype=bool)
    if on.size == 0:
        return bad
    ag = np.concatenate([schedule.agent_of[on], schedule.agent_of[on]])
    t = np.concatenate([schedule.start[on], schedule.end[on] - TIME_ATOL])
    delta = np.concatenate([np.ones(on.size, dtype=np.int64), -np.ones(on.size, dtype=np.int64)])
    order = np.lexsort((delta, t, ag))
    running = np.cumsum(delta[order])  # each agent's events sum to 0, so no reset needed
    over = running > problem.concurrency[ag[order]]
    bad[np.unique(ag[order][over])] = True
    return bad


def max_migrations(problem: Problem, schedule: Schedule) -> np.ndarray:
    """Hard. [n] the migrated tasks, when there are more than ``options.max_migrations``."""
    cap = migration_cap(problem)
    moved = moved_mask(problem, schedule.agent_of)
    if cap is None or int(moved.sum()) <= cap:
        return np.zeros(problem.n, dtype=bool)
    return moved


def _placed_in_groups(problem: Problem, agent_of: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(placed tasks with a group, their group)."""
    topo = problem.topology
    assert topo is not None
    on = np.flatnonzero((agent_of >= 0) & (topo.group_of >= 0))
    return on, topo.group_of[on]


def anti_affinity(problem: Problem, schedule: Schedule) -> np.ndarray:
    """Hard. [n] placed tasks of an anti-affine group sharing an agent with an earlier member.

    Of the members on one agent the first in snapshot order is not marked, so
    leaving out the marked tasks is a repair.
    """
    bad = np.zeros(problem.n, dtype=bool)
    topo = problem.topology
    if topo is None or not topo.anti.any():
        return bad
    a = schedule.agent_of
    on, g = _placed_in_groups(problem, a)
    keep = topo.anti[g]
    on, g = on[keep], g[keep]
    key = g * max(problem.m, 1) + a[on]
    order = np.lexsort((on, key))
    dup = np.zeros(on.size, dtype=bool)
    dup[1:] = key[order][1:] == key[order][:-1]
    bad[on[order][dup]] = True
    return bad


def spread_short(problem: Problem, agent_of: np.ndarray) -> np.ndarray:
    """[G] groups whose placed tasks cover fewer than min(min_spread, placed) key values."""
    topo = problem.topology
    assert topo is not None
    on, g = _placed_in_groups(problem, agent_of)
    placed = np.bincount(g, minlength=topo.n_groups)
    dom = topo.domains[topo.spread_key[g], agent_of[on]]
    width = int(topo.n_domains.max(initial=0)) + 1
    pairs = np.unique(g * width + dom[:])
    covered = np.bincount(pairs // width, minlength=topo.n_groups)
    return covered < np.minimum(topo.spread_min, placed)


def spread(problem: Problem, schedule: Schedule) -> np.ndarray:
    """Hard. [n] placed tasks of groups spread over too few values of their spread key."""
    bad = np.zeros(problem.n, dtype=bool)
    topo = problem.topology
    if topo is None or not np.any(topo.spread_min > 1):
        return bad
    short = spread_short(problem, schedule.agent_of)
    if short.any():
        on, g = _placed_in_groups(problem, schedule.agent_of)
        bad[on[short[g]]] = True
    return bad


def dependency_missing(problem: Problem, agent_of: np.ndarray) -> np.ndarray:
    """[n] placed tasks whose dependency-key value lacks a placed task of a group they need."""
    from allocator.problem import csr_take

    bad = np.zeros(problem.n, dtype=bool)
    topo = problem.topology
    if topo is None or topo.dep_idx.size == 0:
        return bad
    on, g = _placed_in_groups(problem, agent_of)
    width = int(topo.n_domains.max(initial=0)) + 1
    # present[k]: sorted group * width + value of the placed tasks, per key row k.
    present: dict[int, np.ndarray] = {}
    for k in np.unique(topo.dep_key[topo.dep_idx]).tolist():
        present[k] = np.unique(g * width + topo.domains[k, agent_of[on]])
    needs, owner = csr_take(topo.dep_ptr, topo.dep_idx, g)
    if needs.size == 0:
        return bad
    row = topo.dep_key[g[owner]]
    value = topo.domains[row, agent_of[on[owner]]]
    query = needs * width + value
    missing = np.zeros(needs.size, dtype=bool)
    for k, keys in present.items():
        sel = row == k
        if keys.size == 0:
            missing[sel] = True
            continue
        pos = np.minimum(np.searchsorted(keys, query[sel]), keys.size - 1)
        missing[sel] = keys[pos] != query[sel]
    bad[on[owner[missing]]] = True
    return bad


def dependency(problem: Problem, schedule: Schedule) -> np.ndarray:
    """Hard. [n] placed tasks in a neighbourhood (dependency key) without a group they need."""
    return dependency_missing(problem, schedule.agent_of)


def transient_used(problem: Problem, agent_of: np.ndarray) -> np.ndarray:
    """[m, R] demand held on each agent counting moved tasks at their current agent too.

    Only the transient columns differ from :func:`used_capacity`.
    """
    used = used_capacity(problem, agent_of)
    topo = problem.topology
    if topo is None or not topo.transient.any():
        return used
    away = np.flatnonzero(moved_mask(problem, agent_of))
    if away.size:
        src = problem.current[away]
        held = problem.pair_demand(src, away) * topo.transient[None, :]
        np.add.at(used, src, held)
    return used


def transient(problem: Problem, schedule: Schedule) -> np.ndarray:
    """Hard. [m] agents whose transient resources overflow counting tasks that moved away."""
    topo = problem.topology
    if topo is None or not topo.transient.any():
        return np.zeros(problem.m, dtype=bool)
    used = transient_used(problem, schedule.agent_of)
    over = used > capacity_limit(problem.capacity)
    return np.any(over & topo.transient[None, :], axis=1)


@dataclass(frozen=True)
class HardConstraint:
    """A named hard rule: `check` marks offending tasks or agents (`scope`)."""

    name: str
    scope: str  # "task" or "agent"
    check: Callable[[Problem, Schedule], np.ndarray]


#: Every hard constraint, in the order the repair treats them.
HARD_CONSTRAINTS: tuple[HardConstraint, ...] = (
    HardConstraint("eligibility", "task", eligibility),
    HardConstraint("capacity", "agent", capacity),
    HardConstraint("release", "task", release),
    HardConstraint("hard_deadline", "task", hard_deadline),
    HardConstraint("concurrency", "agent", concurrency),
    HardConstraint("max_migrations", "task", max_migrations),
    HardConstraint("anti_affinity", "task", anti_affinity),
    HardConstraint("spread", "task", spread),
    HardConstraint("dependency", "task", dependency),
    HardConstraint("transient", "agent", transient),
)

#: The topology rules among them (models.topology); a backend that does not
#: model them is refused on snapshots that use them (allocator.engine).
TOPOLOGY_RULES = ("anti_affinity", "spread", "dependency", "transient")


def violations(problem: Problem, schedule: Schedule) -> dict[str, list[str]]:
    """Broken constraints by name -> the ids of the offending tasks or agents (empty: feasible)."""
    out: dict[str, list[str]] = {}
    for c in HARD_CONSTRAINTS:
        hit = np.flatnonzero(c.check(problem, schedule))
        if hit.size:
            ids = problem.task_ids if c.scope == "task" else problem.agent_ids
            out[c.name] = [ids[k] for k in hit.tolist()]
    return out


def is_feasible(problem: Problem, schedule: Schedule) -> bool:
    """Whether the schedule meets every hard constraint."""
    return not any(c.check(problem, schedule).any() for c in HARD_CONSTRAINTS)


def assignment_feasible(problem: Problem, agent_of: np.ndarray,
                        order_key: np.ndarray | None = None) -> bool:
    """Whether an assignment, list-scheduled by `order_key`, meets every hard constraint.

    Release and concurrency hold by construction of the list schedule, so
    the schedule is built only when some task has a hard deadline.
    """
    a = np.asarray(agent_of, dtype=np.int64)
    empty = Schedule(a, np.empty(0), np.empty(0))
    if eligibility(problem, empty).any() or capacity(problem, empty).any():
        return False
    if max_migrations(problem, empty).any():
        return False
    if problem.topology is not None and any(
            c.check(problem, empty).any() for c in HARD_CONSTRAINTS
            if c.name in TOPOLOGY_RULES):
        return False
    if problem.hard_deadline.any():
        return not hard_deadline(problem, build_schedule(problem, a, order_key)).any()
    return True


# -- the shared repair ----------------------------------------------------------


def _placement_score(problem: Problem, i: np.ndarray, j: int) -> np.ndarray:
    """Weighted separable cost of j on each agent in i (cost + migration + busy-time growth)."""
    w = problem.snapshot.weights
    jj = np.full(i.size, j)
    s = w.cost * problem.pair_cost(i, jj) + w.migrations * problem.pair_migration(i, jj)
    return s + (w.makespan + w.imbalance) * problem.pair_duration(i, jj) / problem.concurrency[i]


def repair_capacity(problem: Problem, agent_of: np.ndarray) -> np.ndarray:
    """Leave out tasks of over-full agents until all fit.

    Least unassigned penalty first, then the largest share of the capacity.
    """
    a = agent_of.copy()
    used = used_capacity(problem, a)
    limit = capacity_limit(problem.capacity)
    for i in np.flatnonzero(np.any(used > limit, axis=1)).tolist():
        js = np.flatnonzero(a == i)
        d = problem.pair_demand(np.full(js.size, i), js)
        share = (d / np.maximum(problem.capacity[i], 1e-12)).max(axis=1, initial=0.0)
        for k in np.lexsort((-share, problem.unassigned_penalty[js])).tolist():
            if np.all(used[i] <= limit[i]):
                break
            a[js[k]] = -1
            used[i] -= d[k]
    return a


def repair_migrations(problem: Problem, agent_of: np.ndarray) -> np.ndarray:
    """Undo migrations beyond ``options.max_migrations``.

    Each round moves home the migrated task whose return costs least under
    the snapshot's weights (home up, eligible and with room); when none can
    go home, the migrated task with the least unassigned penalty is left out.
    """
    cap = migration_cap(problem)
    a = agent_of.copy()
    if cap is None:
        return a
    moved = np.flatnonzero(moved_mask(problem, a))
    excess = moved.size - cap
    if excess <= 0:
        return a
    used = used_capacity(problem, a)
    limit = capacity_limit(problem.capacity)
    home = problem.current[moved]
    can = pair_static_eligible(problem, home, moved)
    back = np.array([_placement_score(problem, np.array([h]), int(j))[0]
                     - _placement_score(problem, np.array([a[j]]), int(j))[0]
                     for h, j in zip(home.tolist(), moved.tolist(), strict=True)])
    live = np.ones(moved.size, dtype=bool)
    for _ in range(excess):
        best = -1
        for k in np.argsort(back, kind="stable").tolist():
            if not (live[k] and can[k]):
                continue
            j, h = int(moved[k]), int(home[k])
            if np.all(used[h] + problem.pair_demand(np.array([h]), np.array([j]))[0]
                      <= limit[h]):
                best = k
                break
        if best < 0:  # nothing can go home: leave out the cheapest to leave out
            cand = np.flatnonzero(live)
            best = int(cand[np.argmin(problem.unassigned_penalty[moved[cand]])])
            j = int(moved[best])
            used[a[j]] -= problem.pair_demand(np.array([a[j]]), np.array([j]))[0]
            a[j] = -1
        else:
            j, h = int(moved[best]), int(home[best])
            used[a[j]] -= problem.pair_demand(np.array([a[j]]), np.array([j]))[0]
            used[h] += problem.pair_demand(np.array([h]), np.array([j]))[0]
            a[j] = h
        live[best] = False
    return a


def repair_deadlines(problem: Problem, agent_of: np.ndarray,
                     order_key: np.ndarray | None = None) -> np.ndarray:
    """Move tasks that miss a hard deadline to an agent where every hard deadline still holds.

    The late task with the earliest deadline goes first, to the cheapest
    eligible agent with room whose list schedule (with the task, same order
    key) meets all its hard deadlines, without exceeding the migration cap;
    when there is none it is left out. Repeats until no hard deadline is
    missed (each round places or drops one task, so at most n rounds).
    """
    a = np.asarray(agent_of, dtype=np.int64).copy()
    if not problem.hard_deadline.any():
        return a
    from allocator.objectives import default_order_key

    key = default_order_key(problem) if order_key is None else np.asarray(order_key, float)
    limit = capacity_limit(problem.capacity)
    cap = migration_cap(problem)
    tried: set[int] = set()
    for _ in range(problem.n + 1):
        sched = build_schedule(problem, a, key)
        late = np.flatnonzero(hard_deadline(problem, sched))
        if late.size == 0:
            break
        late = late[np.argsort(problem.deadline[late], kind="stable")]
        fresh = [int(j) for j in late.tolist() if int(j) not in tried]
        j = fresh[0] if fresh else int(late[0])
        src = int(a[j])
        a[j] = -1
        if j in tried:  # moved once already and late again: leave it out
            continue
        tried.add(j)
        used = used_capacity(problem, a)
        moved_now = int(moved_mask(problem, a).sum())
        cands = np.flatnonzero(problem.up)
        cands = cands[cands != src]
        cands = cands[pair_static_eligible(problem, cands, np.full(cands.size, j))]
        if cap is not None and problem.current[j] >= 0 and moved_now >= cap:
            cands = cands[cands == problem.current[j]]
        if cands.size == 0:
            continue
        need = problem.pair_demand(cands, np.full(cands.size, j))
        cands = cands[np.all(used[cands] + need <= limit[cands], axis=1)]
        ends = problem.release[j] + problem.pair_duration(cands, np.full(cands.size, j))
        cands = cands[ends <= problem.deadline[j] + TIME_ATOL]
        for i in cands[np.argsort(_placement_score(problem, cands, j), kind="stable")].tolist():
            js = np.append(np.flatnonzero(a == i), j)
            _, end = agent_schedule(problem, i, js, key)
            hard = problem.hard_deadline[js]
            if np.all(end[hard] <= problem.deadline[js][hard] + TIME_ATOL):
                a[j] = i
                break
    return a


def _drop_order(problem: Problem, tasks: np.ndarray, agent_of: np.ndarray) -> np.ndarray:
    """`tasks` in the order a repair leaves them out: least penalty, moved before home."""
    home = problem.current[tasks] == agent_of[tasks]
    return tasks[np.lexsort((tasks, home, problem.unassigned_penalty[tasks]))]


def repair_topology(problem: Problem, agent_of: np.ndarray) -> np.ndarray:
    """Leave out tasks until anti-affinity, transient, dependency and spread all hold.

    Only ever leaves tasks out (so capacity, deadlines and the migration cap
    keep holding): the later duplicates of an anti-affine group on an agent;
    on an agent whose transient resources overflow, the tasks that moved
    in, then those that moved away (a left-out task holds nothing); tasks in
    a neighbourhood without a group they depend on; and members of a group
    spread too thinly, from its most crowded value, which lowers
    min(min_spread, placed) until it is met. Repeats until nothing changes
    (each round leaves out at least one task).
    """
    a = np.asarray(agent_of, dtype=np.int64).copy()
    topo = problem.topology
    if topo is None or not topo.hard_rules():
        return a
    for _ in range(problem.n + 1):
        changed = False
        empty = Schedule(a, np.empty(0), np.empty(0))
        dup = anti_affinity(problem, empty)
        if dup.any():
            a[dup] = -1
            changed = True
        over = np.flatnonzero(transient(problem, Schedule(a, np.empty(0), np.empty(0))))
        for i in over.tolist():
            limit = capacity_limit(problem.capacity[i])
            cols = topo.transient
            moved = moved_mask(problem, a)
            incoming = np.flatnonzero(moved & (a == i))
            outgoing = np.flatnonzero(moved & (problem.current == i))
            for j in np.concatenate([_drop_order(problem, incoming, a),
                                     _drop_order(problem, outgoing, a)]).tolist():
                used = transient_used(problem, a)[i]
                if np.all(used[cols] <= limit[cols]):
                    break
                a[j] = -1
                changed = True
        lost = dependency_missing(problem, a)
        if lost.any():
            a[lost] = -1
            changed = True
        if np.any(topo.spread_min > 1):
            for gi in np.flatnonzero(spread_short(problem, a)).tolist():
                members = np.flatnonzero((topo.group_of == gi) & (a >= 0))
                dom = topo.domains[topo.spread_key[gi], a[members]]
                crowd = np.bincount(dom, minlength=int(dom.max()) + 1)
                inside = members[dom == int(np.argmax(crowd))]
                a[_drop_order(problem, inside, a)[0]] = -1
                changed = True
        if not changed:
            break
    return a


def enforce(problem: Problem, agent_of: np.ndarray,
            order_key: np.ndarray | None = None) -> np.ndarray:
    """An assignment meeting every hard constraint, as close to `agent_of` as the repairs keep it.

    Eligibility (ineligible placements are left out), capacity, the
    migration cap, then hard deadlines under the list schedule of
    `order_key`, then the topology rules (by leaving tasks out). Release and
    concurrency hold by construction of
    :func:`allocator.objectives.build_schedule`. A feasible input comes back
    unchanged.
    """
    a = np.asarray(agent_of, dtype=np.int64).copy()
    bad = eligibility(problem, Schedule(a, np.empty(0), np.empty(0)))
    a[bad] = -1
    a = repair_capacity(problem, a)
    a = repair_migrations(problem, a)
    a = repair_deadlines(problem, a, order_key)
    return repair_topology(problem, a)
