"""Greedy construction: one pass over tasks, each to the best agent that still has room.

Order: priority class first, then hard deadlines, then the tasks with the
largest regret (second-best minus best placement score, as in Martello and
Toth's GAP heuristic) so contested tasks choose before the easy ones, then
larger work first (LPT). Per task, the choice over agents is one vectorised
numpy expression: weighted cost + makespan/imbalance growth + tardiness +
migration, ties broken by earliest finish, so with no costs it is LPT load
balancing. A hard-deadline task that would end too late at the end of every
queue runs earlier in one when every hard deadline still holds. Every hard
constraint is respected; this is the fallback and the warm start of the other
backends.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

import numpy as np

from allocator.problem import Problem, capacity_limit
from allocator.solvers.base import (
    FILL_MAX_PAIRS,
    Budget,
    WarmStart,
    fill_left_out,
    make_plan,
    plan_objective,
    register,
)
from models import Plan, PlanStatus

#: Weight of the finish-time tie-break relative to the real objective terms:
#: small enough never to override a real difference in cost.
_TIEBREAK = 1e-6


def _group_regret(problem: Problem, regret: np.ndarray) -> np.ndarray:
    """Fill `regret` of the tasks whose eligible agents are their whole skill-set group.

    Without cost overrides a task's score on agent i is work x c[i], so for a
    task that fits every agent of its group (no lists, no hard deadline, no
    demand override) the two best agents are among the group's two smallest
    c: only those few candidates are scored, with the expression the block
    path uses, so the numbers are the same. Returns the tasks left for it.
    """
    w = problem.snapshot.weights
    sr = problem.static_rules
    n = problem.n
    simple = ~sr.has_allowed & (np.diff(sr.forbidden_ptr) == 0) & ~problem.hard_deadline
    if problem.demand_override:
        simple[problem.demand_overrides.task] = False
    if problem.cost_override or not simple.any():
        return np.arange(n)
    lw = w.makespan + w.imbalance
    cap = problem.cap_limit
    for g in np.unique(sr.skill_of[simple]).tolist():
        js = np.flatnonzero(simple & (sr.skill_of == g))
        agents = np.flatnonzero(sr.skill_masks[g])
        if agents.size < 2:
            regret[js] = 1e18
            continue
        # The task must fit on every agent of the group (else: the block path).
        fits = np.all(problem.demand_base[js] <= cap[agents].min(axis=0), axis=1)
        simple[js[~fits]] = False
        js = js[fits]
        if js.size == 0:
            continue
        # Agents with the same (cost rate, speed) score the same: one row each,
        # twice when two or more agents share it (both best and second best).
        kinds, count = np.unique(np.stack([problem.cost_rate[agents],
                                           problem.speed[agents]], axis=1),
                                 axis=0, return_counts=True)
        kc = (w.cost * kinds[:, 0] + lw) / kinds[:, 1]
        rows = np.repeat(np.arange(kinds.shape[0]), np.minimum(count, 2))
        second = np.partition(kc[rows], 1)[1]
        rows = rows[kc[rows] <= second * (1 + 1e-9) + 1e-300]
        dur = problem.work[js][None, :] / kinds[rows, 1][:, None]
        score = w.cost * (kinds[rows, 0][:, None] * dur) + lw * dur
        two = np.partition(score, 1, axis=0)[:2]
        regret[js] = two[1] - two[0]
    return np.flatnonzero(~simple)


def task_order(problem: Problem) -> np.ndarray:
    """Order in which the greedy places tasks (see module docstring).

    The regret is computed per skill-set group where the structure allows
    (:func:`_group_regret`), else a block of tasks at a time
    (``Problem.block_*``): no tasks x agents array is built on large problems.
    """
    w = problem.snapshot.weights
    regret = np.zeros(problem.n)
    if problem.m >= 2:
        rest = _group_regret(problem, regret) if problem.large else np.arange(problem.n)
        step = problem.block_columns(4)
        for lo in range(0, rest.size, step):
            js = rest[lo:lo + step]
            score = (w.cost * problem.block_cost(js)
                     + (w.makespan + w.imbalance) * problem.block_duration(js))
            score = np.where(problem.block_eligible(js), score, np.inf)
            two = np.partition(score, 1, axis=0)[:2]
            with np.errstate(invalid="ignore"):
                regret[js] = np.where(np.isfinite(two[1]), two[1] - two[0], 1e18)
    regret = np.nan_to_num(regret, nan=0.0, posinf=1e18)
    hard = (~problem.hard_deadline).astype(int)
    return np.lexsort((np.arange(problem.n), -problem.work, -regret, problem.deadline, hard,
                       problem.priority_rank))


#: Tasks placed between two looks at the clock (a `stop` callback).
STOP_EVERY = 256

#: A hard-deadline task that would end past its deadline at the end of every queue is
#: tried earlier in queues of at most this many tasks (every hard deadline of the queue
#: re-checked; not on problems past INSERT_MAX_PAIRS): the priority order put critical tasks with
#: slack ahead of a high one due now, and the greedy left it out ("deadline_conflict",
#: 100,000 in penalties) where running it first broke nothing. Each try re-runs the
#: queue once per position.
INSERT_MAX_QUEUE = 64
#: ... and only up to this many (agent, task) pairs (a count, not `Problem.large`: the
#: sparse and dense paths must give the same plan).
INSERT_MAX_PAIRS = 4_000_000


def _run_queue(problem: Problem, i: int, order: list[int]
               ) -> tuple[list[float], np.ndarray, float] | None:
    """Agent i's tasks run in `order` as `objectives.build_schedule` runs them: (the
    lanes' free times, the ends, the weighted lateness), None when a hard deadline breaks."""
    idx = np.asarray(order, dtype=np.int64)
    dur = problem.pair_duration(np.full(idx.size, i), idx).tolist()
    rel, dl = problem.release[idx].tolist(), problem.deadline[idx]
    lanes = [problem.now] * int(problem.concurrency[i])
    ends = np.empty(idx.size)
    for k in range(idx.size):
        free = heapq.heappop(lanes)
        ends[k] = max(free, rel[k]) + dur[k]
        heapq.heappush(lanes, float(ends[k]))
    if np.any(problem.hard_deadline[idx] & (ends > dl + 1e-9)):
        return None
    late = float(np.sum(problem.tardiness_weight[idx] * np.maximum(ends - dl, 0.0),
                        where=np.isfinite(dl)))
    return lanes, ends, late


