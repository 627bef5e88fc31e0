"""Generated workloads for the simulator (seeded, vectorised with numpy).

A :class:`Workload` is plain arrays plus the agents, so a trace reader can
build one too. Units: a task of `work` 1 takes 1 time unit on a speed-1
agent; `load` is offered work over total agent capacity (speed x concurrency).

- arrivals: `poisson`, `bursty` (a two-state Markov-modulated Poisson
  process: bursts at `burst_factor` times the quiet rate, `burst_share` of the
  time, `burst_len` long on average), or `waves` (the batch-job pattern: every
  `wave_every` time units a wave of tasks lands within `wave_spread`; a share
  `background_share` of the tasks arrive as a Poisson stream between waves,
  with their own deadline slack `background_slack`: urgent interactive work);
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
  while every task is still eligible everywhere (fairness across queues);
- heterogeneous fleets: `fleet` lists agent classes (:class:`AgentClass`:
  count, speed, cost rate, skills, capacity, concurrency), e.g. cheap slow
  CPU agents beside expensive fast ones and a GPU pool; tasks needing the
  `gpu` skill (`skill_share`) are homed on agents that have it;
- packed resources: `demand` lists `(resource, low, high)`: each task holds
  U(low, high) of the resource, rounded to whole units, while it runs, so an agent's capacity packs
  several tasks at once (its concurrency bounds how many).

`Workload.bursts` lists the (start, end) of the bursts of a bursty workload.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np

from allocator.errors import InvalidInputError
from allocator.limits import check_fits_memory
from allocator.online.events import RateLimit, TaskSpec, task_specs
from models import Agent, Priority

_PRIOS = (Priority.CRITICAL, Priority.HIGH, Priority.NORMAL, Priority.LOW)
_PRIO_LIST = list(_PRIOS)
ARRIVALS = ("poisson", "bursty", "waves")
SIZES = ("pareto", "exp", "fixed")
#: Tokens per unit of work, for workloads with rate-limited agents.
TOKENS_PER_WORK = 1000.0
#: Peak memory of a simulated task (measured: `allocator simulate --tasks 1000000 -p fifo`
#: peaks at 490 MB), for the guard against runs the machine cannot hold.
SIM_BYTES_PER_TASK = 450.0
#: The same for an agent (`--agents 100000 --tasks 100`: 531 MB).
SIM_BYTES_PER_AGENT = 5000.0
#: Agent failures one run may draw (agents x horizon / (mtbf + mttr)): each is a
#: Python tuple and two simulated events (mtbf = mttr = 1e-4 drew 2 GB in a minute).
MAX_FAILURES = 5_000_000


@dataclass(frozen=True, slots=True)
class AgentClass:
    """`count` agents alike: a pool of a heterogeneous fleet (see WorkloadConfig.fleet)."""

    count: int
    speed: float = 1.0
    cost_rate: float = 0.0
    skills: tuple[str, ...] = ()
    capacity: tuple[tuple[str, float], ...] = ()
    concurrency: int = 1
    name: str = "a"

    def __post_init__(self) -> None:
        ok = (isinstance(self.count, int) and 1 <= self.count <= 100_000
              and isinstance(self.concurrency, int) and 1 <= self.concurrency <= 100_000
              and all(math.isfinite(v) for v in (self.speed, self.cost_rate))
              and self.speed > 0 and self.cost_rate >= 0
              and all(math.isfinite(c) and c >= 0 for _, c in self.capacity))
        if not ok:
            raise InvalidInputError(f"need count >= 1, concurrency >= 1, speed > 0, cost_rate "
                                    f">= 0 and finite capacities >= 0, got {self!r}",
                                    field="fleet")


def _agent_class(x: AgentClass | dict[str, object]) -> AgentClass:
    if isinstance(x, AgentClass):
        return x
    try:
        d = dict(x)
        d["skills"] = tuple(d.get("skills", ()))  # type: ignore[arg-type]
        cap = d.get("capacity", ())
        d["capacity"] = tuple(sorted(cap.items())) if isinstance(cap, dict) else tuple(
            tuple(c) for c in cap)  # type: ignore[attr-defined]
        return AgentClass(**d)  # type: ignore[arg-type]
    except (TypeError, ValueError, AttributeError) as e:
        raise InvalidInputError(f"bad agent class {x!r}: {e}", field="fleet") from None


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
    #: waves: a wave every `wave_every` time units, its tasks within `wave_spread`.
    wave_every: float = 50.0
    wave_spread: float = 1.0
    #: waves: share of tasks arriving as a Poisson stream, and their deadline slack.
    background_share: float = 0.0
    background_slack: tuple[float, float] | None = None
    #: Agent classes (their counts must add up to `agents`); empty: alike agents.
    fleet: tuple[AgentClass, ...] = ()
    #: (resource, low, high): what each task holds while it runs.
    demand: tuple[tuple[str, float, float], ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        self.fleet = tuple(_agent_class(c) for c in self.fleet)
        if self.fleet and sum(c.count for c in self.fleet) != self.agents:
            raise InvalidInputError(f"the fleet's classes have {sum(c.count for c in self.fleet)}"
                                    f" agents but agents={self.agents}", field="fleet")
        try:
            self.demand = tuple((str(r), float(lo), float(hi)) for r, lo, hi in self.demand)
        except (TypeError, ValueError):
            raise InvalidInputError("need (resource, low, high) triples", field="demand") from None
        for r, lo, hi in self.demand:
            if not (r and math.isfinite(lo) and math.isfinite(hi) and 0 <= lo <= hi):
                raise InvalidInputError(f"need a name and 0 <= low <= high, got {(r, lo, hi)!r}",
                                        field="demand")
        if self.arrival not in ARRIVALS:
            raise InvalidInputError(f"unknown arrival process {self.arrival!r}; known: "
                                    f"{', '.join(ARRIVALS)}", field="arrival")
        if self.sizes not in SIZES:
            raise InvalidInputError(f"unknown size law {self.sizes!r}; known: "
                                    f"{', '.join(SIZES)}", field="sizes")
        if self.tasks < 1 or self.agents < 1:
            raise InvalidInputError("need at least one task and one agent", field="tasks")
        check_fits_memory(self.tasks, SIM_BYTES_PER_TASK, "tasks", "simulated tasks")
        check_fits_memory(self.agents, SIM_BYTES_PER_AGENT, "agents", "simulated agents")
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
        within("wave_every", 0.0, 1e12, open_lo=True)
        within("wave_spread", 0.0, 1e12)
        within("background_share", 0.0, 1.0)
        if self.mtbf is not None:
            within("mtbf", 0.0, 1e12, open_lo=True)
        if self.tokens_per_min is not None:
            within("tokens_per_min", 0.0, 1e15, open_lo=True)
        lo, hi = self.slack
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo <= hi <= 1e12):
            raise InvalidInputError(f"need 0 <= low <= high (finite), got {self.slack!r}",
                                    field="slack")
        if self.background_slack is not None:
            blo, bhi = self.background_slack
            if not (math.isfinite(blo) and math.isfinite(bhi) and 0 <= blo <= bhi <= 1e12):
                raise InvalidInputError(f"need 0 <= low <= high (finite), got "
                                        f"{self.background_slack!r}", field="background_slack")
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
    #: Resource names and each task's demand of them ([n, R]; None: no demands).
    resources: tuple[str, ...] = ()
    demand: np.ndarray | None = None
    #: Tenant names by code (None: `tenant{k}`); code -1 is a task without a tenant.
    tenant_names: list[str] | None = None
    #: The source's task ids (a trace's), for per-task records; the core sees `t{i}`.
    ids: list[str] | None = None

    @property
    def n(self) -> int:
        return len(self.arrival)

    def specs(self, chunk: int = 4096) -> Iterator[TaskSpec]:
        """Every task's spec in arrival order (faster than `spec(i)` in a loop)."""
        for specs in self.spec_chunks(chunk):
            yield from specs

    def spec_chunks(self, chunk: int = 4096) -> Iterator[list[TaskSpec]]:
        """Every task's spec in arrival order, `chunk` at a time (lists).

        Built from the columns by `events.task_specs` (with the compiled core, a
        compiled loop that sets the slots directly; from source it costs what
        mapping TaskSpec over per-field lists did).
        """
        ids = [a.id for a in self.agents]
        priority = self.priority.tolist()
        tokens = self.rate_limit is not None
        mc = self.migration_cost
        dem = self._demands()
        tenants = self.tenant.tolist()
        names = self._tenant_names(tenants)
        homes: list[str | None] = [*ids, None]  # home -1: no home
        work = self.work.tolist()
        deadline = self.deadline.tolist()
        hard = self.hard.tolist()
        home = self.home.tolist()
        skill = self.skill.tolist()
        groups = self.group.tolist() if self.group is not None else None
        no_skills = groups is None and not any(skill)
        cache: dict[tuple[bool, int], tuple[str, ...]] = {}

        def skills_of(sk: bool, g: int) -> tuple[str, ...]:
            sks = cache.get((sk, g))
            if sks is None:
                sks = cache[(sk, g)] = _skills(sk, g)
            return sks

        n = self.n
        for lo in range(0, n, chunk):
            hi = min(lo + chunk, n)
            k = hi - lo
            sks = None if no_skills else list(map(
                skills_of, skill[lo:hi], groups[lo:hi] if groups is not None else repeat(-1, k)))
            yield task_specs(lo, hi, work, priority, _PRIO_LIST, deadline, hard, tenants, names,
                             home, homes, sks, dem[lo:hi] if dem else None,
                             TOKENS_PER_WORK if tokens else 0.0, mc)

    def _tenant_names(self, codes: list[int]) -> list[str | None]:
        """Name by code, with None last (code -1: no tenant)."""
        names: list[str | None] = list(self.tenant_names or [
            f"tenant{k}" for k in range(max(codes, default=0) + 1)])
        return [*names, None]

    def _tenant_name(self, k: int) -> str | None:
        if k < 0:
            return None
        return self.tenant_names[k] if self.tenant_names else f"tenant{k}"

    def _demands(self) -> list[tuple[tuple[str, float], ...]] | None:
        if self.demand is None or not self.resources:
            return None
        names = self.resources
        return [tuple(zip(names, row, strict=True)) for row in self.demand.tolist()]

    def spec(self, i: int) -> TaskSpec:
        d = self.deadline[i]
        h = int(self.home[i])
        w = float(self.work[i])
        return TaskSpec(
            id=f"t{i}", work=w, priority=_PRIOS[self.priority[i]],
            deadline=None if d != d else float(d), hard_deadline=bool(self.hard[i]),
            tenant=self._tenant_name(int(self.tenant[i])),
            skills=_skills(bool(self.skill[i]),
                           int(self.group[i]) if self.group is not None else -1),
            home=self.agents[h].id if h >= 0 else None, migration_cost=self.migration_cost,
            tokens=w * TOKENS_PER_WORK if self.rate_limit is not None else 0.0,
            demand=(tuple(zip(self.resources, self.demand[i].tolist(), strict=True))
                    if self.demand is not None and self.resources else ()),
        )


