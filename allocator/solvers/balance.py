"""Structure-aware load balancing for very large snapshots (`balance`).

Minimises makespan (busiest agent's finish) for snapshots far too large for a
tasks x agents matrix: 1,000 agents x 100,000 tasks would be 10^8 cells per
matrix. It never builds one. It reads

* eligibility by *skill groups* (:attr:`Problem.skill_groups`): tasks with
  the same skills / allow lists share one agent mask, ``[G, m]``;
* agent-independent demand ``[n, R]`` (per-agent overrides, if any, are
  honoured by checking only the chosen pairs);
* durations as ``work / speed`` computed for the pairs it looks at.

Method: longest-processing-time first for uniform machines (each task, in
decreasing work, to the eligible agent where it would *finish* first, among
those with room), then a critical-agent local search: repeatedly take the
busiest agent and shift one of its tasks, or swap one with a task of a
lightly loaded agent, whenever that lowers its finish without creating a
new maximum. Every move re-checks capacity and eligibility, so the plan is
always feasible; the search stops at a local optimum or the budget.

The lower bound is :func:`allocator.bounds.makespan_bound` (fluid LP over
skill groups, and the longest single task on its fastest agent).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from allocator.bounds import makespan_bound
from allocator.constraints import repair_capacity
from allocator.problem import Problem, capacity_limit
from allocator.solvers.base import (
    FILL_MAX_PAIRS,
    Budget,
    WarmStart,
    fill_left_out,
    make_plan,
    register,
)
from allocator.solvers.lpt_kernel import HAVE_NUMBA, lpt_compiled
from models import Plan, PlanStatus

#: The search stops once the makespan is within this share of the lower bound.
STOP_RTOL = 1e-4
#: How many of the least loaded agents' tasks are tried as swap partners.
SWAP_PARTNER_AGENTS = 24
#: Most (critical task, partner task) pairs one swap step evaluates. The step
#: builds a few [pairs, R] arrays: with thousands of tasks per agent (50 agents
#: x 100k tasks) all pairs were ~10^8 cells, seconds and GBs per step, and the
#: deadline is only checked between steps. Above it the step keeps the
#: critical agent's largest tasks and the partner tasks of the least loaded
#: agents first (10,000 agents x 1M tasks: ~100 x 2,400 pairs, under it).
SWAP_MAX_PAIRS = 1 << 20
#: Critical-agent tasks kept when the pairs are capped (the largest: a swap
#: lowers the critical agent only by giving away more work than it takes).
SWAP_MAX_OWN = 256


#: Tasks whose Python rows :func:`lpt_assign` holds at once.
LPT_CHUNK = 1 << 16
#: From this many tasks on, :func:`lpt_assign` runs the compiled loop
#: (allocator.solvers.lpt_kernel) when numba is installed: below it the
#: numpy loop takes well under a second, less than compiling on a cold cache.
LPT_COMPILED_MIN_TASKS = 100_000
#: Eligibility groups with at least this many tasks keep their members' loads in
#: one array in :func:`lpt_assign`; smaller ones gather them per task.
LPT_GROUP_ARRAY_MIN = 16


def lpt_assign(
    work: np.ndarray,
    speed: np.ndarray,
    lanes: np.ndarray,
    group_of: np.ndarray,
    group_agents: np.ndarray,
    demand: np.ndarray,
    capacity: np.ndarray,
    *,
    load0: np.ndarray | None = None,
    used0: np.ndarray | None = None,
) -> np.ndarray:
    """LPT on uniform machines with eligibility groups and capacity; -1 where nothing fits.

    Each task, in decreasing work, goes to the eligible agent where it would
    finish first (busy time / lanes, never before the task's own duration)
    among those with room for its demand; ties go to the lowest agent index.
    `load0` ([m] busy time / lanes) and `used0` ([m, R] demand) are what the
    agents already hold (tasks kept where they are under a migration cap).

    Exactly :func:`lpt_assign_plain`'s result (tests compare them) with the
    same float operations. From ``LPT_COMPILED_MIN_TASKS`` tasks on, with
    numba, one-lane agents take the compiled loop of
    :mod:`allocator.solvers.lpt_kernel` (10000 x 1M: ~13 s -> a few). The
    numpy loop is about twice as fast as the plain one on one-lane agents: each
    group keeps its members' loads in one contiguous array (updated for
    every group of the chosen agent), so a task costs two in-place ufuncs
    and an argmin over its group instead of a gather and two temporaries.
    """
    if bool(np.any(lanes > 1)):
        return lpt_assign_plain(work, speed, lanes, group_of, group_agents, demand, capacity,
                                load0=load0, used0=used0)
    n, m = work.size, speed.size
    free = capacity_limit(capacity)
    if used0 is not None:
        free = free - used0
    if n >= LPT_COMPILED_MIN_TASKS and HAVE_NUMBA:
        return lpt_compiled(work, speed * lanes, group_of, group_agents, demand, free, load0)
    agent_of = np.full(n, -1, dtype=np.int64)
    rate = speed * lanes  # busy time per work unit is 1 / rate
    members = [np.flatnonzero(row) for row in group_agents]
    inv_rate = [1.0 / rate[idx] for idx in members]
    # Loads per group (member order = agent order) for groups of at least
    # LPT_GROUP_ARRAY_MIN tasks and, per agent, the (group array, position)
    # slots that hold its load; smaller groups gather from `load` (thousands
    # of one-task allow-list groups would make every placement write to each).
    load = np.zeros(m) if load0 is None else np.array(load0, dtype=float)
    kept = np.bincount(group_of, minlength=len(members)) >= LPT_GROUP_ARRAY_MIN
    gload: list[np.ndarray | None] = [load[idx] if kept[g] else None
                                      for g, idx in enumerate(members)]
    bufs = [np.empty(idx.size) for idx in members]
    slots: list[list[tuple[np.ndarray, int]]] = [[] for _ in range(m)]
    for g in np.flatnonzero(kept).tolist():
        arr = gload[g]
        assert arr is not None
        for pos, i in enumerate(members[g].tolist()):
            slots[i].append((arr, pos))
    order = np.argsort(-work, kind="stable")
    has_demand = bool(np.any(demand > 0))
    free_rows = free.tolist()
    rng_r = range(demand.shape[1])
    # Room only shrinks: a demand no member of group g could hold stays out of
    # reach, and so does any demand at least as large in every resource. Those
    # tasks are skipped before their group's finishes are computed (a full
    # cluster's 43k tasks left out: a comparison each instead of a group scan).
    failed: dict[int, list[list[float]]] = {}
    multiply, add = np.multiply, np.add
    # Python lists per chunk of tasks (a million tasks' demand rows as lists
    # would hold ~150 MB at once).
    member_l = [idx.tolist() for idx in members]
    for lo in range(0, n, LPT_CHUNK):
        js = order[lo:lo + LPT_CHUNK]
        got = [-1] * js.size
        for t, (j, w, g, d) in enumerate(zip(js.tolist(), work[js].tolist(),
                                             group_of[js].tolist(), demand[js].tolist(),
                                             strict=True)):
            ids = member_l[g]
            if not ids:
                continue
            if has_demand:
                gone = failed.get(g)
                if gone is not None and any(all(f[r] <= d[r] for r in rng_r) for f in gone):
                    continue
            fin = bufs[g]
            multiply(inv_rate[g], w, out=fin)
            arr = gload[g]
            add(load[members[g]] if arr is None else arr, fin, out=fin)
            k = int(fin.argmin())
            i = ids[k]
            if has_demand:
                fr = free_rows[i]
                fits = True
                for r in rng_r:
                    if fr[r] < d[r]:
                        fits = False
                        break
                if not fits:
                    idx = members[g]
                    k = _first_with_room(fin, idx, free_rows, d)
                    if k < 0:  # not among the nearest: check every member
                        ok = np.all(free[idx] >= demand[j], axis=1)
                        if not ok.any():
                            failed.setdefault(g, []).append(d)
                            continue
                        k = int(np.where(ok, fin, np.inf).argmin())
                    i = ids[k]
                    fr = free_rows[i]
                for r in rng_r:
                    fr[r] -= d[r]
                    free[i, r] = fr[r]
            got[t] = i
            best = fin[k]
            load[i] = best
            for arr, pos in slots[i]:
                arr[pos] = best
        agent_of[js] = got
    return agent_of


#: Agents with the earliest finish that :func:`lpt_assign` tries by hand when the
#: best one has no room, before checking every member's room.
ROOM_TRIES = 16


def _first_with_room(fin: np.ndarray, idx: np.ndarray, free_rows: list[list[float]],
                     d: list[float]) -> int:
    """Position of the earliest-finishing member with room for demand `d`, or -1.

    Looks at the ``ROOM_TRIES`` earliest finishes only, in (finish, position)
    order; it answers only when the answer is certain (its finish is below
    every member it did not look at), else -1 and the caller scans all.
    """
    size = fin.size
    if size > ROOM_TRIES:
        part = np.argpartition(fin, ROOM_TRIES)
        edge = float(fin[part[ROOM_TRIES]])
        near = part[:ROOM_TRIES]
    else:
        near, edge = np.arange(size), np.inf
    near = near[np.lexsort((near, fin[near]))]
    rng_r = range(len(d))
    for k, f in zip(near.tolist(), fin[near].tolist(), strict=True):
        if not f < edge:
            return -1
        fr = free_rows[int(idx[k])]
        if all(fr[r] >= d[r] for r in rng_r):
            return k
    return -1


def lpt_assign_plain(
    work: np.ndarray,
    speed: np.ndarray,
    lanes: np.ndarray,
    group_of: np.ndarray,
    group_agents: np.ndarray,
    demand: np.ndarray,
    capacity: np.ndarray,
    *,
    load0: np.ndarray | None = None,
    used0: np.ndarray | None = None,
) -> np.ndarray:
    """The same LPT with a full scan of the group's agents for every task.

    The reference for :func:`lpt_assign` (and the baseline of `allocator
    bench scale`); it also handles multi-lane agents, whose finish is not
    linear in the work.
    """
    n, m = work.size, speed.size
    agent_of = np.full(n, -1, dtype=np.int64)
    rate = speed * lanes  # busy time per work unit is 1 / rate
    load = np.zeros(m) if load0 is None else np.array(load0, dtype=float)
    free = capacity_limit(capacity)
    if used0 is not None:
        free = free - used0
    members = [np.flatnonzero(row) for row in group_agents]
    inv_rate = [1.0 / rate[idx] for idx in members]
    multi_lane = bool(np.any(lanes > 1))
    inv_speed = [1.0 / speed[idx] for idx in members]
    order = np.argsort(-work, kind="stable")
    has_demand = bool(np.any(demand > 0))
    free_rows = free.tolist()
    dem_rows = demand.tolist()
    work_l = work.tolist()
    group_l = group_of.tolist()
    R = demand.shape[1]
    rng_r = range(R)
    for j in order.tolist():
        g = group_l[j]
        idx = members[g]
        if idx.size == 0:
            continue
        w = work_l[j]
        fin = load[idx] + w * inv_rate[g]
        if multi_lane:
            fin = np.maximum(fin, w * inv_speed[g])
        k = int(fin.argmin())
        i = int(idx[k])
        if has_demand:
            d = dem_rows[j]
            fr = free_rows[i]
            if not all(fr[r] >= d[r] for r in rng_r):
                ok = np.all(free[idx] >= demand[j], axis=1)
                if not ok.any():
                    continue
                k = int(np.where(ok, fin, np.inf).argmin())
                i = int(idx[k])
                fr = free_rows[i]
            for r in rng_r:
                fr[r] -= d[r]
                free[i, r] = fr[r]
        agent_of[j] = i
        load[i] = fin[k] if not multi_lane else load[i] + w * inv_rate[g][k]
    return agent_of


def _finish(load: np.ndarray, longest: np.ndarray) -> np.ndarray:
    return np.maximum(load, longest)


def improve_makespan(
    agent_of: np.ndarray,
    work: np.ndarray,
    speed: np.ndarray,
    lanes: np.ndarray,
    group_of: np.ndarray,
    group_agents: np.ndarray,
    demand: np.ndarray,
    capacity: np.ndarray,
    *,
    deadline: Callable[[], bool],
    max_iter: int = 100_000,
    target: float = 0.0,
    home: np.ndarray | None = None,
    max_moves: int | None = None,
) -> np.ndarray:
    """Critical-agent shifts and swaps (see module docstring); never worsens the makespan.

    The finish of an agent is its busy time / lanes (exact for one lane; a
    lower bound of the list schedule otherwise), so the search targets
    single-lane agents' makespan and balance for multi-lane ones.

    With `home` ([n] current agent, -1 none) and `max_moves`, no step takes
    the count of tasks away from home past `max_moves` (a step that sends a
    task home gives a move back), so the moves it makes are the ones that
    lower the critical agent most while the cap allows.
    """
    agent_of = agent_of.copy()
    m = speed.size
    rate = speed * lanes
    on = agent_of >= 0
    capped = home is not None and max_moves is not None
    if capped:
        assert home is not None and max_moves is not None
        moves_left = max_moves - int(np.sum((home >= 0) & on & (agent_of != home)))
    load = np.bincount(agent_of[on], weights=work[on] / rate[agent_of[on]], minlength=m)
    free = capacity_limit(capacity)
    used = np.zeros_like(free)
    np.add.at(used, agent_of[on], demand[on])
    free = free - used
    has_demand = bool(np.any(demand > 0))
    for _ in range(max_iter):
        if deadline():
            break
        a = int(np.argmax(load))
        top = load[a]
        if top <= target:
            break  # at the lower bound (within the caller's tolerance)
        tasks = np.flatnonzero(agent_of == a)
        if tasks.size == 0:
            break
        wa = work[tasks]
        ok = group_agents[group_of[tasks]]  # [t, m]
        ok[:, a] = False
        if has_demand:
            ok &= np.all(free[None, :, :] >= demand[tasks][:, None, :], axis=2)
        if capped:
            assert home is not None
            cost = _move_cost(home[tasks][:, None], a, np.arange(m)[None, :])
            ok &= cost <= moves_left
        new_b = load[None, :] + wa[:, None] / rate[None, :]
        new_a = top - wa / rate[a]
        worst = np.maximum(new_b, new_a[:, None])
        worst = np.where(ok, worst, np.inf)
        flat = int(np.argmin(worst))
        t, b = divmod(flat, m)
        second = float(np.partition(load, -2)[-2]) if m >= 2 else 0.0
        if worst[t, b] < top - 1e-12 * max(1.0, top):
            j = int(tasks[t])
            if capped:
                moves_left -= int(cost[t, b])
            agent_of[j] = b
            load[a] = new_a[t]
            load[b] = new_b[t, b]
            if has_demand:
                free[a] += demand[j]
                free[b] -= demand[j]
            continue
        # Swap with a task of one of the least loaded agents.
        partners = np.argsort(load)[:SWAP_PARTNER_AGENTS]
        partners = partners[partners != a]
        cand = np.flatnonzero(np.isin(agent_of, partners))
        if cand.size == 0:
            break
        if tasks.size * cand.size > SWAP_MAX_PAIRS:
            tasks, wa = _capped_swap_sets(tasks, wa, cand, agent_of, partners, m)
            cand = cand[:SWAP_MAX_PAIRS // tasks.size]
        wb = work[cand]
        bb = agent_of[cand]
        # j (on a) <-> k (on b): both new loads must stay below top.
        la = top - wa[:, None] / rate[a] + wb[None, :] / rate[a]
        lb = load[bb][None, :] - wb[None, :] / rate[bb][None, :] + wa[:, None] / rate[bb][None, :]
        elig = group_agents[group_of[tasks]][:, bb] & group_agents[group_of[cand]][:, a][None, :]
        if has_demand:
            da, db = demand[tasks], demand[cand]
            elig &= np.all(free[a][None, None, :] + da[:, None, :] - db[None, :, :] >= 0, axis=2)
            elig &= np.all(free[bb][None, :, :] + db[None, :, :] - da[:, None, :] >= 0, axis=2)
        if capped:
            assert home is not None
            swap_cost = (_move_cost(home[tasks][:, None], a, bb[None, :])
                         + _move_cost(home[cand], bb, a)[None, :])
            elig &= swap_cost <= moves_left
        worst2 = np.where(elig, np.maximum(la, lb), np.inf)
        flat = int(np.argmin(worst2))
        t, k = divmod(flat, cand.size)
        if not worst2[t, k] < top - 1e-12 * max(1.0, top):
            break  # local optimum for the critical agent
        if capped:
            moves_left -= int(swap_cost[t, k])
        j, q, b = int(tasks[t]), int(cand[k]), int(bb[k])
        agent_of[j], agent_of[q] = b, a
        load[a], load[b] = la[t, k], lb[t, k]
        if has_demand:
            free[a] += demand[j] - demand[q]
            free[b] += demand[q] - demand[j]
        del second
    return agent_of


def _move_cost(home: np.ndarray, src: np.ndarray | int, dst: np.ndarray | int
               ) -> np.ndarray:
    """Change in the count of tasks away from home when tasks go from `src` to `dst`
    (broadcast): +1 leaving home, -1 going back, 0 otherwise (no home, or away to away)."""
    has = home >= 0
    was = has & (home != src)
    now = has & (home != dst)
    return now.astype(np.int64) - was.astype(np.int64)


def _capped_swap_sets(tasks: np.ndarray, wa: np.ndarray, cand: np.ndarray,
                      agent_of: np.ndarray, partners: np.ndarray, m: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The critical agent's ``SWAP_MAX_OWN`` largest tasks; `cand` reordered in place
    so the least loaded partners' tasks come first (stable: task order within one)."""
    if tasks.size > SWAP_MAX_OWN:
        keep = np.sort(np.argpartition(-wa, SWAP_MAX_OWN - 1)[:SWAP_MAX_OWN])
        tasks, wa = tasks[keep], wa[keep]
    rank = np.full(m, partners.size, dtype=np.int64)
    rank[partners] = np.arange(partners.size)
    cand[:] = cand[np.argsort(rank[agent_of[cand]], kind="stable")]
    return tasks, wa