def _insert_early(problem: Problem, j: int, cands: np.ndarray, queues: list[list[int]],
                  new_load: np.ndarray, makespan: float) -> tuple[int, int, tuple[
                      list[float], np.ndarray, float]] | None:
    """Hard-deadline task j, due before the end of every queue of `cands` (agents with
    room), run earlier in one of them (INSERT_MAX_QUEUE): per agent the latest position
    that keeps every hard deadline, scored as the greedy scores a placement plus the
    lateness it adds behind it. (agent, position, its queue run)."""
    w = problem.snapshot.weights
    best: tuple[float, int, int, tuple[list[float], np.ndarray, float]] | None = None
    for i in cands.tolist():
        seq = queues[i]
        if not seq or len(seq) > INSERT_MAX_QUEUE:
            continue
        before = _run_queue(problem, i, seq)
        if before is None:
            continue
        for q in range(len(seq) - 1, -1, -1):
            run = _run_queue(problem, i, [*seq[:q], j, *seq[q:]])
            if run is None:
                continue
            score = (w.cost * float(problem.pair_cost(np.array([i]), np.array([j]))[0])
                     + w.makespan * max(float(new_load[i]) - makespan, 0.0)
                     + w.imbalance * float(new_load[i])
                     + w.tardiness * (run[2] - before[2]))
            if problem.current[j] >= 0:
                score += w.migrations * float(problem.col_migration(j)[i])
            if best is None or score < best[0]:
                best = (score, i, q, run)
            break
    if best is None or best[0] > problem.unassigned_penalty[j]:
        return None
    return best[1], best[2], best[3]