#: TaskSpec fields the arrays cannot carry: `from_specs` refuses a spec that sets them.
_UNSUPPORTED = ("allowed", "forbidden", "timeout", "max_retries", "kind", "tokens")


def from_specs(arrivals: Sequence[tuple[float, TaskSpec]], agents: Sequence[Agent]) -> Workload:
    """A workload of these `(arrival, TaskSpec)` pairs (sorted by arrival) on these agents.

    The specs' ids go to `Workload.ids` and their tenants to `tenant_names`
    (coded in order of first appearance); skills must be none or one `s<g>`
    (a skill group). The agents run at their own speed and have no rate limits.
    """
    n = len(arrivals)
    index = {a.id: i for i, a in enumerate(agents)}
    codes: dict[str, int] = {}
    resources: list[str] = []
    for _, s in arrivals:
        for r, _v in s.demand:
            if r not in resources:
                resources.append(r)
    tenant = np.empty(n, dtype=np.int64)
    home = np.empty(n, dtype=np.int64)
    group = np.full(n, -1, dtype=np.int64)
    demand = np.zeros((n, len(resources))) if resources else None
    mc = {s.migration_cost for _, s in arrivals}
    if len(mc) > 1:
        raise InvalidInputError("tasks with different migration costs (a workload has one)",
                                field="migration_cost")
    for i, (_, s) in enumerate(arrivals):
        bad = [f for f in _UNSUPPORTED if getattr(s, f) not in (None, (), 0.0)]
        if bad or len(s.skills) > 1 or (s.skills and not _is_group(s.skills[0])):
            what = bad[0] if bad else "skills"
            raise InvalidInputError(f"task {s.id!r}: the simulator's workload cannot carry "
                                    f"its {what}", field=what)
        if s.skills:
            group[i] = int(s.skills[0][1:])
        tenant[i] = -1 if s.tenant is None else codes.setdefault(s.tenant, len(codes))
        if s.home is not None and s.home not in index:
            raise InvalidInputError(f"task {s.id!r}: unknown home agent {s.home!r}",
                                    field="home")
        home[i] = -1 if s.home is None else index[s.home]
        if demand is not None:
            for r, v in s.demand:
                demand[i, resources.index(r)] = v
    work = np.array([s.work for _, s in arrivals], dtype=float)
    return Workload(
        agents=list(agents), arrival=np.array([t for t, _ in arrivals], dtype=float),
        work=work, actual=work.copy(),
        priority=np.array([_PRIOS.index(s.priority) for _, s in arrivals], dtype=np.int64),
        deadline=np.array([np.nan if s.deadline is None else s.deadline for _, s in arrivals],
                          dtype=float),
        hard=np.array([s.hard_deadline for _, s in arrivals], dtype=bool),
        home=home, tenant=tenant, skill=np.zeros(n, dtype=bool),
        migration_cost=mc.pop() if mc else 0.0,
        true_speed={a.id: a.speed for a in agents},
        group=group if (group >= 0).any() else None,
        resources=tuple(resources), demand=demand,
        tenant_names=list(codes), ids=[s.id for _, s in arrivals],
    )


