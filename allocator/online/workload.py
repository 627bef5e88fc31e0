"""Generated workloads for the simulator (seeded, vectorised with numpy).

A :class:`Workload` is plain arrays plus the agents, so a trace reader can
build one too. Units: a task of `work` 1 takes 1 time unit on a speed-1
agent; `load` is offered work over total agent capacity (speed x concurrency).

- arrivals: `poisson`, or `bursty` (a two-state Markov-modulated Poisson
  process: bursts at `burst_factor` times the quiet rate, `burst_share` of the
  time, `burst_len` long on average);
- sizes: `pareto` (heavy tail, shape `pareto_alpha`, mean 1, capped at
  `max_size`), `exp` or `fixed`;
- skewed placement: each task's home agent is drawn from a Zipf law with
  exponent `skew` over the agents (0 is uniform);
- deadlines: arrival + U(slack) x work, on a share `deadline_share` of tasks,
  of which `hard_share` are hard;
- the actual work differs from the estimate by a lognormal factor (`noise`);
- agent failures: each agent fails after Exp(`mtbf`) and rejoins after Exp(`mttr`);
- flaky agents: the first `flaky` agents fail each attempt with probability
  `flaky_p` until time `flaky_until`, then are healthy (breaker recovery);
- skill groups: each task needs one of `skill_groups` skills (uniformly);
  every agent has all of them, so tasks are split into queues by signature
  while every task is still eligible everywhere (fairness across queues).

`Workload.bursts` lists the (start, end) of the bursts of a bursty workload.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from allocator.errors import InvalidInputError
from allocator.online.events import RateLimit, TaskSpec
from models import Agent, Priority

_PRIOS = (Priority.CRITICAL, Priority.HIGH, Priority.NORMAL, Priority.LOW)
ARRIVALS = ("poisson", "bursty")
SIZES = ("pareto", "exp", "fixed")
#: Tokens per unit of work, for workloads with rate-limited agents.
TOKENS_PER_WORK = 1000.0


@dataclass(slots=True)
class WorkloadConfig:
    tasks: int = 10_000
    agents: int = 8
    arrival: str = "poisson"
    load: float = 0.85
    burst_factor: float = 6.0
    burst_share: float = 0.2
    burst_len: float = 20.0
    sizes: str = "pareto"
    pareto_alpha: float = 1.5
    max_size: float = 100.0
    skew: float = 1.0
    speed_spread: float = 0.5
    concurrency: int = 1
    deadline_share: float = 1.0
    slack: tuple[float, float] = (2.0, 10.0)
    hard_share: float = 0.0
    priorities: tuple[float, float, float, float] = (0.05, 0.15, 0.5, 0.3)
    tenants: int = 4
    noise: float = 0.2
    migration_cost: float = 0.0
    skill_share: float = 0.0
    task_failure: float = 0.0
    mtbf: float | None = None
    mttr: float = 50.0
    tokens_per_min: float | None = None
    flaky: int = 0
    flaky_p: float = 0.0
    flaky_until: float = 0.0
    skill_groups: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.arrival not in ARRIVALS:
            raise InvalidInputError(f"unknown arrival process {self.arrival!r}; known: "
                                    f"{', '.join(ARRIVALS)}", field="arrival")
        if self.sizes not in SIZES:
            raise InvalidInputError(f"unknown size law {self.sizes!r}; known: "
                                    f"{', '.join(SIZES)}", field="sizes")
        if self.tasks < 1 or self.agents < 1:
            raise InvalidInputError("need at least one task and one agent", field="tasks")
        # Below 1e-6 the arrival rate underflows (1 / rate overflows to inf).
        if not 1e-6 <= self.load <= 1e6:
            raise InvalidInputError(f"must be in [1e-6, 1e6], got {self.load}", field="load")
        # Every other knob: a typed error naming it, never a numpy ValueError
        # from deep inside the generator (found by fuzzing the config).
        def within(name: str, lo: float, hi: float, *, open_lo: bool = False) -> None:
            v = getattr(self, name)
            ok = isinstance(v, int | float) and math.isfinite(v) and (
                lo < v if open_lo else lo <= v) and v <= hi
            if not ok:
                lo_s = f"({lo:g}" if open_lo else f"[{lo:g}"
                raise InvalidInputError(f"must be in {lo_s}, {hi:g}], got {v!r}", field=name)

        within("burst_factor", 1.0, 1e6)
        for share in ("burst_share", "deadline_share", "hard_share", "skill_share",
                      "task_failure"):
            within(share, 0.0, 1.0)
        within("burst_len", 0.0, 1e12, open_lo=True)
        within("flaky", 0, self.agents)
        within("flaky_p", 0.0, 1.0)
        within("flaky_until", 0.0, 1e12)
        within("skill_groups", 0, 10_000)
        within("pareto_alpha", 0.0, 1e6, open_lo=True)
        within("max_size", 0.0, 1e12, open_lo=True)
        within("skew", 0.0, 100.0)
        within("speed_spread", 0.0, 1e3)
        within("concurrency", 1, 100_000)
        within("tenants", 1, 1_000_000)
        within("noise", 0.0, 100.0)
        within("migration_cost", 0.0, 1e12)
        within("mttr", 0.0, 1e12)
        if self.mtbf is not None:
            within("mtbf", 0.0, 1e12, open_lo=True)
        if self.tokens_per_min is not None:
            within("tokens_per_min", 0.0, 1e15, open_lo=True)
        lo, hi = self.slack
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo <= hi <= 1e12):
            raise InvalidInputError(f"need 0 <= low <= high (finite), got {self.slack!r}",
                                    field="slack")
        pr = self.priorities
        if len(pr) != 4 or not all(math.isfinite(x) and x >= 0 for x in pr) or sum(pr) <= 0:
            raise InvalidInputError("need four finite shares >= 0 (critical, high, normal, "
                                    f"low) with a positive sum, got {pr!r}", field="priorities")


@dataclass(slots=True)
class Workload:
    agents: list[Agent]
    arrival: np.ndarray
    work: np.ndarray
    actual: np.ndarray
    priority: np.ndarray
    deadline: np.ndarray  # nan: none
    hard: np.ndarray
    home: np.ndarray  # -1: none
    tenant: np.ndarray
    skill: np.ndarray
    failures: list[tuple[float, str, float]] = field(default_factory=list)
    task_failure: float = 0.0
    migration_cost: float = 0.0
    rate_limit: RateLimit | None = None
    true_speed: dict[str, float] = field(default_factory=dict)
    #: Agent id -> (attempt failure probability, until time).
    flaky: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: Skill group per task (-1: none).
    group: np.ndarray | None = None
    #: (start, end) of each burst (bursty arrivals).
    bursts: list[tuple[float, float]] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.arrival)

    def specs(self) -> Iterator[TaskSpec]:
        """Every task's spec in arrival order (faster than `spec(i)` in a loop)."""
        ids = [a.id for a in self.agents]
        prios = [_PRIOS[p] for p in self.priority.tolist()]
        tokens = self.rate_limit is not None
        mc = self.migration_cost
        groups = self.group.tolist() if self.group is not None else [-1] * self.n
        for i, (w, d, hard, h, ten, sk) in enumerate(zip(
                self.work.tolist(), self.deadline.tolist(), self.hard.tolist(),
                self.home.tolist(), self.tenant.tolist(), self.skill.tolist(), strict=True)):
            yield TaskSpec(
                id=f"t{i}", work=w, priority=prios[i], deadline=None if d != d else d,
                hard_deadline=hard, tenant=f"tenant{ten}", skills=_skills(sk, groups[i]),
                home=ids[h] if h >= 0 else None, migration_cost=mc,
                tokens=w * TOKENS_PER_WORK if tokens else 0.0)

    def spec(self, i: int) -> TaskSpec:
        d = self.deadline[i]
        h = int(self.home[i])
        w = float(self.work[i])
        return TaskSpec(
            id=f"t{i}", work=w, priority=_PRIOS[self.priority[i]],
            deadline=None if d != d else float(d), hard_deadline=bool(self.hard[i]),
            tenant=f"tenant{self.tenant[i]}",
            skills=_skills(bool(self.skill[i]),
                           int(self.group[i]) if self.group is not None else -1),
            home=self.agents[h].id if h >= 0 else None, migration_cost=self.migration_cost,
            tokens=w * TOKENS_PER_WORK if self.rate_limit is not None else 0.0,
        )