class _TopologyRules:
    """The hard topology rules (allocator.constraints) as the greedy places tasks one by
    one: anti-affinity (no second member of a group on an agent), dependency (a member
    only where its dependency key's value already holds a member of every group its group
    needs: those groups are placed first), spread (a group short of its min_spread takes
    a value it does not cover yet when an agent there has room) and transient resources
    (a task that moves keeps holding them on its current agent: reserved up front). What
    the one pass still breaks, constraints.enforce leaves out."""

    def __init__(self, problem: Problem) -> None:
        topo = problem.topology
        assert topo is not None
        self.p, self.t = problem, topo
        self.hosts: dict[int, np.ndarray] = {}  # group -> [m] agents holding a member
        self.values: dict[tuple[int, int], set[int]] = {}  # (group, key row) -> values held
        sizes = np.bincount(topo.group_of[topo.group_of >= 0], minlength=topo.n_groups)
        self.spread_need = np.minimum(topo.spread_min, sizes)

    def order(self, order: np.ndarray) -> np.ndarray:
        """`order` with the groups others depend on first (stable; cycles keep theirs)."""
        t = self.t
        if t.dep_idx.size == 0:
            return order
        # Kahn's order over the dependency edges, O(groups + edges): a group's depth is
        # one more than its deepest dependency's; groups on a cycle keep what they got.
        n_deps = np.diff(t.dep_ptr)
        owner = np.repeat(np.arange(t.n_groups), n_deps)  # edge k: owner[k] needs dep_idx[k]
        by_dep = np.argsort(t.dep_idx, kind="stable")
        starts = np.searchsorted(t.dep_idx[by_dep], np.arange(t.n_groups + 1))
        depth = np.zeros(t.n_groups, dtype=np.int64)
        waiting = n_deps.copy()
        ready = np.flatnonzero(waiting == 0).tolist()
        while ready:
            d = ready.pop()
            for g in owner[by_dep[starts[d]:starts[d + 1]]].tolist():
                depth[g] = max(int(depth[g]), int(depth[d]) + 1)
                waiting[g] -= 1
                if waiting[g] == 0:
                    ready.append(g)
        g_of = self.t.group_of[order]
        level = np.where(g_of >= 0, depth[np.maximum(g_of, 0)], 0)
        return order[np.argsort(level, kind="stable")]

    def allowed(self, j: int, ok: np.ndarray) -> np.ndarray:
        """`ok` narrowed to the agents where task j keeps every rule."""
        t = self.t
        g = int(t.group_of[j])
        if g < 0:
            return ok
        if t.anti[g] and g in self.hosts:
            ok = ok & ~self.hosts[g]
        deps = t.dep_idx[t.dep_ptr[g]:t.dep_ptr[g + 1]].tolist()
        if deps:
            k = int(t.dep_key[g])
            dom = t.domains[k]
            for d in deps:
                held = self.values.get((d, k))
                ok = ok & (np.isin(dom, list(held)) if held else False)
        if self.spread_need[g] > 1:
            k = int(t.spread_key[g])
            covered = self.values.get((g, k), set())
            if len(covered) < self.spread_need[g]:
                fresh = ok & ~np.isin(t.domains[k], list(covered))
                if fresh.any():
                    ok = fresh
        return ok

    def place(self, j: int, i: int) -> None:
        t = self.t
        g = int(t.group_of[j])
        if g < 0:
            return
        self.hosts.setdefault(g, np.zeros(self.p.m, dtype=bool))[i] = True
        for k in range(t.domains.shape[0]):
            self.values.setdefault((g, k), set()).add(int(t.domains[k, i]))

    def reserve(self, free: np.ndarray) -> None:
        """Take the transient resources every task holds on its current agent."""
        cur = np.flatnonzero(self.p.current >= 0)
        if not self.t.transient.any() or cur.size == 0:
            return
        held = self.p.pair_demand(self.p.current[cur], cur) * self.t.transient[None, :]
        np.subtract.at(free, self.p.current[cur], held)