def _arrays(problem: Problem) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    group_of, group_agents = problem.skill_groups
    # Tasks whose demand exceeds an agent's capacity outright are still
    # filtered per pair by the capacity checks above.
    return group_of, group_agents, problem.concurrency.astype(float)


def balance_assign(problem: Problem, *, deadline: Callable[[], bool],
                   target: float = 0.0) -> np.ndarray:
    """LPT + critical-agent search on a Problem's structured arrays.

    The search stops at `target` (e.g. the lower bound x 1.0001) or the deadline.
    Under ``options.max_migrations`` placed tasks stay where they may
    (:func:`_kept_home`), the LPT places the new tasks and as many of the
    tasks that must move as the cap allows, and the search spends what is
    left of the cap on its best moves. Last, tasks left out that fit
    somewhere now (room freed by the search) are placed (:func:`fill_room`).
    """
    if problem.m == 0:  # nowhere to go; the LPT and the search need an agent
        return np.full(problem.n, -1, dtype=np.int64)
    group_of, group_agents, lanes = _arrays(problem)
    demand = problem.demand_base
    work, speed = problem.work, problem.speed
    cap = problem.snapshot.options.max_migrations
    home: np.ndarray | None = None
    if cap is not None and bool(np.any(problem.current >= 0)):
        home = problem.current
        a0 = _capped_lpt(problem, cap, group_of, group_agents, lanes, demand)
    else:
        cap = None  # nothing placed: nothing can move
        a0 = lpt_assign(work, speed, lanes, group_of, group_agents, demand, problem.capacity)
    a0 = fill_room(problem, a0, group_of, group_agents, lanes, demand,
                   home=home, max_moves=cap, deadline=deadline)
    a1 = improve_makespan(a0, work, speed, lanes, group_of, group_agents, demand,
                          problem.capacity, deadline=deadline, target=target,
                          home=home, max_moves=cap)
    a1 = fill_room(problem, a1, group_of, group_agents, lanes, demand,
                   home=home, max_moves=cap, deadline=deadline)
    if problem.demand_override or problem.hard_deadline.any():
        # Per-agent demand overrides / hard deadlines: drop any pair that breaks them.
        a1 = _repair_pairs(problem, a1)
    return a1


