"""Independent feasibility check of a Plan against its Snapshot.

Deliberately written on the pydantic objects with plain Python, sharing no
code with problem.py or the solvers' model builders: a bug there must not be
able to hide itself here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from models import Agent, AgentStatus, Plan, Snapshot, Task

#: Tolerances: sums of float demands and float times are compared with slack.
REL_TOL = 1e-6
ABS_TOL = 1e-6


@dataclass(frozen=True)
class Violation:
    kind: str
    message: str
    task: str | None = None
    agent: str | None = None

    def __str__(self) -> str:
        return f"[{self.kind}] {self.message}"


def _close_le(a: float, b: float) -> bool:
    return a <= b + ABS_TOL + REL_TOL * abs(b)


class _TableTasks(Mapping[str, Task]):
    """Tasks by id of a snapshot given as a TaskTable: each lookup builds that Task alone.

    Validating a million-task table then holds one Task object at a time,
    not the ~1.4 GB of all of them.
    """

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self._row = {tid: j for j, tid in enumerate(snapshot.task_ids)}

    def __getitem__(self, tid: str) -> Task:
        return self._snapshot.task_at(self._row[tid])

    def __contains__(self, tid: object) -> bool:
        return tid in self._row

    def __iter__(self) -> Iterator[str]:
        return iter(self._row)

    def __len__(self) -> int:
        return len(self._row)


def validate(snapshot: Snapshot, plan: Plan) -> list[Violation]:
    """Every violated hard constraint; an empty list means the plan is feasible."""
    out: list[Violation] = []
    agents = {a.id: a for a in snapshot.agents}
    tasks: Mapping[str, Task] = (_TableTasks(snapshot) if snapshot.columnar
                                 else {t.id: t for t in snapshot.tasks})

    seen: dict[str, int] = defaultdict(int)
    for asg in plan.iter_assignments():
        seen[asg.task] += 1
    for u in plan.unassigned:
        if u.task in seen:
            out.append(Violation("assigned_and_unassigned", f"task {u.task!r} is both", u.task))
        if u.task not in tasks:
            out.append(Violation("unknown_task", f"unassigned task {u.task!r} not in snapshot"))
    for tid, count in seen.items():
        if count > 1:
            out.append(Violation("assigned_twice", f"task {tid!r} assigned {count} times", tid))
    listed = set(seen) | {u.task for u in plan.unassigned}
    for tid in tasks:
        if tid not in listed:
            out.append(
                Violation("missing_task", f"task {tid!r} neither assigned nor reported", tid)
            )

    skills_of: dict[str, frozenset[str]] = {}  # set lookups: linear in skills, not quadratic
    used: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    per_agent: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for asg in plan.iter_assignments():
        task = tasks.get(asg.task)
        agent = agents.get(asg.agent)
        if task is None:
            out.append(Violation("unknown_task", f"assigned task {asg.task!r} not in snapshot"))
            continue
        if agent is None:
            out.append(
                Violation("unknown_agent", f"task {asg.task!r} on unknown agent {asg.agent!r}",
                          asg.task, asg.agent)
            )
            continue
        t, a = asg.task, asg.agent
        if agent.status != AgentStatus.UP:
            out.append(Violation("agent_not_up", f"{t!r} on {a!r} which is {agent.status}", t, a))
        have = skills_of.get(a)
        if have is None:
            have = skills_of[a] = frozenset(agent.skills)
        missing = [s for s in task.skills if s not in have]
        if missing:
            out.append(Violation("skill", f"{t!r} needs {missing} which {a!r} lacks", t, a))
        if task.allowed_agents is not None and a not in task.allowed_agents:
            out.append(Violation("not_allowed", f"{t!r} is not allowed on {a!r}", t, a))
        if a in task.forbidden_agents:
            out.append(Violation("forbidden", f"{t!r} is forbidden on {a!r}", t, a))
        demand = dict(task.demand)
        override = task.overrides.get(a)
        if override is not None and override.demand is not None:
            demand.update(override.demand)
        for r, v in demand.items():
            used[a][r] += v
        # Schedule consistency.
        earliest = max(snapshot.time, task.release)
        if not _close_le(earliest, asg.start):
            out.append(
                Violation("starts_early", f"{t!r} starts at {asg.start} before {earliest}", t, a)
            )
        expected = task.work / agent.speed
        if abs((asg.end - asg.start) - expected) > ABS_TOL + REL_TOL * expected:
            out.append(
                Violation(
                    "wrong_duration",
                    f"{t!r} runs {asg.end - asg.start} on {a!r}, expected {expected}",
                    t, a,
                )
            )
        if task.hard_deadline and task.deadline is not None and not _close_le(asg.end,
                                                                             task.deadline):
            out.append(
                Violation("hard_deadline", f"{t!r} ends {asg.end} after deadline {task.deadline}",
                          t, a)
            )
        per_agent[a].append((asg.start, asg.end, t))

    for a, res in used.items():
        cap = agents[a].capacity
        for r, v in res.items():
            c = cap.get(r, 0.0)
            if not _close_le(v, c):
                out.append(Violation("capacity", f"{a!r} holds {v:g} {r} > capacity {c:g}",
                                     agent=a))

    # A migration: a placed task on another agent than its current one.
    max_moves = snapshot.options.max_migrations
    if max_moves is not None:
        moved = [asg.task for asg in plan.iter_assignments()
                 if asg.task in tasks and tasks[asg.task].current_agent is not None
                 and asg.agent != tasks[asg.task].current_agent]
        if len(moved) > max_moves:
            out.append(Violation("max_migrations",
                                 f"{len(moved)} tasks leave their current agent "
                                 f"(options.max_migrations = {max_moves}): {', '.join(moved[:5])}"
                                 + (" ..." if len(moved) > 5 else "")))

    out.extend(_topology(snapshot, plan, agents, tasks))

    for a, spans in per_agent.items():
        limit = agents[a].concurrency
        # Sweep: ends before starts at equal times, so back-to-back is not overlap.
        events = sorted(
            [(s, 1, t) for s, _, t in spans] + [(e - ABS_TOL, -1, t) for _, e, t in spans],
            key=lambda ev: (ev[0], ev[1]),
        )
        running = 0
        for time, delta, t in events:
            running += delta
            if running > limit:
                out.append(
                    Violation(
                        "overlap",
                        f"{a!r} runs {running} tasks at time {time:g} (concurrency {limit})",
                        t, a,
                    )
                )
                break
    return out


def _topology(snapshot: Snapshot, plan: Plan, agents: dict[str, Agent],
              tasks: Mapping[str, Task]) -> list[Violation]:
    """The hard topology rules (models.topology), read plainly from the objects."""
    out: list[Violation] = []
    topo = snapshot.topology
    if topo is None:
        return out
    groups = {g.id: g for g in topo.groups}
    where = {a.task: a.agent for a in plan.iter_assignments()
             if a.task in tasks and a.agent in agents}
    members: dict[str, list[str]] = defaultdict(list)
    for tid in where:
        g = tasks[tid].group
        if g is not None:
            members[g].append(tid)
    for gid, tids in members.items():
        group = groups[gid]
        if group.anti_affinity:
            on: dict[str, str] = {}
            for tid in tids:
                aid = where[tid]
                if aid in on:
                    out.append(Violation(
                        "anti_affinity", f"{tid!r} and {on[aid]!r} of group {gid!r} "
                        f"share agent {aid!r}", tid, aid))
                on.setdefault(aid, tid)
        if group.min_spread > 1:
            values = {agents[where[tid]].topology_value(group.spread_key) for tid in tids}
            values.discard(None)
            need = min(group.min_spread, len(tids))
            if len(values) < need:
                out.append(Violation(
                    "spread", f"group {gid!r} covers {len(values)} {group.spread_key} "
                    f"value(s), needs {need} (min_spread {group.min_spread})"))
        for dep in group.depends_on:
            key = group.dependency_key
            have = {agents[where[t]].topology_value(key) for t in members.get(dep, [])}
            for tid in tids:
                value = agents[where[tid]].topology_value(key)
                if value not in have:
                    out.append(Violation(
                        "dependency", f"{tid!r} of group {gid!r} is in {key} {value!r} "
                        f"where no task of group {dep!r} is placed", tid, where[tid]))
    if topo.transient:
        held: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for tid, aid in where.items():
            task = tasks[tid]
            homes = [aid]
            if task.current_agent is not None and task.current_agent != aid:
                homes.append(task.current_agent)
            for home in homes:
                demand = dict(task.demand)
                override = task.overrides.get(home)
                if override is not None and override.demand is not None:
                    demand.update(override.demand)
                for r in topo.transient:
                    held[home][r] += demand.get(r, 0.0)
        for aid, res in held.items():
            for r, v in res.items():
                c = agents[aid].capacity.get(r, 0.0)
                if not _close_le(v, c):
                    out.append(Violation(
                        "transient", f"{aid!r} holds {v:g} of transient {r} counting tasks "
                        f"that moved away > capacity {c:g}", agent=aid))
    return out