def greedy_schedule(problem: Problem, order: np.ndarray | None = None,
                    stop: Callable[[], bool] | None = None, *, stay: bool = False
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Assignment `agent_of[n]` (-1 where nothing fits) and its sequencing key.

    `stay`: the tasks with a current agent go first, each to that agent when it
    can take it (a placement to keep), then the rest as usual.

    Each agent's lanes are simulated exactly as `objectives.build_schedule`
    runs them when given the returned key (placement order), so the start and
    end times the greedy scores with, and checks hard deadlines against, are
    the ones the plan will have. One task's column (eligibility, cost,
    duration, demand on every agent) is read at a time: dense slices on small
    problems, built from the rules and override maps on large ones.

    `stop` is asked every ``STOP_EVERY`` tasks; when it says yes the tasks not
    reached yet stay unplaced with an infinite key (:func:`unreached`).
    """
    w = problem.snapshot.weights
    m, n = problem.m, problem.n
    agent_of = np.full(n, -1, dtype=np.int64)
    order_key = np.full(n, np.inf)
    if n == 0 or m == 0:
        return agent_of, order_key
    free = capacity_limit(problem.capacity)
    lane_load = np.zeros(m)  # busy time / concurrency
    lanes = [[problem.now] * int(k) for k in problem.concurrency]  # heaps of lane free times
    earliest = np.full(m, problem.now)  # the first free lane of each agent
    queues: list[list[int]] = [[] for _ in range(m)]  # each agent's tasks in run order
    makespan = 0.0
    placed = 0
    # options.max_migrations: once spent, a task may only stay home (the shared
    # repair would otherwise undo the moves after the tasks they crowded out).
    cap = problem.snapshot.options.max_migrations
    moves_left = np.inf if cap is None else cap
    order = task_order(problem) if order is None else order
    if stay:
        order = order[np.argsort(problem.current[order] < 0, kind="stable")]
    rules = (_TopologyRules(problem) if problem.topology is not None
             and problem.topology.hard_rules() else None)
    if rules is not None:
        order = rules.order(order)
        rules.reserve(free)
    def book(j: int, i: int, home: int, dem_i: np.ndarray, load_i: float) -> int:
        """Task j placed on agent i (its lanes already updated): the state every
        placement updates; 1 when it was a move away from home."""
        nonlocal makespan
        agent_of[j] = i
        if rules is not None:
            rules.place(j, i)
        free[i] -= dem_i
        lane_load[i] = load_i
        earliest[i] = lanes[i][0]
        makespan = max(makespan, load_i)
        return int(0 <= home != i)

    for step, j in enumerate(order):
        if stop is not None and step % STOP_EVERY == 0 and step and stop():
            order_key[order[step:]] = np.nan  # not reached: see unreached()
            break
        dem = problem.col_demand(j)
        home = int(problem.current[j])
        if rules is not None and home >= 0 and rules.t.transient.any():
            dem = dem.copy()
            dem[home, rules.t.transient] = 0.0  # reserved up front
        rs = problem.col_support(j)  # the resources j needs: zero demand always fits
        ok = problem.col_eligible(j) & np.all(dem[:, rs] <= free[:, rs], axis=1)
        if home >= 0 and moves_left <= 0:
            ok &= np.arange(m) == home
        if rules is not None:
            ok = rules.allowed(j, ok)
        if stay and home >= 0 and ok[home]:
            ok = np.arange(m) == home
        if not ok.any():
            continue
        dur = problem.col_duration(j)
        new_load = lane_load + dur / problem.concurrency
        end = np.maximum(earliest, problem.release[j]) + dur
        if problem.hard_deadline[j]:
            meets = ok & (end <= problem.deadline[j] + 1e-9)
            if not meets.any():
                got = None if problem.m * problem.n > INSERT_MAX_PAIRS else _insert_early(
                    problem, j, np.flatnonzero(ok), queues, new_load, makespan)
                if got is None:
                    continue
                i, q, run = got
                seq = queues[i]
                order_key[j] = (order_key[seq[q]] - 1.0 if q == 0
                                else 0.5 * (order_key[seq[q - 1]] + order_key[seq[q]]))
                seq.insert(q, j)
                lanes[i] = run[0]
                moves_left -= book(j, i, home, dem[i], float(new_load[i]))
                continue
            ok = meets
        score = w.cost * problem.col_cost(j)
        score = score + w.makespan * np.maximum(new_load - makespan, 0.0)
        score = score + w.imbalance * new_load
        if np.isfinite(problem.deadline[j]):
            score = score + w.tardiness * problem.tardiness_weight[j] * np.maximum(
                end - problem.deadline[j], 0.0)
        if problem.current[j] >= 0:
            score = score + w.migrations * problem.col_migration(j)
        score = score + _TIEBREAK * new_load
        score = np.where(ok, score, np.inf)
        i = int(np.argmin(score))
        if score[i] - _TIEBREAK * new_load[i] > problem.unassigned_penalty[j]:
            continue  # cheaper to leave it out
        order_key[j] = placed
        placed += 1
        queues[i].append(j)
        heapq.heapreplace(lanes[i], float(end[i]))
        moves_left -= book(j, i, home, dem[i], float(new_load[i]))
    return agent_of, order_key


def unreached(order_key: np.ndarray) -> np.ndarray:
    """[n] tasks a stopped :func:`greedy_schedule` never looked at (their key is NaN)."""
    return np.isnan(order_key)


def greedy_assign(problem: Problem, order: np.ndarray | None = None) -> np.ndarray:
    """The assignment of :func:`greedy_schedule` (for callers that sequence it themselves)."""
    return greedy_schedule(problem, order)[0]


#: Up to this many (agent, task) pairs the regret is dynamic (Martello-Toth:
#: after every placement each task's regret is that of its *still feasible*
#: agents); beyond, the one-pass greedy schedule is used.
DYNAMIC_REGRET_MAX_PAIRS = 200_000


def _score_matrix(problem: Problem) -> np.ndarray:
    w = problem.snapshot.weights
    return w.cost * problem.cost + (w.makespan + w.imbalance) * problem.duration


def _two_best(s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of `s` [m, k]: the first argmin, its value and the second smallest value."""
    first = np.argmin(s, axis=0)
    cols = np.arange(s.shape[1])
    v1 = s[first, cols]
    if s.shape[0] < 2:
        return first, v1, np.full(s.shape[1], np.inf)
    rest = s.copy()
    rest[first, cols] = np.inf
    return first, v1, rest.min(axis=0)


