"""Admission control: accept, defer or reject a task on arrival, with a reason.

Three checks, in order:

1. Feasibility: a hard-deadline task whose estimated earliest finish (over the
   eligible agents, given their current backlog) is after its deadline is
   rejected; with `defer_soft_infeasible`, a soft-deadline one is deferred.
2. Per-class caps on queued tasks: over the cap a task is deferred (up to
   `max_defers` times, `defer_delay` apart) and then rejected.
3. Adaptive throttling (off unless `throttle`): a shed level moved by the
   observed queueing delay, on the injected clock. The signal is the larger
   of (a) the mean queueing delay (admission to first dispatch) of the tasks
   dispatched in the last `window` time units and (b) the current backlog
   delay (queued work / up capacity, from the core). Level k sheds the k
   lowest classes (never critical). At most once per `adapt_interval` the
   level goes +1 when the signal is above `target_wait`; it drops to 0 as
   soon as the signal is below half of it. Old samples leave the window as
   time passes, whether or not anything is dispatched, so the throttle
   cannot latch: once every task dispatched in the last `window` waited
   less than target/2 and the backlog delay is under target/2, nothing is
   shed (bound: `recovery_bound()` = window + adapt_interval after that).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from allocator.errors import InvalidInputError
from allocator.online.events import Code
from models import Priority


class Action(StrEnum):
    ACCEPT = "accept"
    DEFER = "defer"
    REJECT = "reject"


@dataclass(slots=True)
class Decision:
    action: Action
    code: Code | None = None
    reason: str = ""
    until: float = 0.0


ACCEPT = Decision(Action.ACCEPT)


@dataclass(slots=True)
class AdmissionConfig:
    feasibility: bool = True
    defer_soft_infeasible: bool = False
    class_caps: dict[Priority, int] = field(default_factory=dict)
    max_defers: int = 3
    defer_delay: float = 1.0
    throttle: bool = False
    target_wait: float = 5.0
    adapt_interval: float = 1.0
    #: Queueing delays of the dispatches in the last `window` time units make the
    #: throttle's signal (10 target waits by default, set in __post_init__).
    window: float | None = None

    def __post_init__(self) -> None:
        for name in ("target_wait", "adapt_interval", "defer_delay"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise InvalidInputError(f"must be a finite number >= 0, got {v!r}", field=name)
        if self.window is None:
            self.window = 10.0 * self.target_wait
        elif not (math.isfinite(self.window) and self.window > 0):
            raise InvalidInputError(f"must be a finite number > 0, got {self.window!r}",
                                    field="window")


class AdmissionController:
    """Admission decisions; `backlog()` (from the core) is the current backlog delay."""

    def __init__(self, config: AdmissionConfig | None = None, *,
                 backlog: Callable[[], float] | None = None) -> None:
        self.config = config or AdmissionConfig()
        self.shed_level = 0
        #: The throttle's current signal (see the module docstring).
        self.signal = 0.0
        self._backlog = backlog
        self._samples: deque[tuple[float, float]] = deque()
        self._sum = 0.0
        self._last_adapt = -math.inf

    def recovery_bound(self) -> float:
        """Time after which a healthy queue stops all shedding (window + adapt_interval)."""
        c = self.config
        assert c.window is not None
        return c.window + c.adapt_interval

    @property
    def wait_mean(self) -> float:
        """Mean queueing delay of the dispatches in the window (as of the last sample)."""
        return self._sum / len(self._samples) if self._samples else 0.0

    @property
    def trivial(self) -> bool:
        """True when only hard-deadline feasibility can stop a task (the common case)."""
        c = self.config
        return not c.class_caps and not c.throttle and not c.defer_soft_infeasible \
            and not self.shed_level

    def observe_wait(self, wait: float, now: float) -> None:
        """Feed a dispatch's queueing delay (drives the throttle)."""
        self._samples.append((now, wait))
        self._sum += wait
        self._adapt(now)

    def _measure(self, now: float) -> float:
        cfg = self.config
        assert cfg.window is not None
        horizon = now - cfg.window
        q = self._samples
        while q and q[0][0] < horizon:
            self._sum -= q.popleft()[1]
        if not q:
            self._sum = 0.0
        s = self._sum / len(q) if q else 0.0
        if self._backlog is not None:
            s = max(s, self._backlog())
        self.signal = s
        return s

    def _adapt(self, now: float) -> None:
        cfg = self.config
        if not cfg.throttle or now - self._last_adapt < cfg.adapt_interval:
            return
        self._last_adapt = now
        s = self._measure(now)
        if s > cfg.target_wait and self.shed_level < 3:
            self.shed_level += 1
        elif s < cfg.target_wait / 2:
            self.shed_level = 0

    def decide(self, *, priority: Priority, deadline: float | None, hard: bool,
               earliest_finish: float, queued_in_class: int, defers: int,
               now: float, conflict: str = "") -> Decision:
        """Accept, defer or reject one task. `conflict` (hard tasks under EDF and
        priority queues): why admitting it would make a queued hard task miss."""
        cfg = self.config
        self._adapt(now)
        if cfg.feasibility and deadline is not None and earliest_finish > deadline + 1e-9:
            why = (f"earliest estimated finish t={earliest_finish:.4g} is after the "
                   f"deadline t={deadline:.4g}")
            if hard:
                return Decision(Action.REJECT, Code.DEADLINE_INFEASIBLE, why)
            if cfg.defer_soft_infeasible:
                return self._defer_or_reject(Code.DEADLINE_INFEASIBLE, why, defers, now)
        if conflict and hard and cfg.feasibility:
            return Decision(Action.REJECT, Code.DEADLINE_INFEASIBLE, conflict)
        cap = cfg.class_caps.get(priority)
        if cap is not None and queued_in_class >= cap:
            return self.over_cap(priority, queued_in_class, cap, defers, now)
        if self.shed_level and priority.rank >= 4 - self.shed_level:
            return self._defer_or_reject(
                Code.THROTTLED, f"overloaded: queueing delay {self.signal:.3g} > target "
                f"{cfg.target_wait:.3g}, shedding {priority.value}", defers, now)
        return ACCEPT

    def over_cap(self, priority: Priority, queued_in_class: int, cap: int, defers: int,
                 now: float) -> Decision:
        """The decision for a task arriving with `queued_in_class` of its class queued,
        at or over the class's cap: deferred (`max_defers` times), then rejected."""
        return self._defer_or_reject(
            Code.QUEUE_CAP, f"{queued_in_class} {priority.value} tasks queued (cap {cap})",
            defers, now)

    def _defer_or_reject(self, code: Code, why: str, defers: int, now: float) -> Decision:
        cfg = self.config
        if defers < cfg.max_defers:
            return Decision(Action.DEFER, code, why, now + cfg.defer_delay * (2 ** defers))
        return Decision(Action.REJECT, code, f"{why}; deferred {defers} times")
