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
from typing import TYPE_CHECKING, Final

from allocator.online.breaker import BreakerState
from allocator.online.state import _FREE_SIG, AgentState, TaskState, eligible
from models import AgentStatus

# Enum members as module constants: `Enum.MEMBER` is a slow class-attribute lookup
# and these are compared on every event.
_UP: Final = AgentStatus.UP
_CLOSED: Final = BreakerState.CLOSED

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
    h = t.home
    if h is None:
        return None
    home = ex.agents.get(h)
    if home is None or h == avoid or home.status is not _UP:
        return None
    br = home.breaker
    if br._state is not _CLOSED and br.state is not _CLOSED:
        return None
    if t.sig is not _FREE_SIG and not eligible(home, t.spec):  # (free: any agent may run it)
        return None
    q = home.queue
    if q.n >= ex._st_deque_cap:
        return None
    limit = ex._st_overflow_wait
    if limit == math.inf:
        return home
    pw = home.planned.work
    speed = home.speed
    slots = home.concurrency
    # Queued work alone (a lower bound of load()) first: over the limit, the home
    # is backed up (the common case under load). Then load_bound() (running
    # tasks counted whole, an upper bound), and the exact load only between the two.
    qw = q.work + pw
    if qw / speed / slots > limit:
        return None
    if (home.run_est + q.work + pw) / speed / slots <= limit:
        return home
    # Running tasks' remainders summed without clipping at zero: another lower
    # bound, clear of the limit in the common backed-up case (no exact load).
    now = ex.now
    n = len(home.running)
    if n and (home.run_start + home.run_est / speed - n * now + qw / speed) / slots \
            > limit + 1e-6 * (1.0 + abs(now)):
        return None
    return home if home.load(now) <= limit else None


PLACEMENTS: dict[str, Placement] = {
    "global": place_global,
    "round_robin": place_round_robin,
    "random": place_random,
    "jsq": place_jsq,
    "p2c": place_p2c,
    "home": place_home,
}