def _skills(gpu: bool, group: int) -> tuple[str, ...]:
    g = (f"s{group}",) if group >= 0 else ()
    return ("gpu", *g) if gpu else g


def _sizes(cfg: WorkloadConfig, rng: np.random.Generator, n: int) -> np.ndarray:
    if cfg.sizes == "fixed":
        return np.ones(n)
    if cfg.sizes == "exp":
        return rng.exponential(1.0, n)
    a = cfg.pareto_alpha
    x = (rng.pareto(a, n) + 1.0) * ((a - 1) / a if a > 1 else 0.5)
    x = np.minimum(x, cfg.max_size)
    return x / x.mean()


def _arrivals(cfg: WorkloadConfig, rng: np.random.Generator, n: int, rate: float,
              bursts: list[tuple[float, float]] | None = None) -> np.ndarray:
    if cfg.arrival == "poisson":
        return np.cumsum(rng.exponential(1.0 / rate, n))
    # MMPP(2): the average rate stays `rate`.
    s, f = cfg.burst_share, cfg.burst_factor
    quiet = rate / (s * f + (1 - s))
    burst = quiet * f
    mean_on = cfg.burst_len
    mean_off = mean_on * (1 - s) / max(s, 1e-9)
    out = np.empty(n)
    t = 0.0
    i = 0
    on = False
    while i < n:
        span = rng.exponential(mean_on if on else mean_off)
        r = burst if on else quiet
        k = max(1, int(span * r * 2) + 8)
        gaps = np.cumsum(rng.exponential(1.0 / r, k))
        gaps = gaps[gaps < span]
        take = min(len(gaps), n - i)
        out[i:i + take] = t + gaps[:take]
        i += take
        if on and bursts is not None:
            bursts.append((t, t + span))
        t += span
        on = not on
    return out


