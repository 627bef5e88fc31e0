"""Admission control: accept, defer or reject a task on arrival, with a reason.

Three checks, in order:

1. Feasibility: a hard-deadline task whose estimated earliest finish (over the
   eligible agents, given their current backlog) is after its deadline is
   rejected; with `defer_soft_infeasible`, a soft-deadline one is deferred.
2. Per-class caps on queued tasks: over the cap a task is deferred (up to
   `max_defers` times, `defer_delay` apart) and then rejected.
3. Adaptive throttling (off unless `throttle`): an AIMD shed level moved by
   the observed queueing delay. Level k sheds the k lowest classes (never
   critical): +1 when the delay EWMA is above `target_wait`, -1 when it is
   below half of it, at most once per `adapt_interval`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

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
    #: EWMA weight of a new wait observation; 0.1 averages over ~10 dispatches.
    ewma_alpha: float = 0.1


class AdmissionController:
    def __init__(self, config: AdmissionConfig | None = None) -> None:
        self.config = config or AdmissionConfig()
        self.shed_level = 0
        self.wait_ewma = 0.0
        self._last_adapt = -1e300

    @property
    def trivial(self) -> bool:
        """True when only hard-deadline feasibility can stop a task (the common case)."""
        c = self.config
        return not c.class_caps and not c.throttle and not c.defer_soft_infeasible \
            and not self.shed_level

    def observe_wait(self, wait: float, now: float) -> None:
        """Feed a dispatch's queueing delay (drives the throttle)."""
        cfg = self.config
        self.wait_ewma += cfg.ewma_alpha * (wait - self.wait_ewma)
        if not cfg.throttle or now - self._last_adapt < cfg.adapt_interval:
            return
        if self.wait_ewma > cfg.target_wait and self.shed_level < 3:
            self.shed_level += 1
            self._last_adapt = now
        elif self.wait_ewma < cfg.target_wait / 2 and self.shed_level > 0:
            self.shed_level -= 1
            self._last_adapt = now

    def decide(self, *, priority: Priority, deadline: float | None, hard: bool,
               earliest_finish: float, queued_in_class: int, defers: int,
               now: float) -> Decision:
        cfg = self.config
        if cfg.feasibility and deadline is not None and earliest_finish > deadline + 1e-9:
            why = (f"earliest estimated finish t={earliest_finish:.4g} is after the "
                   f"deadline t={deadline:.4g}")
            if hard:
                return Decision(Action.REJECT, Code.DEADLINE_INFEASIBLE, why)
            if cfg.defer_soft_infeasible:
                return self._defer_or_reject(Code.DEADLINE_INFEASIBLE, why, defers, now)
        cap = cfg.class_caps.get(priority)
        if cap is not None and queued_in_class >= cap:
            return self._defer_or_reject(
                Code.QUEUE_CAP, f"{queued_in_class} {priority.value} tasks queued (cap {cap})",
                defers, now)
        if self.shed_level and priority.rank >= 4 - self.shed_level:
            return self._defer_or_reject(
                Code.THROTTLED, f"overloaded: mean wait {self.wait_ewma:.3g} > target "
                f"{cfg.target_wait:.3g}, shedding {priority.value}", defers, now)
        return ACCEPT

    def _defer_or_reject(self, code: Code, why: str, defers: int, now: float) -> Decision:
        cfg = self.config
        if defers < cfg.max_defers:
            return Decision(Action.DEFER, code, why, now + cfg.defer_delay * (2 ** defers))
        return Decision(Action.REJECT, code, f"{why}; deferred {defers} times")
