"""Work stealing as a pure function: which queued tasks should move to an idle agent.

`plan_steal` reads the agents' queues and load estimates and returns moves;
the core applies them (and emits `Steal` instructions). Nothing here mutates
state, so the rule can be tested on its own and reused by other drivers.

The rule (see docs/online.md):

- victims: up agents other than the thief with at least `min_victim_queue`
  queued tasks, most loaded first (estimated remaining work / speed / slots),
  at most `victims` of them;
- a thief takes from a victim's thief end (the tasks it would serve last), up
  to half of its queue and at most `max_batch`;
- a task moves only if the thief would finish it sooner than the victim by
  `margin` of its run time plus `latency`; the reverse move can then never
  pass the same test (no ping-pong);
- the thief stops at the first victim it took anything from;
- a task an installed plan placed (the victim's plan queue) is the global
  view's choice: it moves only when the thief does not cost more per unit of
  work (cost rate / speed) or when the victim would finish it past its
  deadline and the thief in time. So stealing covers the gaps between solves
  (noise, late arrivals, deadlines about to slip) without undoing the plan's
  cost decisions, which the online rule cannot see.

`plan_probe` is the breaker's variant: a half-open agent with nothing to do
takes one task (its probe) from the most loaded agent that has one it can run,
without the margin test: the point is to learn whether the agent works again.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from allocator.online.state import _FREE_SIG
from models import AgentStatus

# Enum members as module constants: `Enum.MEMBER` is a slow class-attribute lookup
# and these are compared on every event.
_UP: Final = AgentStatus.UP

if TYPE_CHECKING:
    from allocator.online.events import TaskSpec
    from allocator.online.policies import StealConfig
    from allocator.online.state import AgentState, TaskState

#: A move: (task, victim, the victim's estimated finish time for that task).
Move = tuple["TaskState", "AgentState", float]
Fits = Callable[["AgentState", "TaskSpec"], bool]


def run_time(t: TaskState, a: AgentState) -> float:
    """Estimated run time of `t` on `a`, with the migration cost away from home."""
    spec = t.spec
    extra = spec.migration_cost if spec.home is not None and a.id != spec.home else 0.0
    return t.est / a.speed + extra


def victims_of(thief: AgentState, loaded: list[AgentState], min_queue: int) -> list[AgentState]:
    """Up agents other than the thief with at least `min_queue` queued tasks."""
    return [v for v in loaded if v is not thief and v.status is _UP
            and v.queue.n + v.planned.n >= min_queue]


def unit_cost(a: AgentState) -> float:
    """Cost of one unit of work on `a` (cost rate / speed)."""
    return a.spec.cost_rate / a.speed


def plan_allows(t: TaskState, victim: AgentState, thief: AgentState, now: float,
                victim_finish: float, thief_finish: float) -> bool:
    """May a planned task leave its plan's agent? Not dearer, or a deadline rescue."""
    if unit_cost(thief) <= unit_cost(victim) + 1e-12:
        return True
    d = t.spec.deadline
    return d is not None and now + victim_finish > d and now + thief_finish <= d


def plan_steal(thief: AgentState, victims: list[AgentState], cfg: StealConfig, now: float,
               margin: float, eligible: Fits, *, thief_fin: float | None = None,
               screened: bool = False) -> list[Move]:
    """The tasks `thief` should take now (possibly none); `eligible(agent, spec) -> bool`.

    Victims whose O(1) load bound cannot beat the thief's own finish time are
    dropped before their exact loads are computed: a move needs the victim's
    load above `thief_fin + latency`, so such a victim yields nothing, and as
    the least loaded ones they sort after every useful victim. The moves are
    the same as ranking all of them. A caller that has done that screening
    already (the core, during its scan of the loaded agents) passes the
    thief's `load(now)` it screened with as `thief_fin` and `screened=True`.
    """
    return steal_moves(thief, victims, now, margin, eligible,
                       thief.load(now) if thief_fin is None else thief_fin, screened,
                       cfg.latency, cfg.victims, cfg.max_steals_per_task, cfg.max_batch)


def steal_moves(thief: AgentState, victims: list[AgentState], now: float, margin: float,
                fits: Fits, thief_fin: float, screened: bool, latency: float, n_victims: int,
                max_steals: int, max_batch: int) -> list[Move]:
    """`plan_steal` with the thief's load given and StealConfig's fields as arguments
    (the core keeps them as its own fields: compiled, no attribute lookups per steal)."""
    ranked: list[tuple[float, int, AgentState]] = []
    if screened:
        for v in victims:
            # -v.load(now), inlined (same operations, so the same float).
            speed = v.speed
            rem = 0.0
            for t in v.running.values():
                r = t.started + t.est / speed - now
                if r > 0:
                    rem += r
            ranked.append((-((rem + (v.queue.work + v.planned.work) / speed) / v.concurrency),
                           v.index, v))
    else:
        floor = thief_fin + latency
        floor -= 1e-9 * (1.0 + abs(floor))  # (bounds are compared up to rounding)
        for v in victims:
            if v.load_bound() > floor:
                ranked.append((-v.load(now), v.index, v))
    if not ranked:
        return []
    if len(ranked) > n_victims:
        ranked = heapq.nsmallest(n_victims, ranked)
    else:
        ranked.sort()
    moves: list[Move] = []
    t_id, t_speed, t_slots = thief.id, thief.speed, thief.concurrency
    grow = 1 + margin
    for neg_load, _, v in ranked:
        limit = (v.queue.n + v.planned.n) // 2 or 1  # steal-half
        if limit > max_batch:
            limit = max_batch
        cands = v.queue.back(limit)
        n_free = len(cands)
        if n_free < limit:
            cands += v.planned.back(limit - n_free)
        v_fin = -neg_load
        v_id, v_speed, v_slots = v.id, v.speed, v.concurrency
        for k, t in enumerate(cands):
            # run_time(t, v) and run_time(t, thief), inlined.
            home = t.home
            run_v = t.est / v_speed + (t.mc if home is not None and v_id != home else 0.0)
            if t.steals < max_steals and (t.sig is _FREE_SIG or fits(thief, t.spec)):
                run_t = t.est / t_speed + (t.mc if home is not None and t_id != home else 0.0)
                if (thief_fin + run_t * grow + latency < v_fin
                        and (k < n_free or plan_allows(t, v, thief, now, v_fin,
                                                       thief_fin + run_t))):
                    moves.append((t, v, now + v_fin))
                    thief_fin += run_t / t_slots
            v_fin -= run_v / v_slots
        if moves:
            break
    return moves


def plan_probe(thief: AgentState, victims: list[AgentState], now: float,
               eligible: Fits) -> Move | None:
    """One task for a half-open agent's probe: from the most loaded agent with one it can run."""
    fits = eligible
    for v in sorted(victims, key=lambda v: (-v.load(now), v.index)):
        for t in v.queue.back(8) + v.planned.back(8):
            if fits(thief, t.spec):
                return (t, v, now + v.load(now))
    return None