def _is_group(skill: str) -> bool:
    return skill[:1] == "s" and skill[1:].isdigit()


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


def _waves(cfg: WorkloadConfig, rng: np.random.Generator, n: int, rate: float
           ) -> tuple[np.ndarray, np.ndarray]:
    """Wave arrivals (+ a Poisson background): (sorted times, background mask)."""
    bg = rng.random(n) < cfg.background_share
    n_bg = int(bg.sum())
    n_w = n - n_bg
    out = np.empty(n)
    per_wave = max(1, round(rate * (1 - cfg.background_share) * cfg.wave_every))
    k = np.arange(n_w)
    out[~bg] = (k // per_wave) * cfg.wave_every + rng.uniform(0.0, cfg.wave_spread, n_w)
    if n_bg:
        out[bg] = np.cumsum(rng.exponential(1.0 / (rate * cfg.background_share), n_bg))
    order = np.argsort(out, kind="stable")
    return out[order], bg[order]


def _fleet(cfg: WorkloadConfig, rng: np.random.Generator) -> list[Agent]:
    m = cfg.agents
    groups = [f"s{g}" for g in range(cfg.skill_groups)]
    if cfg.fleet:
        agents = []
        for c in cfg.fleet:
            for k in range(c.count):
                agents.append(Agent(id=f"{c.name}{k}", speed=c.speed, cost_rate=c.cost_rate,
                                    concurrency=c.concurrency, capacity=dict(c.capacity),
                                    skills=sorted(set(c.skills) | set(groups))))
        return agents
    spread = cfg.speed_spread
    speeds = rng.uniform(1.0 / (1.0 + spread), 1.0 + spread, m) if spread > 0 else np.ones(m)
    has_gpu = np.zeros(m, dtype=bool)
    if cfg.skill_share > 0:
        has_gpu[: max(1, m // 2)] = True
    cap = {r: max(hi, 1.0) * cfg.concurrency for r, _, hi in cfg.demand}
    return [Agent(id=f"a{i}", speed=float(speeds[i]), concurrency=cfg.concurrency,
                  capacity=cap, skills=(["gpu"] if has_gpu[i] else []) + groups)
            for i in range(m)]


def generate(cfg: WorkloadConfig) -> Workload:
    """A seeded synthetic workload (same config, same arrays)."""
    rng = np.random.default_rng(cfg.seed)
    n, m = cfg.tasks, cfg.agents
    agents = _fleet(cfg, rng)
    speeds = np.array([a.speed for a in agents])
    conc = np.array([a.concurrency for a in agents], dtype=float)
    has_gpu = np.array(["gpu" in a.skills for a in agents], dtype=bool)
    work = _sizes(cfg, rng, n)
    capacity = float((speeds * conc).sum())
    rate = cfg.load * capacity / float(work.mean())
    bursts: list[tuple[float, float]] = []
    background = np.zeros(n, dtype=bool)
    if cfg.arrival == "waves":
        arrival, background = _waves(cfg, rng, n, rate)
    else:
        arrival = _arrivals(cfg, rng, n, rate, bursts)
    actual = work * (rng.lognormal(0.0, cfg.noise, n) if cfg.noise > 0 else 1.0)
    pr = np.asarray(cfg.priorities, dtype=float)
    priority = rng.choice(4, size=n, p=pr / pr.sum())
    lo, hi = cfg.slack
    has_deadline = rng.random(n) < cfg.deadline_share
    factor = rng.uniform(lo, hi, n)
    if cfg.background_slack is not None and background.any():
        blo, bhi = cfg.background_slack
        factor = np.where(background, rng.uniform(blo, bhi, n), factor)
    deadline = np.where(has_deadline, arrival + factor * np.maximum(work, 0.1), np.nan)
    hard = has_deadline & (rng.random(n) < cfg.hard_share)
    zipf = 1.0 / np.arange(1, m + 1) ** cfg.skew
    home = rng.choice(m, size=n, p=zipf / zipf.sum())
    skill = rng.random(n) < cfg.skill_share
    if skill.any() and not has_gpu.any():
        raise InvalidInputError("tasks need the gpu skill but no agent class has it",
                                field="skill_share")
    if skill.any():  # a gpu task's home is a gpu agent
        gpu_agents = np.flatnonzero(has_gpu)
        home[skill] = gpu_agents[home[skill] % len(gpu_agents)]
    tenant = rng.integers(0, max(cfg.tenants, 1), n)
    # Drawn from their own stream so the other arrays stay as before.
    group = (np.random.default_rng([cfg.seed, 7]).integers(0, cfg.skill_groups, n)
             if cfg.skill_groups else None)
    resources = tuple(r for r, _, _ in cfg.demand)
    demand = None
    if resources:  # own stream, so the other arrays stay as without demands
        drng = np.random.default_rng([cfg.seed, 11])
        # Whole units (cores, GB), as containers request them: few distinct
        # demands, so the core's global pools (one per signature) stay few.
        demand = np.column_stack([np.clip(np.round(drng.uniform(lo, hi, n)), lo, hi)
                                  for _, lo, hi in cfg.demand])
        for r, _, hi in cfg.demand:
            if hi > max(a.capacity.get(r, 0.0) for a in agents):
                raise InvalidInputError(f"no agent has {hi:g} of {r!r} (the largest demand)",
                                        field="demand")
    failures: list[tuple[float, str, float]] = []
    if cfg.mtbf:
        horizon = float(arrival[-1])
        expected = len(agents) * horizon / (cfg.mtbf + cfg.mttr)
        if expected > MAX_FAILURES:
            raise InvalidInputError(
                f"mtbf {cfg.mtbf:g} (and mttr {cfg.mttr:g}) over a {horizon:g}-long run of "
                f"{len(agents)} agents means about {expected:,.0f} agent failures; at most "
                f"{MAX_FAILURES:,}: raise mtbf", field="mtbf")
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
        resources=resources, demand=demand,
    )
