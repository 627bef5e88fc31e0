"""Named policies: where a new task is queued, in which order queues are served, and stealing.

A policy is three pluggable choices:

- placement (`global`, `round_robin`, `random`, `jsq`, `p2c`, `home`): where a
  task goes on arrival, the global queue or one agent's deque;
- discipline (`fifo`, `edf`, `priority`, `wfq`, `cfs`, `priority_wfq`): the order in every
  queue (see allocator.online.queues);
- stealing on or off, with its parameters (:class:`StealConfig`).

`make_policy(name)` builds one from its name; `policy_names()` lists them. The
names of the form `<discipline>+stealing` place at the task's home agent and
let idle agents steal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from allocator.errors import InvalidInputError
from allocator.online.placement import PLACEMENTS as _PLACEMENT_REGISTRY
from allocator.online.queues import (
    CfsQueue,
    EdfQueue,
    FairClock,
    FifoQueue,
    PriorityConfig,
    PriorityQueue,
    PriorityWfqQueue,
    TaskQueue,
    WfqQueue,
)

PLACEMENTS = tuple(_PLACEMENT_REGISTRY)
DISCIPLINES = ("fifo", "edf", "priority", "wfq", "cfs", "priority_wfq")


@dataclass(slots=True)
class StealConfig:
    """Work-stealing parameters (times in the clock's units).

    A thief takes a task only if it would finish it sooner than the victim by
    `margin_frac` of the task's own run time plus `latency` (the cost of moving
    it). That is the threshold that stops ping-pong: the reverse move can never
    pass the same test. dask's `stealing.py` uses the same shape (its LATENCY
    is 0.1 s of network cost).
    """

    #: Required gain as a share of the task's run time on the thief: 10% is
    #: above the typical error of a backlog estimate made of many tasks, so
    #: noise alone does not move tasks (and the reverse move always fails).
    margin_frac: float = 0.1
    #: The adaptive margin (per thief) starts at `margin_frac`, shrinks by 10%
    #: after a steal that paid off (down to margin_frac / 4) and grows by half
    #: after one that did not (up to this).
    margin_max: float = 1.0
    #: Fixed cost of one steal (transfer, bookkeeping), added to the thief's side.
    latency: float = 0.0
    #: Victims need at least this many queued (not running) tasks.
    min_victim_queue: int = 1
    #: Take up to half of the victim's queue, at most this many per steal.
    max_batch: int = 32
    #: How many of the most loaded victims a thief tries before giving up.
    victims: int = 8
    #: Back-off after a failed steal doubles from `backoff` to `max_backoff`
    #: (in time units; 1 is the mean task in the generated workloads, so an
    #: idle agent re-polls at least 4 times per mean task).
    backoff: float = 0.01
    max_backoff: float = 0.25
    #: A task is stolen at most this many times (bounded movement).
    max_steals_per_task: int = 3
    #: A home deque longer than this overflows to the global queue.
    deque_cap: int = 100_000
    #: ... and so does a task whose home agent is busy for longer than this
    #: (estimated remaining work / speed): idle agents take from the global
    #: queue before stealing, so a backlog does not wait for thieves. 4 mean
    #: task times was the best compromise on the skewed/bursty benchmark
    #: workloads (1-2 favour misses, 8+ favour locality); inf keeps every task
    #: at home until stolen.
    overflow_wait: float = 4.0


def _number(v: object, field: str, *, positive: bool = False, inf: bool = False) -> None:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and not math.isnan(v) and (
        inf or math.isfinite(v)) and (v > 0 if positive else v >= 0)
    if not ok:
        bound = "> 0" if positive else ">= 0"
        raise InvalidInputError(f"need a {'' if inf else 'finite '}number {bound}, got {v!r}",
                                field=field)


def _check_numbers(p: Policy) -> None:
    """Every number of a policy in its range (a typed error naming the first bad one).

    Checked here because every way to a policy (make_policy, replace, `--param`,
    the tuner) builds one: a steal back-off of 0 re-polled an idle thief at the
    same instant forever, a flow weight of 0 divided by zero.
    """
    st = p.steal
    for name in ("margin_frac", "margin_max", "latency"):
        _number(getattr(st, name), f"steal.{name}")
    _number(st.backoff, "steal.backoff", positive=True)
    _number(st.max_backoff, "steal.max_backoff", positive=True)
    _number(st.overflow_wait, "steal.overflow_wait", inf=True)
    for name in ("min_victim_queue", "max_batch", "victims", "max_steals_per_task",
                 "deque_cap"):
        v = getattr(st, name)
        if not (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
            raise InvalidInputError(f"need an integer >= 0, got {v!r}", field=f"steal.{name}")
    for k, w in p.flow_weights.items():
        _number(w, f"flow_weights.{k}", positive=True)
    for c, w in p.priority.weights.items():
        _number(w, f"priority.weights.{getattr(c, 'value', c)}", positive=True)
    for c, a in p.priority.aging.items():
        _number(a, f"priority.aging.{getattr(c, 'value', c)}", positive=True, inf=True)


@dataclass(slots=True)
class Policy:
    name: str
    placement: str = "global"
    discipline: str = "fifo"
    stealing: bool = False
    steal: StealConfig = field(default_factory=StealConfig)
    priority: PriorityConfig = field(default_factory=PriorityConfig)
    #: Flow (tenant or class) weights for wfq and cfs.
    flow_weights: dict[str, float] = field(default_factory=dict)
    #: Idle agents take work from the global pools. Off for batch-only runs:
    #: agents then run only what an installed plan gave them.
    pull: bool = True

    def __post_init__(self) -> None:
        if self.placement not in PLACEMENTS:
            raise InvalidInputError(f"unknown placement {self.placement!r}; known: "
                                    f"{', '.join(PLACEMENTS)}", field="placement")
        if self.discipline not in DISCIPLINES:
            raise InvalidInputError(f"unknown discipline {self.discipline!r}; known: "
                                    f"{', '.join(DISCIPLINES)}", field="discipline")
        _check_numbers(self)


    def fair_clock(self) -> FairClock:
        """The virtual time one executor's queues share (flow and class weights)."""
        return FairClock(self.flow_weights, self.priority)

    def new_queue(self, clock: FairClock | None = None) -> TaskQueue:
        """A fresh queue of this policy's discipline (one per agent and per global pool).

        Pass the executor's `fair_clock()` so that fairness holds across queues.
        """
        d = self.discipline
        if d == "fifo":
            return FifoQueue()
        if d == "edf":
            return EdfQueue()
        ck = clock or self.fair_clock()
        if d == "priority":
            return PriorityQueue(clock=ck)
        if d == "priority_wfq":
            return PriorityWfqQueue(clock=ck)
        if d == "wfq":
            return WfqQueue(ck)
        return CfsQueue(clock=ck)


