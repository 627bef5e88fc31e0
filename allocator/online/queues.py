"""Queue disciplines: the order in which an agent (or the global queue) serves tasks.

Every queue has two ends. The *owner* end (`peek`/`take`) is the entry the
discipline serves next; the *thief* end (`back`) is the entry it would serve
last, which is what work stealing takes. Entries are `(key, seq, task)` tuples
kept sorted (a fifo keeps the tasks themselves, sorted by `seq`), where `seq`
is the task's submission number: ties between equal keys go to the earlier
submission, deterministically. The key is:

- fifo: 0.0 (so the order is submission order)
- edf: the absolute deadline (+inf without one)
- wfq: the virtual finish time `max(V, F_flow) + work / weight_flow`
- priority: per class fifo queues, chosen by stride scheduling on the class
  weights, with any head older than its class's aging limit served first
- cfs: per flow fifo queues, the flow with the least weighted virtual runtime first
- priority_wfq: the priority classes as above, and inside each class the
  tenants by weighted fair queuing (a class's own virtual clock)

`work` is the sum of the queued tasks' estimated work.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Final

from models import Priority

if TYPE_CHECKING:
    from allocator.online.state import TaskState

#: A queue head's sort key; heads of queues of one discipline compare with `<`.
Key = tuple[Any, ...]


class TaskQueue:
    """What every discipline's queue does (a base class rather than a Protocol: a
    compiled build reads its fields directly and calls its methods through a table)."""

    __slots__ = ("charges", "n", "plain", "work")

    def __init__(self) -> None:
        #: Queued tasks (what len() returns; an attribute, read on every dispatch).
        self.n = 0
        #: The queued tasks' estimated work.
        self.work = 0.0
        #: Whether `charge` does anything (the core skips the call otherwise).
        self.charges = False
        #: A SortedQueue whose head the core may take itself (no subclass logic in take).
        self.plain = False

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[TaskState]:
        raise NotImplementedError

    def push(self, t: TaskState, now: float) -> None:
        raise NotImplementedError

    def peek(self, now: float) -> TaskState | None:
        raise NotImplementedError

    def take(self, t: TaskState, now: float) -> None:
        raise NotImplementedError

    def remove(self, t: TaskState) -> None:
        raise NotImplementedError

    def back(self, limit: int) -> list[TaskState]:
        raise NotImplementedError

    def peek_key(self, now: float) -> Key | None:
        raise NotImplementedError

    def charge(self, t: TaskState, delta: float) -> None:
        return None

    def work_before(self, t: TaskState) -> float:
        """The queued work this queue would serve before `t`, were `t` pushed now.

        All of it here (arrival order, and the fair disciplines, whose order a
        push itself moves); EDF and priority queues count only what precedes
        `t` in their order (admission control's earliest-finish estimate).
        """
        return self.work

    def behind(self, t: TaskState) -> list[tuple[TaskState, float]]:
        """The queued hard-deadline tasks `t` would be served before, were it pushed
        now, each with the queued work served before it (without `t`): the tasks
        admitting `t` delays. None here (`t` goes last)."""
        return []

    def served_order(self, t: TaskState, limit: int) -> tuple[list[TaskState], int] | None:
        """The queued tasks in the order this queue would serve them, and the number
        served before `t` were it pushed now (None over `limit` tasks: admission then
        estimates from the work alone). Here `t` goes last."""
        if self.n > limit:
            return None
        return list(self), self.n


#: A sorted queue cuts off its taken prefix once it is longer than this and than
#: the rest (`SortedQueue._drop_head`; the core's dispatch loop does the same inline).
COMPACT_AFTER: Final = 64


class SortedQueue(TaskQueue):
    """Entries sorted by (key, seq); owner end at `head`, thief end at the list's end.

    Popping the head only advances an index (O(1)); appending a key not
    smaller than the last is O(1); other inserts and removals are a bisect plus
    a memmove. Used directly for fifo, edf, wfq and plan order.
    """

    __slots__ = ("_head", "_items")

    def __init__(self) -> None:
        super().__init__()
        self._items: list[Any] = []
        self._head = 0
        self.plain = True

    def __iter__(self) -> Iterator[TaskState]:
        items = self._items
        for i in range(self._head, len(items)):
            yield items[i][2]

    def key_of(self, t: TaskState) -> float:
        return 0.0

    def push(self, t: TaskState, now: float) -> None:
        self.push_key(t, self.key_of(t))

    def push_key(self, t: TaskState, key: float) -> None:
        e = (key, t.seq, t)
        t.qkey = key
        t.queue = self
        items = self._items
        self.n += 1
        if len(items) == self._head:
            items.append(e)
            self.work += t.est
            return
        last = items[-1]
        if key > last[0] or (key == last[0] and t.seq > last[1]):
            items.append(e)
        else:
            insort(items, e, lo=self._head)
        self.work += t.est

    def peek(self, now: float) -> TaskState | None:
        return self._items[self._head][2] if len(self._items) > self._head else None

    def peek_key(self, now: float) -> Key | None:
        if len(self._items) == self._head:
            return None
        e = self._items[self._head]
        return (e[0], e[1])

    def take(self, t: TaskState, now: float) -> None:
        items = self._items
        if len(items) > self._head and items[self._head][2] is t:
            self._drop_head(t)
        else:
            self.remove(t)

    def _drop_head(self, t: TaskState) -> None:
        """Take the head entry (it holds `t`): advance the index; now and then, once
        the taken prefix is over half the list, cut it off (amortised O(1))."""
        items = self._items
        items[self._head] = None
        self._head = h = self._head + 1
        if h > COMPACT_AFTER and h * 2 > len(items):
            del items[:h]
            self._head = 0
        self._detach(t)

    def remove(self, t: TaskState) -> None:
        items = self._items
        if len(items) > self._head and items[-1][2] is t:
            # The thief end (stealing takes from there): no search.
            items.pop()
            self._detach(t)
            return
        i = bisect_left(items, (t.qkey, t.seq), lo=self._head)
        if i < len(items) and items[i][2] is t:
            del items[i]
            self._detach(t)
        else:  # pragma: no cover - a broken invariant, not an input error
            raise RuntimeError(f"task {t.id} is not in this queue")

    def _detach(self, t: TaskState) -> None:
        t.queue = None
        self.n -= 1
        self.work = self.work - t.est if self.n else 0.0

    def back(self, limit: int) -> list[TaskState]:
        items = self._items
        n = len(items)
        lo = n - limit
        if lo < self._head:
            lo = self._head
        if lo >= n - 1:  # one entry or none (stealing's common case: short queues)
            return [items[-1][2]] if lo == n - 1 else []
        return list(map(_task_of, items[:lo - 1:-1] if lo else items[::-1]))


#: A sorted queue entry's task (entries are `(key, seq, task)`).
_task_of = itemgetter(2)


def _seq(t: TaskState) -> int:
    return t.seq


class FifoQueue(SortedQueue):
    """Submission order. Every key is 0.0, so the entries are the tasks themselves,
    sorted by `seq`: no `(key, seq, task)` tuple per queued task (one object fewer
    for the garbage collector to scan per task waiting in a runtime's queues)."""

    __slots__ = ()

    def __iter__(self) -> Iterator[TaskState]:
        items = self._items
        for i in range(self._head, len(items)):
            yield items[i]

    def push(self, t: TaskState, now: float) -> None:
        t.qkey = 0.0
        t.queue = self
        self.n += 1
        items = self._items
        if len(items) == self._head or t.seq > items[-1].seq:
            items.append(t)
        else:
            insort(items, t, lo=self._head, key=_seq)
        self.work += t.est

    def push_key(self, t: TaskState, key: float) -> None:
        self.push(t, 0.0)  # (a fifo's key is always 0.0)

    def peek(self, now: float) -> TaskState | None:
        items = self._items
        return items[self._head] if len(items) > self._head else None  # type: ignore[no-any-return]

    def peek_key(self, now: float) -> Key | None:
        items = self._items
        if len(items) == self._head:
            return None
        return (0.0, items[self._head].seq)

    def take(self, t: TaskState, now: float) -> None:
        items = self._items
        if len(items) > self._head and items[self._head] is t:
            self._drop_head(t)
        else:
            self.remove(t)

    def remove(self, t: TaskState) -> None:
        items = self._items
        if len(items) > self._head and items[-1] is t:  # the thief end: no search
            items.pop()
            self._detach(t)
            return
        i = bisect_left(items, t.seq, lo=self._head, key=_seq)
        if i < len(items) and items[i] is t:
            del items[i]
            self._detach(t)
        else:  # pragma: no cover - a broken invariant, not an input error
            raise RuntimeError(f"task {t.id} is not in this queue")

    def back(self, limit: int) -> list[TaskState]:
        items = self._items
        lo = len(items) - limit
        if lo < self._head:
            lo = self._head
        return items[:lo - 1:-1] if lo else items[::-1]


class EdfQueue(SortedQueue):
    __slots__ = ()

    def key_of(self, t: TaskState) -> float:
        d = t.deadline
        return math.inf if d is None else d

    def push(self, t: TaskState, now: float) -> None:
        # push_key(t, key_of(t)), inlined.
        d = t.deadline
        key = math.inf if d is None else d
        t.qkey = key
        t.queue = self
        self.n += 1
        items = self._items
        if len(items) == self._head:
            items.append((key, t.seq, t))
        else:
            last = items[-1]
            if key > last[0] or (key == last[0] and t.seq > last[1]):
                items.append((key, t.seq, t))
            else:
                insort(items, (key, t.seq, t), lo=self._head)
        self.work += t.est

    def work_before(self, t: TaskState) -> float:
        # Entries with a key up to t's deadline (equal keys: earlier submissions first).
        d = t.deadline
        key = math.inf if d is None else d
        items = self._items
        h = self._head
        i = bisect_right(items, (key, math.inf), lo=h)
        n = len(items)
        if i == n:
            return self.work  # (the common case: deadlines in arrival order)
        if i - h <= n - i:
            w = 0.0
            for j in range(h, i):
                w += items[j][2].est
            return w
        after = 0.0
        for j in range(i, n):
            after += items[j][2].est
        w = self.work - after
        return w if w > 0.0 else 0.0

    def behind(self, t: TaskState) -> list[tuple[TaskState, float]]:
        d = t.deadline
        key = math.inf if d is None else d
        items = self._items
        i = bisect_right(items, (key, math.inf), lo=self._head)
        if i == len(items):
            return []
        out: list[tuple[TaskState, float]] = []
        after = 0.0  # the work from the back down to the entry at j, inclusive
        for j in range(len(items) - 1, i - 1, -1):
            x: TaskState = items[j][2]
            after += x.est
            if x.hard:
                w = self.work - after
                out.append((x, w if w > 0.0 else 0.0))
        out.reverse()
        return out

    def served_order(self, t: TaskState, limit: int) -> tuple[list[TaskState], int] | None:
        if self.n > limit:
            return None
        d = t.deadline
        key = math.inf if d is None else d
        h = self._head
        items = self._items
        i = bisect_right(items, (key, math.inf), lo=h)
        return [e[2] for e in items[h:]], i - h


class PlanQueue(SortedQueue):
    """Tasks placed by an installed plan, served in the plan's start order."""

    __slots__ = ()


def flow_of(t: TaskState) -> str:
    """The fairness flow of a task: its tenant, else its priority class."""
    return t.tenant if t.tenant is not None else t.spec.priority.value


class FairClock:
    """Virtual time shared by every queue of one executor (per flow and per class).

    Skills and demands split tasks into many queues (per-agent deques, one
    global pool per eligibility signature) for *eligibility*; fairness is
    *accounted* here, once per executor, so a flow's tags and a class's pass
    mean the same thing in every queue. An idle agent comparing the heads of
    several queues by `peek_key` then serves them in one global fair order,
    and shares follow the weights wherever a task waits.

    - wfq: `v` (the largest finish tag served so far) and `last[f]` (flow f's
      last finish tag);
    - cfs: `vr[f]` (flow f's weighted virtual runtime), `min_v`, and the
      number of queued tasks per flow (a flow becomes active, and starts at
      `min_v`, only when it had nothing queued anywhere);
    - priority: `passes[c]` (stride pass of class c), `vpass`, queued tasks per class.
    """

    __slots__ = ("_sub", "active", "aging", "cactive", "last", "min_v", "passes", "stride",
                 "v", "version", "vpass", "vr", "weights")

    def __init__(self, weights: dict[str, float] | None = None,
                 priority: PriorityConfig | None = None) -> None:
        cfg = priority or PriorityConfig()
        self.weights = weights or {}
        self.v = 0.0
        self.last: dict[str, float] = {}
        self.vr: dict[str, float] = {}
        self.min_v = 0.0
        self.active: dict[str, int] = {}
        self.stride = [1.0 / max(cfg.weights.get(c, 1.0), 1e-9) for c in _CLASSES]
        self.aging = [cfg.aging.get(c, math.inf) for c in _CLASSES]
        self.passes = [0.0] * 4
        self.vpass = 0.0
        self.cactive = [0, 0, 0, 0]
        #: Bumped on every change of passes or queue contents (memo key of PriorityQueue).
        self.version = 0
        self._sub: list[FairClock] | None = None

    def per_class(self) -> list[FairClock]:
        """One WFQ clock per priority class (same flow weights), made on first use.

        priority_wfq queues tag tenants inside a class on that class's clock, so
        a class served rarely does not see its tags run behind the others'.
        """
        if self._sub is None:
            self._sub = [FairClock(self.weights) for _ in _CLASSES]
        return self._sub

    def weight(self, flow: str) -> float:
        return self.weights.get(flow, 1.0)

    def dropped(self, t: TaskState) -> None:
        """Give back the WFQ tag of a task that ends while queued (cancelled,
        rejected, expired): its work never runs, so its flow's later tasks must
        not be tagged behind it (200 cancelled tasks kept a flow's new ones
        behind 200 units of work that never ran)."""
        if t.vtag < 0.0:
            return
        ck = self._sub[t.rank] if self._sub is not None else self
        f = flow_of(t)
        if f in ck.last:
            ck.last[f] = max(0.0, ck.last[f] - max(t.est, 1e-9) / ck.weight(f))
        t.vtag = -1.0


class WfqQueue(SortedQueue):
    """Weighted fair queuing (self-clocked): serve the smallest virtual finish time.

    A task of flow f gets `F = max(V, F_last[f]) + work / w_f` when first
    queued (a move between queues keeps its tag), where V is the largest tag
    served so far by any queue of the executor, or this queue's smallest waiting
    tag when that is lower (V may come from a flow on other agents). A backlogged flow with weight
    w gets a share w / sum(w) of the served work.
    """

    __slots__ = ("clock",)

    def __init__(self, clock: FairClock | None = None) -> None:
        super().__init__()
        self.clock = clock or FairClock()
        self.plain = False  # (take moves the virtual time)

    @property
    def weights(self) -> dict[str, float]:
        return self.clock.weights

    def key_of(self, t: TaskState) -> float:
        if t.vtag >= 0.0:
            return t.vtag
        c = self.clock
        f = flow_of(t)
        v = c.v
        if len(self._items) > self._head:
            # The smallest tag waiting here, when below V: V is the largest tag
            # served anywhere, and a flow on other agents (a fast-tagged small
            # weight) would start newcomers here behind this queue's whole backlog.
            head = self._items[self._head][0]
            if head < v:
                v = head
        finish = max(v, c.last.get(f, 0.0)) + max(t.est, 1e-9) / c.weight(f)
        c.last[f] = finish
        t.vtag = finish
        return finish

    def take(self, t: TaskState, now: float) -> None:
        c = self.clock
        if t.qkey > c.v:
            c.v = t.qkey
        t.vtag = -1.0  # served: a retry is charged again
        super().take(t, now)


@dataclass(slots=True)
class PriorityConfig:
    """Scheduling shares and aging limits of the four classes.

    weights: when several classes are waiting, class c is served a share
    w_c / sum(w) of the dispatches (stride scheduling).
    aging: a head task that has waited this long is served before any
    younger one regardless of class, so no class starves: with a steady
    stream of higher classes, a low task waits at most about its aging limit
    plus the time to serve the older aged heads.
    """

    weights: dict[Priority, float] = field(default_factory=lambda: {
        Priority.CRITICAL: 8.0, Priority.HIGH: 4.0, Priority.NORMAL: 2.0, Priority.LOW: 1.0})
    aging: dict[Priority, float] = field(default_factory=lambda: {
        Priority.CRITICAL: math.inf, Priority.HIGH: 60.0, Priority.NORMAL: 30.0,
        Priority.LOW: 30.0})


_CLASSES: Final = (Priority.CRITICAL, Priority.HIGH, Priority.NORMAL, Priority.LOW)




class PriorityQueue(TaskQueue):
    """Multi-level queue: one fifo per class, stride scheduling on weights, aging.

    The passes are the executor's (a shared FairClock), so class shares hold
    across all its queues. `peek_key` is `(0, enqueued, seq)` for an aged head
    (oldest first, before anything else) and `(1, pass, seq)` otherwise.
    """

    __slots__ = ("_age_at", "_memo_choice", "_memo_now", "_memo_version", "_qs", "clock")

    def __init__(self, config: PriorityConfig | None = None, *,
                 clock: FairClock | None = None) -> None:
        super().__init__()
        self.clock = clock or FairClock(priority=config)
        #: One queue per class: fifos here, WFQ queues in PriorityWfqQueue (typed as
        #: their common base, which is what a compiled build checks).
        self._qs: list[SortedQueue] = [FifoQueue() for _ in _CLASSES]
        #: A lower bound of the time the first class head ages (min over the heads of
        #: enqueued + aging): well before it (a rounding margin), `_choose_now` skips
        #: the aging checks. Lowered whenever a head changes, exact after a full choice.
        self._age_at = math.inf
        #: now, clock version and choice of the last `_choose` (peek, then take).
        self._memo_now = math.nan
        self._memo_version = -1
        self._memo_choice = -1

    def __iter__(self) -> Iterator[TaskState]:
        for q in self._qs:
            yield from q

    def push(self, t: TaskState, now: float) -> None:
        c = t.rank
        ck = self.clock
        if not ck.cactive[c]:  # a class idle everywhere does not bank credit
            ck.passes[c] = max(ck.passes[c], ck.vpass + ck.stride[c])
        ck.cactive[c] += 1
        ck.version += 1
        q = self._qs[c]
        items = q._items
        seq = t.seq
        if not q.n or seq > items[-1].seq:  # the class fifo's append (its key is always 0)
            items.append(t)
            t.qkey = 0.0
            q.n += 1
            q.work += t.est
        else:
            q.push(t, now)
        t.queue = self
        self.n += 1
        self.work += t.est
        # (every pushed task lowers the bound, head or not: one compare, no head lookup)
        at = t.enqueued + ck.aging[c]
        if at < self._age_at:
            self._age_at = at

    def _choose(self, now: float) -> int:
        if not self.n:
            return -1
        if self._memo_now == now and self._memo_version == self.clock.version:
            return self._memo_choice
        c = self._choose_now(now)
        self._memo_now = now
        self._memo_version = self.clock.version
        self._memo_choice = c
        return c

    def _choose_now(self, now: float) -> int:
        # The four classes unrolled (a loop costs a third more on this hot path):
        # the oldest aged head if any, else the class with the smallest pass (the
        # first one on ties).
        ck = self.clock
        passes = ck.passes
        q0, q1, q2, q3 = self._qs
        best = -1
        best_pass = math.inf
        if now + 1e-9 * (1.0 + abs(now)) < self._age_at:
            # No head can have aged yet (the margin covers rounding in `now - enq`):
            # the smallest pass alone, the choice the full rule makes then.
            if q0.n:
                best, best_pass = 0, passes[0]
            if q1.n and passes[1] < best_pass:
                best, best_pass = 1, passes[1]
            if q2.n and passes[2] < best_pass:
                best, best_pass = 2, passes[2]
            if q3.n and passes[3] < best_pass:
                best = 3
            return best
        aging = ck.aging
        aged = -1
        oldest = math.inf
        bound = math.inf
        if q0.n:
            enq = q0._items[q0._head].enqueued
            if now - enq >= aging[0]:
                aged, oldest = 0, enq
            best, best_pass = 0, passes[0]
            bound = enq + aging[0]
        if q1.n:
            enq = q1._items[q1._head].enqueued
            if enq < oldest and now - enq >= aging[1]:
                aged, oldest = 1, enq
            if passes[1] < best_pass:
                best, best_pass = 1, passes[1]
            bound = min(bound, enq + aging[1])
        if q2.n:
            enq = q2._items[q2._head].enqueued
            if enq < oldest and now - enq >= aging[2]:
                aged, oldest = 2, enq
            if passes[2] < best_pass:
                best, best_pass = 2, passes[2]
            bound = min(bound, enq + aging[2])
        if q3.n:
            enq = q3._items[q3._head].enqueued
            if enq < oldest and now - enq >= aging[3]:
                aged = 3
            elif aged < 0 and passes[3] < best_pass:
                best = 3
            bound = min(bound, enq + aging[3])
        self._age_at = bound
        return aged if aged >= 0 else best

    def peek(self, now: float) -> TaskState | None:
        if not self.n:
            return None
        version = self.clock.version
        if self._memo_now == now and self._memo_version == version:
            c = self._memo_choice
        else:  # _choose(now), inlined
            c = self._choose_now(now)
            self._memo_now = now
            self._memo_version = version
            self._memo_choice = c
        q = self._qs[c]
        return q._items[q._head]  # type: ignore[no-any-return]

    def peek_key(self, now: float) -> Key | None:
        if not self.n:
            return None
        ck = self.clock
        version = ck.version
        if self._memo_now == now and self._memo_version == version:
            c = self._memo_choice
        else:  # _choose(now), inlined
            c = self._choose_now(now)
            self._memo_now = now
            self._memo_version = version
            self._memo_choice = c
        q = self._qs[c]
        t = q._items[q._head]
        enq = t.enqueued
        if now - enq >= ck.aging[c]:
            return (0.0, enq, t.seq)
        return (1.0, ck.passes[c], t.seq)

    def take(self, t: TaskState, now: float) -> None:
        c = t.rank
        ck = self.clock
        ck.vpass = p = ck.passes[c]
        ck.passes[c] = p + ck.stride[c]
        q = self._qs[c]
        items = q._items
        h = q._head
        if q.n and items[h] is t:  # the class fifo's head (always, from _choose)
            items[h] = None
            q._head = h = h + 1
            if h > 64 and h * 2 > len(items):
                del items[:h]
                q._head = 0
            q.n = n = q.n - 1
            if n:
                q.work -= t.est
                # The class's new head (an older one may sit behind a deferred task).
                at = items[q._head].enqueued + ck.aging[c]
                if at < self._age_at:
                    self._age_at = at
            else:
                q.work = 0.0
            t.queue = None
        else:
            q.take(t, now)
            self._new_head(c)
        ck.cactive[c] -= 1
        ck.version += 2
        self.n -= 1
        self.work = self.work - t.est if self.n else 0.0

    def _new_head(self, c: int) -> None:
        """Lower the aging bound by class c's head (after its head may have changed)."""
        h = self._qs[c].peek(0.0)
        if h is not None:
            at = h.enqueued + self.clock.aging[c]
            if at < self._age_at:
                self._age_at = at

    def remove(self, t: TaskState) -> None:
        self._qs[t.rank].remove(t)
        self._gone(t)
        self._new_head(t.rank)

    def _gone(self, t: TaskState) -> None:
        self.clock.cactive[t.rank] -= 1
        self.clock.version += 1
        self.n -= 1
        self.work = self.work - t.est if self.n else 0.0

    def work_before(self, t: TaskState) -> float:
        return self._stride_order(t, False)[0]

    def behind(self, t: TaskState) -> list[tuple[TaskState, float]]:
        return self._stride_order(t, True)[1]

    def served_order(self, t: TaskState, limit: int) -> tuple[list[TaskState], int] | None:
        if self.n > limit:
            return None
        classes, at = self._stride_classes(t, False)
        its = [iter(q) for q in self._qs]
        return [next(its[c]) for c in classes], at

    def _stride_order(self, t: TaskState, full: bool
                      ) -> tuple[float, list[tuple[TaskState, float]]]:
        """This queue's dispatch order with `t` pushed now, by the stride rule on the
        executor's passes (no later arrivals; aging, tens of time units, left out):
        the work served before `t`, and (`full`) the hard tasks served after it,
        each with the work before it without `t`. Lower classes get their share in
        between, so a critical task behind a long low backlog waits for a low task
        or two, not for the backlog, and a low one for most of the higher work."""
        classes, at = self._stride_classes(t, not full)
        its = [iter(q) for q in self._qs]
        w = 0.0
        before = -1.0
        out: list[tuple[TaskState, float]] = []
        for i, c in enumerate(classes):
            if i == at:
                before = w  # (t's own work is not counted: `before` is without it)
            x = next(its[c])
            if before >= 0.0 and x.hard:
                out.append((x, w))
            w += x.est
        return (before if before >= 0.0 else w), out

    def _stride_classes(self, t: TaskState, stop: bool) -> tuple[list[int], int]:
        """The class of each queued task in dispatch order with `t` pushed now (the
        stride rule on the executor's passes), and how many are served before `t`;
        `stop`: the walk ends at `t`. One walk for `served_order` and admission's
        estimates, so the two never disagree."""
        ck = self.clock
        passes = list(ck.passes)
        stride = ck.stride
        r = t.rank
        if not ck.cactive[r]:  # (push: a class idle everywhere does not bank credit)
            passes[r] = max(passes[r], ck.vpass + stride[r])
        left = [q.n for q in self._qs]
        left[r] += 1  # t, the last of its class
        classes: list[int] = []
        at = -1
        while True:
            c = -1
            bp = math.inf
            for k in range(4):
                if left[k] and passes[k] < bp:
                    c = k
                    bp = passes[k]
            if c < 0:
                break
            passes[c] = bp + stride[c]
            left[c] -= 1
            if c == r and left[r] == 0 and at < 0:
                at = len(classes)
                if stop:
                    break
                continue
            classes.append(c)
        return classes, at

    def back(self, limit: int) -> list[TaskState]:
        out: list[TaskState] = []
        for c in (3, 2, 1, 0):
            if len(out) >= limit:
                break
            out.extend(self._qs[c].back(limit - len(out)))
        return out


class CfsQueue(TaskQueue):
    """Completely-fair style: per-flow fifo, serve the flow with least weighted vruntime.

    A flow's vruntime (shared by all the executor's queues through its
    FairClock) grows by run time / weight: by the estimate when a task is
    dispatched, corrected by `charge` when the actual run time is known. A
    flow that becomes active (nothing of it queued anywhere before) starts at
    the current minimum vruntime: no banked credit for having been idle.
    """

    __slots__ = ("_floor", "_flows", "_last", "_step", "clock")

    def __init__(self, weights: dict[str, float] | None = None, *,
                 clock: FairClock | None = None) -> None:
        super().__init__()
        self.clock = clock or FairClock(weights)
        self._flows: dict[str, FifoQueue] = {}
        #: The flow last served from this queue, its vruntime before that charge and
        #: the charge: where a waking flow starts here (see `_start_of`).
        self._last = ""
        self._floor = 0.0
        self._step = 0.0
        self.charges = True

    @property
    def weights(self) -> dict[str, float]:
        return self.clock.weights

    def _sum_work(self) -> None:
        """`work` as the sum of the flows' (kept as a field: read on every placement)."""
        self.work = sum(q.work for q in self._flows.values()) if self.n else 0.0

    def __iter__(self) -> Iterator[TaskState]:
        for q in self._flows.values():
            yield from q

    def push(self, t: TaskState, now: float) -> None:
        f = flow_of(t)
        q = self._flows.get(f)
        if q is None:
            q = self._flows[f] = FifoQueue()
        ck = self.clock
        n = ck.active.get(f, 0)
        if not n:
            ck.vr[f] = max(ck.vr.get(f, 0.0), self._start_of())
        ck.active[f] = n + 1
        q.push(t, now)
        t.queue = self
        self.n += 1
        self._sum_work()

    def _start_of(self) -> float:
        """Where a flow waking up in this queue starts: beside the flows it competes
        with here, else at the executor's `min_v`.

        Those are the flows waiting here and the one served last from here (it
        may still run). The start is this queue's last served vruntime, before
        its charge (what a single queue always used), kept within that charge
        below their least vruntime and never above it. `min_v` alone is the last
        served flow's anywhere, which may run on other agents at another pace: a
        waking flow then started far ahead of (starved) or behind (a burst of
        credit over) the flows it shares agents with.
        """
        vr = self.clock.vr
        least = vr[self._last] if self._last else math.inf
        for g, q in self._flows.items():
            if q.n and vr[g] < least:
                least = vr[g]
        if least == math.inf:
            return self.clock.min_v
        return min(least, max(self._floor, least - self._step))

    def _best(self) -> str | None:
        best: str | None = None
        bv = math.inf
        vr = self.clock.vr
        for f, q in self._flows.items():
            if len(q) and vr[f] < bv:
                best, bv = f, vr[f]
        return best

    def peek(self, now: float) -> TaskState | None:
        f = self._best()
        return None if f is None else self._flows[f].peek(now)

    def peek_key(self, now: float) -> Key | None:
        f = self._best()
        if f is None:
            return None
        h = self._flows[f].peek(now)
        assert h is not None
        return (self.clock.vr[f], h.seq)

    def take(self, t: TaskState, now: float) -> None:
        f = flow_of(t)
        ck = self.clock
        ck.min_v = self._floor = ck.vr[f]
        self._last = f
        self._step = t.est / ck.weight(f)
        ck.vr[f] += self._step
        self._flows[f].take(t, now)
        self._gone(f)

    def remove(self, t: TaskState) -> None:
        f = flow_of(t)
        self._flows[f].remove(t)
        self._gone(f)

    def _gone(self, f: str) -> None:
        self.n -= 1
        self.clock.active[f] -= 1
        self._sum_work()

    def back(self, limit: int) -> list[TaskState]:
        vr = self.clock.vr
        order = sorted((f for f, q in self._flows.items() if len(q)), key=lambda f: -vr[f])
        out: list[TaskState] = []
        for f in order:
            if len(out) >= limit:
                break
            out.extend(self._flows[f].back(limit - len(out)))
        return out

    def charge(self, t: TaskState, delta: float) -> None:
        f = flow_of(t)
        ck = self.clock
        if f in ck.vr:
            ck.vr[f] += delta / ck.weight(f)


class PriorityWfqQueue(PriorityQueue):
    """Priority classes (stride shares, aging) outside, tenants by WFQ inside each class.

    Strict-ish class order answers "critical before low"; WFQ inside a class
    answers "tenant shares follow their weights" when tenants compete for the
    same class. Both are accounted on the executor's FairClock, so they hold
    across the global pools and agent deques alike.
    """

    __slots__ = ()

    def __init__(self, config: PriorityConfig | None = None, *,
                 clock: FairClock | None = None) -> None:
        super().__init__(config, clock=clock)
        subs = self.clock.per_class()
        self._qs = [WfqQueue(subs[c]) for c in range(len(_CLASSES))]

    # PriorityQueue inlines its fifo classes' push, head and take; WFQ classes need their own.
    def _choose_now(self, now: float) -> int:
        # PriorityQueue's rule (the oldest aged head, else the smallest pass) on the
        # WFQ classes' heads.
        ck = self.clock
        passes = ck.passes
        aging = ck.aging
        best = -1
        best_pass = math.inf
        aged = -1
        oldest = math.inf
        for c, q in enumerate(self._qs):
            if q.n:
                h = q.peek(now)
                assert h is not None
                enq = h.enqueued
                if enq < oldest and now - enq >= aging[c]:
                    aged, oldest = c, enq
                if passes[c] < best_pass:
                    best, best_pass = c, passes[c]
        return aged if aged >= 0 else best

    def peek(self, now: float) -> TaskState | None:
        if not self.n:
            return None
        return self._qs[self._choose(now)].peek(now)

    def peek_key(self, now: float) -> Key | None:
        t = self.peek(now)  # (PriorityQueue's inlines its fifo classes' heads)
        if t is None:
            return None
        c = t.rank
        if now - t.enqueued >= self.clock.aging[c]:
            return (0.0, t.enqueued, t.seq)
        return (1.0, self.clock.passes[c], t.seq)

    def push(self, t: TaskState, now: float) -> None:
        c = t.rank
        ck = self.clock
        if not ck.cactive[c]:  # a class idle everywhere does not bank credit
            ck.passes[c] = max(ck.passes[c], ck.vpass + ck.stride[c])
        ck.cactive[c] += 1
        ck.version += 1
        self._qs[c].push(t, now)
        t.queue = self
        self.n += 1
        self.work += t.est

    def take(self, t: TaskState, now: float) -> None:
        c = t.rank
        ck = self.clock
        ck.vpass = p = ck.passes[c]
        ck.passes[c] = p + ck.stride[c]
        self._qs[c].take(t, now)
        t.queue = None
        ck.cactive[c] -= 1
        ck.version += 2
        self.n -= 1
        self.work = self.work - t.est if self.n else 0.0