def regret_assign(problem: Problem, score: np.ndarray | None = None) -> np.ndarray:
    """Dynamic-regret greedy for packing-bound problems (GAP-like).

    Repeatedly place the unplaced task whose best and second-best *feasible*
    agents differ most; a task with a single feasible agent goes first.
    Placing a task only shrinks the room of its agent, so only tasks whose
    best or second-best agent that was, and which no longer fit there, need
    their two best agents again: O(n) work per placement instead of O(n m).
    """
    m, n = problem.m, problem.n
    agent_of = np.full(n, -1, dtype=np.int64)
    free = capacity_limit(problem.capacity)
    score = _score_matrix(problem) if score is None else score
    demand = problem.demand
    prio = problem.priority_rank
    fits = problem.eligible & np.all(demand <= free[:, None, :], axis=2)
    s = np.where(fits, score, np.inf)
    best, v1, v2 = _two_best(s)
    second = np.argmin(np.where(np.arange(m)[:, None] == best[None, :], np.inf, s), axis=0) \
        if m >= 2 else np.full(n, -1)
    open_ = np.ones(n, dtype=bool)
    while True:
        placeable = open_ & np.isfinite(v1)
        if not placeable.any():
            break
        with np.errstate(invalid="ignore"):
            regret = np.where(np.isfinite(v2), v2 - v1, 1e30)
        # Highest priority class first, then the largest regret.
        best_rank = prio[placeable].min()
        regret = np.where(placeable & (prio == best_rank), regret, -np.inf)
        j = int(np.argmax(regret))
        i = int(best[j])
        agent_of[j] = i
        free[i] -= demand[i, j]
        open_[j] = False
        # Agent i's room shrank: tasks that no longer fit there lose it.
        gone = open_ & fits[i] & np.any(demand[i] > free[i], axis=1)
        if not gone.any():
            continue
        fits[i, gone] = False
        s[i, gone] = np.inf
        hit = np.flatnonzero(gone & ((best == i) | (second == i)))
        if hit.size:
            sub = s[:, hit]
            b, a1, a2 = _two_best(sub)
            best[hit], v1[hit], v2[hit] = b, a1, a2
            if m >= 2:
                sub[b, np.arange(hit.size)] = np.inf
                second[hit] = np.argmin(sub, axis=0)
    return agent_of