_DESCRIPTIONS: dict[str, tuple[str, str, bool, str]] = {
    "fifo": ("global", "fifo", False, "one global queue in arrival order, any free agent"),
    "round-robin": ("round_robin", "fifo", False, "each arrival to the next eligible agent"),
    "random": ("random", "fifo", False, "each arrival to a random eligible agent (seeded)"),
    "jsq": ("jsq", "fifo", False, "join the shortest queue (queued + running tasks)"),
    "p2c": ("p2c", "fifo", False, "power of two choices: the shorter of two random agents"),
    "stealing": ("home", "fifo", True, "per-agent deques at the home agent, idle agents steal"),
    "edf": ("global", "edf", False, "global queue by earliest deadline"),
    "priority": ("global", "priority", False, "four classes, weighted shares, aging"),
    "wfq": ("global", "wfq", False, "weighted fair queuing across tenants (virtual finish)"),
    "cfs": ("global", "cfs", False, "fair scheduler on weighted virtual runtime per tenant"),
    "priority-wfq": ("global", "priority_wfq", False,
                     "four classes with shares and aging; tenants by WFQ inside a class"),
}
for _d in ("edf", "priority", "wfq", "cfs"):
    _DESCRIPTIONS[f"{_d}+stealing"] = ("home", _d, True,
                                       f"{_d} order in per-agent deques, idle agents steal")


def policy_names() -> list[str]:
    return list(_DESCRIPTIONS)


def describe_policies() -> dict[str, str]:
    return {k: v[3] for k, v in _DESCRIPTIONS.items()}


def make_policy(name: str | Policy, **overrides: object) -> Policy:
    """The policy called `name` (see `policy_names()`), with fields overridden."""
    if isinstance(name, Policy):
        return replace(name, **overrides) if overrides else name  # type: ignore[arg-type]
    spec = _DESCRIPTIONS.get(name)
    if spec is None:
        raise InvalidInputError(
            f"unknown policy {name!r}; known: {', '.join(_DESCRIPTIONS)}", field="policy")
    placement, discipline, stealing, _ = spec
    p = Policy(name=name, placement=placement, discipline=discipline, stealing=stealing)
    return replace(p, **overrides) if overrides else p  # type: ignore[arg-type]

