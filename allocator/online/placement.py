"""Placement policies: where a new (or re-placed) task is queued.

A placement is a function `(executor, task, avoid) -> AgentState | None`
(None: the task waits in the global pool of its eligibility signature),
registered by name in PLACEMENTS. Candidates are the up agents with a closed
breaker that can run the task (`Executor._candidates`).

Half-open probes are part of the contract, not of each policy: before any
placement but `global` runs, the core routes the task to a half-open agent
that is eligible and has a free probe slot and nothing queued (see
`Executor._choose`), so a recovered agent gets work under every policy. Under
`global` the half-open agent pulls its probe from the pools itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from allocator.online.breaker import BreakerState
from allocator.online.state import AgentState, TaskState, eligible
from models import AgentStatus

if TYPE_CHECKING:
    from allocator.online.core import Executor

Placement = Callable[["Executor", "TaskState", "str | None"], "AgentState | None"]


def _count(a: AgentState) -> int:
    return len(a.running) + len(a.queue) + len(a.planned)


def _cands(ex: Executor, t: TaskState, avoid: str | None) -> list[AgentState]:
    cands = ex._candidates(t)
    if avoid is not None and len(cands) > 1:
        cands = [a for a in cands if a.id != avoid]
    return cands


def place_global(ex: Executor, t: TaskState, avoid: str | None) -> AgentState | None:
    return None


def place_round_robin(ex: Executor, t: TaskState, avoid: str | None) -> AgentState | None:
    cands = _cands(ex, t, avoid)
    if not cands:
        return None
    a = cands[ex._rr % len(cands)]
    ex._rr += 1
    return a


def place_random(ex: Executor, t: TaskState, avoid: str | None) -> AgentState | None:
    cands = _cands(ex, t, avoid)
    return cands[ex._rng.randrange(len(cands))] if cands else None


def place_jsq(ex: Executor, t: TaskState, avoid: str | None) -> AgentState | None:
    cands = _cands(ex, t, avoid)
    return min(cands, key=_count) if cands else None


def place_p2c(ex: Executor, t: TaskState, avoid: str | None) -> AgentState | None:
    cands = _cands(ex, t, avoid)
    n = len(cands)
    if n <= 1:
        return cands[0] if cands else None
    i, j = ex._rng.sample(range(n), 2)
    a, b = cands[i], cands[j]
    return a if _count(a) <= _count(b) else b


def place_home(ex: Executor, t: TaskState, avoid: str | None) -> AgentState | None:
    """The task's home agent unless it is down, breaker-blocked, ineligible or backed up."""
    spec = t.spec
    home = ex.agents.get(spec.home) if spec.home is not None else None
    if home is None:
        return None
    steal = ex.policy.steal
    br = home.breaker
    if (home.id != avoid and home.status is AgentStatus.UP
            and (br._state is BreakerState.CLOSED or br.state is BreakerState.CLOSED)
            and eligible(home, spec)
            and home.queue.n < steal.deque_cap
            and (steal.overflow_wait == math.inf or home.load_bound() <= steal.overflow_wait
                 or ((home.queue.work + home.planned.work) / home.speed / home.concurrency
                 <= steal.overflow_wait  # queued work alone is a lower bound of load()
                 and home.load(ex.now) <= steal.overflow_wait))):
        return home
    return None


PLACEMENTS: dict[str, Placement] = {
    "global": place_global,
    "round_robin": place_round_robin,
    "random": place_random,
    "jsq": place_jsq,
    "p2c": place_p2c,
    "home": place_home,
}