def repair(problem: Problem, agent_of: np.ndarray,
           stop: Callable[[], bool] | None = None) -> np.ndarray:
    """Place leftover tasks by ejecting one task to another agent with room (one level).

    Each leftover task takes the least (score delta, agent, ejected task,
    its new agent) among direct placements and single ejections, in index
    order. Every candidate of a task is priced at once (100 x 2,000 with a
    thousand tasks left over: 6 s one pair at a time); `stop` ends the pass
    between tasks (the rest stay out).
    """
    agent_of = agent_of.copy()
    demand, elig = problem.demand, problem.eligible
    used = np.zeros_like(problem.capacity)
    for k in np.flatnonzero(agent_of >= 0):
        used[agent_of[k]] += demand[agent_of[k], k]
    cap = capacity_limit(problem.capacity)
    score = _score_matrix(problem)
    for j in np.flatnonzero(agent_of < 0).tolist():
        if stop is not None and stop():
            break
        direct = elig[:, j] & np.all(used + demand[:, j, :] <= cap, axis=1)
        # Ejections from the eligible agents j does not fit on directly.
        placed = np.flatnonzero(agent_of >= 0)
        on = agent_of[placed]
        src = elig[on, j] & ~direct[on]
        ks, iis = placed[src], on[src]
        if ks.size:
            ok = np.all(used[iis] - demand[iis, ks] + demand[iis, j] <= cap[iis], axis=1)
            ks, iis = ks[ok], iis[ok]
        i2 = np.zeros(0, dtype=np.int64)
        if ks.size:
            room = elig[:, ks] & np.all(used[:, None, :] + demand[:, ks, :] <= cap[:, None, :],
                                        axis=2)
            room[iis, np.arange(ks.size)] = False
            has = room.any(axis=0)
            ks, iis, room = ks[has], iis[has], room[:, has]
            i2 = np.argmin(np.where(room, score[:, ks], np.inf), axis=0)
        di = np.flatnonzero(direct)
        delta = np.concatenate([score[di, j], score[iis, j] + score[i2, ks] - score[iis, ks]])
        if delta.size == 0:
            continue
        ag = np.concatenate([di, iis])
        ej = np.concatenate([np.full(di.size, -1), ks])
        to = np.concatenate([np.full(di.size, -1), i2])
        b = int(np.lexsort((to, ej, ag, delta))[0])
        if delta[b] > problem.unassigned_penalty[j]:
            continue
        bi, bk, b2 = int(ag[b]), int(ej[b]), int(to[b])
        if bk >= 0:
            used[bi] -= demand[bi, bk]
            used[b2] += demand[b2, bk]
            agent_of[bk] = b2
        used[bi] += demand[bi, j]
        agent_of[j] = bi
    return agent_of


def construct(problem: Problem, stop: Callable[[], bool] | None = None) -> np.ndarray:
    """The greedy's full construction: the right ordering for the problem, then repair.

    `stop` cuts the one-pass greedy of large problems and the repair short.
    """
    return construct_with_order(problem, stop if problem.large else None, repair_stop=stop)[0]


