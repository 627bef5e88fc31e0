"""Compiled LPT for one-lane agents: :func:`allocator.solvers.balance.lpt_assign`'s rule
with no Python work per task.

Why compiled: at 10,000 agents x 1M tasks the numpy LPT spends ~10 us a task
in interpreter and ufunc-call overhead around a few thousand multiply-adds,
13 of the 14.6 s of a solve. Here a task is one loop over its group's
members. The float operations are the numpy path's (finish = group load +
(1 / rate) x work, first minimum wins, room checked as ``free >= demand``),
so the assignment is the same (tests compare them with the plain LPT).

Without numba (an optional dependency) :data:`HAVE_NUMBA` is False and
callers use the numpy path; :func:`lpt_loop` itself is plain Python then.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from functools import cache

import numpy as np

#: numba is installed (it is imported on the first compiled call only: its
#: import costs ~0.5 s and ~70 MB, which small solves never need).
HAVE_NUMBA = importlib.util.find_spec("numba") is not None


@cache
def compiled_loop() -> Callable[..., np.ndarray]:
    """:func:`lpt_loop` compiled (numba caches the machine code next to this module)."""
    from numba import njit

    return njit(cache=True, nogil=True)(lpt_loop)  # type: ignore[no-any-return]


def lpt_loop(order: np.ndarray, work: np.ndarray, group_of: np.ndarray,
             mem_ptr: np.ndarray, mem_idx: np.ndarray, inv_rate: np.ndarray,
             slot_ptr: np.ndarray, slot_pos: np.ndarray, demand: np.ndarray,
             free: np.ndarray, has_demand: bool, gload: np.ndarray) -> np.ndarray:
    """Agent of each task (-1: no member has room); `free` and `gload` are updated in place.

    Group g's members are ``mem_idx[mem_ptr[g]:mem_ptr[g + 1]]`` (agent order);
    ``gload`` holds each member's busy time at the same flat positions (its
    starting load: tasks already kept there), and agent i's positions there
    are ``slot_pos[slot_ptr[i]:slot_ptr[i + 1]]``.
    """
    n = order.size
    R = demand.shape[1]
    agent_of = np.full(n, -1, dtype=np.int64)
    fin = np.empty(mem_idx.size)
    for t in range(n):
        j = order[t]
        g = group_of[j]
        lo, hi = mem_ptr[g], mem_ptr[g + 1]
        if lo == hi:
            continue
        w = work[j]
        best = np.inf
        k = -1
        for p in range(lo, hi):
            f = gload[p] + inv_rate[p] * w
            fin[p] = f
            if f < best:
                best = f
                k = p
        i = mem_idx[k]
        if has_demand:
            fits = True
            for r in range(R):
                if free[i, r] < demand[j, r]:
                    fits = False
                    break
            if not fits:
                best = np.inf
                k = -1
                for p in range(lo, hi):
                    f = fin[p]
                    if f < best:
                        a = mem_idx[p]
                        ok = True
                        for r in range(R):
                            if free[a, r] < demand[j, r]:
                                ok = False
                                break
                        if ok:
                            best = f
                            k = p
                if k < 0:
                    continue
                i = mem_idx[k]
            for r in range(R):
                free[i, r] -= demand[j, r]
        agent_of[j] = i
        for q in range(slot_ptr[i], slot_ptr[i + 1]):
            gload[slot_pos[q]] = best
    return agent_of


def lpt_compiled(work: np.ndarray, rate: np.ndarray, group_of: np.ndarray,
                 group_agents: np.ndarray, demand: np.ndarray, free: np.ndarray,
                 load0: np.ndarray | None = None) -> np.ndarray:
    """The CSR layout :func:`lpt_loop` reads, then the loop.

    `free` is the room left on each agent (its capacity limit,
    :func:`allocator.problem.capacity_limit`, less what is kept there) and
    `load0` its busy time so far (None: 0); the loop works on copies.
    """
    m = rate.size
    used = np.zeros(group_agents.shape[0], dtype=bool)
    used[np.unique(group_of)] = True
    members = [np.flatnonzero(row) if used[g] else np.empty(0, dtype=np.int64)
               for g, row in enumerate(group_agents)]
    sizes = np.array([idx.size for idx in members], dtype=np.int64)
    mem_ptr = np.zeros(len(members) + 1, dtype=np.int64)
    mem_ptr[1:] = np.cumsum(sizes)
    mem_idx = (np.concatenate(members).astype(np.int64) if members
               else np.empty(0, dtype=np.int64))
    # 1 / rate per member, computed per group as the numpy path does.
    inv_rate = (np.concatenate([1.0 / rate[idx] for idx in members]) if members
                else np.empty(0))
    by_agent = np.argsort(mem_idx, kind="stable")
    slot_ptr = np.zeros(m + 1, dtype=np.int64)
    slot_ptr[1:] = np.cumsum(np.bincount(mem_idx, minlength=m))
    order = np.argsort(-work, kind="stable")
    loop = compiled_loop() if HAVE_NUMBA else lpt_loop
    return loop(order, np.ascontiguousarray(work, dtype=float),
                    np.ascontiguousarray(group_of, dtype=np.int64), mem_ptr, mem_idx,
                    np.ascontiguousarray(inv_rate, dtype=float), slot_ptr,
                    by_agent.astype(np.int64), np.ascontiguousarray(demand, dtype=float),
                    np.array(free, dtype=float), bool(np.any(demand > 0)),
                    (np.zeros(mem_idx.size) if load0 is None
                     else np.asarray(load0, dtype=float)[mem_idx]))