def _kept_home(problem: Problem, group_of: np.ndarray, group_agents: np.ndarray
               ) -> np.ndarray:
    """Each placed task on its current agent where it may stay (up, eligible); on an
    over-full agent the shared repair's choice leaves tasks out until the rest fit."""
    home = problem.current
    a = np.full(problem.n, -1, dtype=np.int64)
    js = np.flatnonzero(home >= 0)
    js = js[group_agents[group_of[js], home[js]]]
    a[js] = home[js]
    return repair_capacity(problem, a)


def _capped_lpt(problem: Problem, cap: int, group_of: np.ndarray, group_agents: np.ndarray,
                lanes: np.ndarray, demand: np.ndarray) -> np.ndarray:
    """LPT under a migration cap: placed tasks kept home, the LPT for new tasks and
    for the first `cap` of those that must move (highest penalty, then most work)."""
    a = _kept_home(problem, group_of, group_agents)
    movers = np.flatnonzero((problem.current >= 0) & (a < 0))
    if movers.size > cap:
        rank = np.lexsort((movers, -problem.work[movers],
                           -problem.unassigned_penalty[movers]))
        movers = np.sort(movers[rank[:cap]])
    sub = np.union1d(np.flatnonzero(problem.current < 0), movers)
    rate = problem.speed * lanes
    kept = np.flatnonzero(a >= 0)
    load0 = np.bincount(a[kept], weights=problem.work[kept] / rate[a[kept]],
                        minlength=problem.m)
    used0 = np.zeros_like(problem.capacity)
    np.add.at(used0, a[kept], demand[kept])
    a[sub] = lpt_assign(problem.work[sub], problem.speed, lanes, group_of[sub], group_agents,
                        demand[sub], problem.capacity, load0=load0, used0=used0)
    return a