def construct_with_order(problem: Problem, stop: Callable[[], bool] | None = None,
                         repair_stop: Callable[[], bool] | None = None
                         ) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`construct` plus the sequencing key its schedule needs (None: any order).

    `stop` only cuts the one-pass greedy of large problems short (see
    :func:`greedy_schedule`); the small-problem constructions always finish,
    but their repair of leftover tasks ends when `repair_stop` says so.
    """
    w = problem.snapshot.weights
    mig_cap = problem.snapshot.options.max_migrations
    # The regret packing does not know the hard topology rules; the one pass does.
    rules = problem.topology is not None and bool(problem.topology.hard_rules())
    packing = (not (w.makespan or w.imbalance or w.tardiness) and not problem.has_time_constraints
               and mig_cap is None and not rules)
    if problem.n == 0 or problem.m == 0:
        return np.full(problem.n, -1, dtype=np.int64), None
    small = problem.m * problem.n <= DYNAMIC_REGRET_MAX_PAIRS
    if not (packing and small):
        agent_of, order_key = greedy_schedule(problem, stop=stop)
        if rules and small and np.any(problem.current >= 0):
            # Re-placing every task from scratch under tight topology rules crowded
            # tasks out of their own agents (a ROADEF-like cluster with 20 % new
            # tasks: 16 of 60 left out with room for them in the final plan); keeping
            # the current placement and adding the rest is the other start.
            from allocator.constraints import enforce

            kept, kept_key = greedy_schedule(problem, stop=stop, stay=True)
            if plan_objective(problem, enforce(problem, kept, kept_key), kept_key) < (
                    plan_objective(problem, enforce(problem, agent_of, order_key), order_key)):
                agent_of, order_key = kept, kept_key
        if rules and problem.m * problem.n <= FILL_MAX_PAIRS:
            # A group the pass spread too thinly loses a member to the repair, and that
            # room was then left empty (a ROADEF-like cluster: a task left out, 10^13 in
            # penalties, with room on an agent its rules allow).
            agent_of = fill_left_out(problem, agent_of, order_key, stop=stop)
        # Repair moves tasks between agents without re-timing their queues, so
        # it may only run where no hard deadline can be broken by a move (and,
        # blind to the migration cap and the topology rules, only without them).
        if (small and np.any(agent_of < 0) and not problem.hard_deadline.any()
                and mig_cap is None and not rules):
            agent_of = repair(problem, agent_of, repair_stop)
        return agent_of, order_key
    # Tight capacities defeat a cost-only regret: also try the share of the
    # agent's scarcest resource (Martello-Toth's a_ij / b_i) and the product,
    # and keep the one that places most, then the cheapest.
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(problem.capacity[:, None, :] > 0,
                         problem.demand / problem.capacity[:, None, :], 0.0
                         ).max(axis=2, initial=0.0)  # initial: snapshots without resources
    cost = _score_matrix(problem)
    best: tuple[int, float, np.ndarray] | None = None
    for score in (cost, share, share * (cost - cost.min() + 1.0)):
        a = regret_assign(problem, score)
        if np.any(a < 0):
            a = repair(problem, a, repair_stop)
        j = np.flatnonzero(a >= 0)
        key = (int((a < 0).sum()), float(cost[a[j], j].sum()), a)
        if best is None or key[:2] < best[:2]:
            best = key
        if key[0] == 0 and score is cost:
            break
    assert best is not None
    return best[2], None


def warm_or_fresh(problem: Problem, warm: WarmStart,
                  fresh: tuple[np.ndarray, np.ndarray | None] | None = None) -> WarmStart:
    """The better start of a warm re-solve: the previous plan carried over, or a fresh one.

    The warm start (repaired by `constraints.enforce`) wins ties, so with the
    stability preference priced in (allocator.rebalance.stabilize) a fresh
    construction that only reshuffles loses to keeping the plan; but new
    tasks in a warm start sit on the least busy agent with room, blind to
    cost and deadlines, so a construction that beats it is the start instead.
    """
    from allocator.constraints import enforce

    agent_of, order_key = fresh if fresh is not None else greedy_schedule(problem)
    kept = enforce(problem, warm.agent_of, warm.order_key)
    if plan_objective(problem, kept, warm.order_key) <= plan_objective(
            problem, agent_of, order_key):
        return WarmStart(agent_of=kept, order_key=warm.order_key)
    return WarmStart(agent_of=np.asarray(agent_of, dtype=np.int64), order_key=order_key)


@register("greedy", "regret-ordered greedy construction (fast, respects every hard constraint)")
def solve_greedy(
    problem: Problem, *, budget: Budget, seed: int = 0, warm: WarmStart | None = None
) -> Plan:
    # Stop placing (large problems) or repairing in time to build the plan
    # (about 25 us a task on a busy core) within the budget; the rest stays
    # unassigned. Deterministic solves only stop when asked to (same input,
    # same plan).
    reserve = min(0.3 * budget.time_limit, 0.2 + 2.5e-5 * problem.n)

    def stop() -> bool:
        if budget.is_deterministic:
            return budget.stopped()
        return budget.remaining() <= reserve

    agent_of, order_key = construct_with_order(problem, stop if problem.large else None,
                                               repair_stop=stop)
    message = None
    cut = None
    if order_key is not None and np.isnan(order_key).any():
        cut = unreached(order_key)
        order_key = np.where(cut, np.inf, order_key)
        message = (f"time limit: placed {int((agent_of >= 0).sum())} tasks, "
                   f"{int(cut.sum())} of {problem.n} not reached")
    if warm is not None and cut is None:
        start = warm_or_fresh(problem, warm, (agent_of, order_key))
        agent_of, order_key = start.agent_of, start.order_key
    return make_plan(problem, agent_of, solver="greedy", status=PlanStatus.FEASIBLE,
                     budget=budget, order_key=order_key, message=message, unreached=cut)