def generate(cfg: WorkloadConfig) -> Workload:
    """A seeded synthetic workload (same config, same arrays)."""
    rng = np.random.default_rng(cfg.seed)
    n, m = cfg.tasks, cfg.agents
    spread = cfg.speed_spread
    speeds = rng.uniform(1.0 / (1.0 + spread), 1.0 + spread, m) if spread > 0 else np.ones(m)
    has_gpu = np.zeros(m, dtype=bool)
    if cfg.skill_share > 0:
        has_gpu[: max(1, m // 2)] = True
    groups = [f"s{g}" for g in range(cfg.skill_groups)]
    agents = [Agent(id=f"a{i}", speed=float(speeds[i]), concurrency=cfg.concurrency,
                    skills=(["gpu"] if has_gpu[i] else []) + groups) for i in range(m)]
    work = _sizes(cfg, rng, n)
    capacity = float(speeds.sum()) * cfg.concurrency
    rate = cfg.load * capacity / float(work.mean())
    bursts: list[tuple[float, float]] = []
    arrival = _arrivals(cfg, rng, n, rate, bursts)
    actual = work * (rng.lognormal(0.0, cfg.noise, n) if cfg.noise > 0 else 1.0)
    pr = np.asarray(cfg.priorities, dtype=float)
    priority = rng.choice(4, size=n, p=pr / pr.sum())
    lo, hi = cfg.slack
    has_deadline = rng.random(n) < cfg.deadline_share
    deadline = np.where(has_deadline, arrival + rng.uniform(lo, hi, n) * np.maximum(work, 0.1),
                        np.nan)
    hard = has_deadline & (rng.random(n) < cfg.hard_share)
    zipf = 1.0 / np.arange(1, m + 1) ** cfg.skew
    home = rng.choice(m, size=n, p=zipf / zipf.sum())
    skill = rng.random(n) < cfg.skill_share
    if skill.any():  # a gpu task's home is a gpu agent
        gpu_agents = np.flatnonzero(has_gpu)
        home[skill] = gpu_agents[home[skill] % len(gpu_agents)]
    tenant = rng.integers(0, max(cfg.tenants, 1), n)
    # Drawn from their own stream so the other arrays stay as before.
    group = (np.random.default_rng([cfg.seed, 7]).integers(0, cfg.skill_groups, n)
             if cfg.skill_groups else None)
    failures: list[tuple[float, str, float]] = []
    if cfg.mtbf:
        horizon = float(arrival[-1])
        for a in agents:
            t = float(rng.exponential(cfg.mtbf))
            while t < horizon:
                down = float(rng.exponential(cfg.mttr))
                failures.append((t, a.id, down))
                t += down + float(rng.exponential(cfg.mtbf))
        failures.sort()
    return Workload(
        agents=agents, arrival=arrival, work=work, actual=actual, priority=priority,
        deadline=deadline, hard=hard, home=home, tenant=tenant, skill=skill,
        failures=failures, task_failure=cfg.task_failure, migration_cost=cfg.migration_cost,
        rate_limit=RateLimit(tokens_per_min=cfg.tokens_per_min) if cfg.tokens_per_min else None,
        true_speed={a.id: a.speed for a in agents},
        flaky={agents[k].id: (cfg.flaky_p, cfg.flaky_until) for k in range(cfg.flaky)},
        group=group, bursts=[b for b in bursts if b[0] < float(arrival[-1])],
    )