#: Tasks :func:`fill_room` places between two looks at the deadline.
FILL_CHECK_EVERY = 64


def fill_room(problem: Problem, agent_of: np.ndarray, group_of: np.ndarray,
              group_agents: np.ndarray, lanes: np.ndarray, demand: np.ndarray, *,
              home: np.ndarray | None, max_moves: int | None,
              deadline: Callable[[], bool]) -> np.ndarray:
    """Place each task left out that fits on an eligible agent now, where it finishes first.

    The LPT leaves a task out when no agent has room at its turn; the search's
    moves free room later, so without this pass a task stayed out beside an
    agent it fits. Highest unassigned penalty first; a task is placed only
    when the makespan it adds (weighted) costs less than leaving it out; with
    `home` and `max_moves`, a task away from home uses one of the moves left.
    """
    a = agent_of.copy()
    out = np.flatnonzero(a < 0)
    if out.size == 0 or problem.m == 0:
        return a
    on = np.flatnonzero(a >= 0)
    rate = problem.speed * lanes
    load = np.bincount(a[on], weights=problem.work[on] / rate[a[on]], minlength=problem.m)
    free = capacity_limit(problem.capacity)
    np.subtract.at(free, a[on], demand[on])
    if demand.shape[1]:  # most room any agent has: a task needing more fits nowhere
        out = out[np.all(demand[out] <= free.max(axis=0), axis=1)]
    has_agent = np.asarray(group_agents.any(axis=1))  # per group: never a [tasks, m] array
    out = out[has_agent[group_of[out]]]
    if out.size == 0:
        return a
    moves_left = np.inf
    if home is not None and max_moves is not None:
        moves_left = max_moves - int(np.sum((home >= 0) & (a >= 0) & (a != home)))
    penalty, work = problem.unassigned_penalty, problem.work
    w_makespan = problem.snapshot.weights.makespan
    top = float(np.max(np.maximum(load, 0.0)))
    for step, j in enumerate(out[np.lexsort((out, -work[out], -penalty[out]))].tolist()):
        if step % FILL_CHECK_EVERY == 0 and deadline():
            break
        ok = group_agents[group_of[j]].copy()
        h = -1 if home is None else int(home[j])
        if h >= 0 and moves_left <= 0:
            ok &= np.arange(problem.m) == h
        ok &= np.all(free >= demand[j], axis=1)
        if not ok.any():
            continue
        fin = np.where(ok, np.maximum(load + work[j] / rate, work[j] / problem.speed), np.inf)
        i = int(np.argmin(fin))
        if w_makespan * max(0.0, float(fin[i]) - top) > penalty[j]:
            continue
        a[j] = i
        load[i] += work[j] / rate[i]
        top = max(top, float(fin[i]))
        free[i] -= demand[j]
        if 0 <= h != i:
            moves_left -= 1
    return a


def _repair_pairs(problem: Problem, agent_of: np.ndarray) -> np.ndarray:
    out = agent_of.copy()
    on = np.flatnonzero(out >= 0)
    d = problem.pair_demand(out[on], on)
    used = np.zeros_like(problem.capacity)
    np.add.at(used, out[on], d)
    over = np.any(used > capacity_limit(problem.capacity), axis=1)
    for i in np.flatnonzero(over).tolist():
        js = on[out[on] == i]
        cap = capacity_limit(problem.capacity[i])
        tot = problem.pair_demand(np.full(js.size, i), js).sum(axis=0)
        for j in js.tolist():
            if np.all(tot <= cap):
                break
            tot -= problem.pair_demand(np.array([i]), np.array([j]))[0]
            out[j] = -1
    late = (out >= 0) & problem.hard_deadline
    if late.any():
        js = np.flatnonzero(late)
        end = problem.release[js] + problem.pair_duration(out[js], js)
        out[js[end > problem.deadline[js] + 1e-9]] = -1
    return out


#: Share of the time limit the makespan bound's LP may take (cut short, the bound is
#: the single-task one): unbounded, it took 12 s of a 10 s solve at 500 x 50,000.
BOUND_SHARE = 0.25


def balance_bound(problem: Problem, time_limit: float | None = None) -> float:
    group_of, group_agents, lanes = _arrays(problem)
    return makespan_bound(problem.work, problem.speed, group_of, group_agents, lanes,
                          time_limit=time_limit)


@register("balance", "structure-aware makespan balancing for huge snapshots (LPT + "
                     "critical-agent search, no tasks x agents matrix)")
def solve_balance(problem: Problem, *, budget: Budget, seed: int = 0,
                  warm: WarmStart | None = None) -> Plan:
    # Building the Plan (schedule, metrics, one Assignment per task) takes
    # roughly 25 us per task on a busy core: keep that much of the budget.
    reserve = min(0.3 * budget.time_limit, 0.2 + 2.5e-5 * problem.n)
    w = problem.snapshot.weights
    only_makespan = w.makespan > 0 and not (w.cost or w.imbalance or w.tardiness
                                            or w.migrations)
    lb = balance_bound(problem, BOUND_SHARE * budget.remaining()) if problem.n else 0.0
    agent_of = balance_assign(problem, deadline=lambda: budget.remaining() < reserve,
                              target=lb * (1 + STOP_RTOL) if only_makespan else 0.0)
    if np.any(agent_of < 0) and problem.m * problem.n <= FILL_MAX_PAIRS:
        # The LPT and the critical-agent search know capacity but not hard deadlines
        # under the plan's order, nor what a left-out task costs: a task left out
        # (deadline_conflict, solver_limit) often fits once the plan is whole (6 of
        # 140 generated snapshots, up to 1,000,000 in penalties).
        agent_of = fill_left_out(problem, agent_of,
                                 stop=lambda: budget.remaining() < reserve)
    bound = None
    if only_makespan and problem.n:
        # Leaving a task out costs at least the smallest penalty, so that caps the bound.
        bound = min(w.makespan * lb, float(problem.unassigned_penalty.min()))
    return make_plan(problem, agent_of, solver="balance", status=PlanStatus.FEASIBLE,
                     budget=budget, bound=bound,
                     message="structure-aware LPT + critical-agent search")
