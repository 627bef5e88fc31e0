"""Hypothesis strategies for snapshots, shared by the solver and validator tests.

They generate small but awkward instances: several resources, skills nobody
has, allow/forbid lists, down and draining agents, releases, hard and soft
deadlines, current placements, per-agent overrides, and demand that cannot
fit, so infeasible parts are common.
"""

from __future__ import annotations

from hypothesis import strategies as st

from models import Agent, AgentOverride, Snapshot, SolveOptions, Task, Weights

RESOURCES = ["cpu", "mem", "slots"]
SKILLS = ["a", "b", "c", "z"]


@st.composite
def snapshots(draw: st.DrawFn, max_agents: int = 4, max_tasks: int = 9,
              timed: bool | None = None) -> Snapshot:
    m = draw(st.integers(1, max_agents))
    n = draw(st.integers(0, max_tasks))
    agents = []
    for i in range(m):
        agents.append(Agent(
            id=f"a{i}",
            capacity={r: float(draw(st.integers(0, 8))) for r in RESOURCES[: draw(
                st.integers(1, 3))]},
            speed=draw(st.sampled_from([0.5, 1.0, 2.0, 3.0])),
            concurrency=draw(st.integers(1, 2)),
            skills=draw(st.lists(st.sampled_from(SKILLS[:3]), unique=True, max_size=3)),
            cost_rate=float(draw(st.integers(0, 5))),
            status=draw(st.sampled_from(["up", "up", "up", "draining", "down"])),
        ))
    known = sorted({r for a in agents for r in a.capacity})
    use_time = draw(st.booleans()) if timed is None else timed
    tasks = []
    for j in range(n):
        release = float(draw(st.integers(0, 5))) if use_time else 0.0
        deadline = None
        hard = False
        if use_time and draw(st.booleans()):
            deadline = release + float(draw(st.integers(0, 12)))
            hard = draw(st.booleans())
        overrides = {}
        if draw(st.integers(0, 3)) == 0:
            a = draw(st.sampled_from(agents)).id
            overrides[a] = AgentOverride(
                cost=float(draw(st.integers(-3, 20))),
                demand={known[0]: float(draw(st.integers(0, 6)))},
            )
        allowed = None
        if draw(st.integers(0, 4)) == 0:
            allowed = draw(st.lists(st.sampled_from([a.id for a in agents]), unique=True,
                                    max_size=m))
        tasks.append(Task(
            id=f"t{j}",
            work=float(draw(st.integers(0, 6))),
            demand={r: float(draw(st.integers(0, 5))) for r in known if draw(st.booleans())},
            priority=draw(st.sampled_from(["critical", "high", "normal", "low"])),
            release=release,
            deadline=deadline,
            hard_deadline=hard,
            skills=draw(st.lists(st.sampled_from(SKILLS), unique=True, max_size=2)),
            allowed_agents=allowed,
            forbidden_agents=draw(st.lists(st.sampled_from([a.id for a in agents]),
                                           unique=True, max_size=1)),
            current_agent=draw(st.one_of(st.none(), st.sampled_from([a.id for a in agents]))),
            overrides=overrides,
        ))
    weights = Weights(
        cost=float(draw(st.integers(0, 2))),
        makespan=float(draw(st.integers(0, 2))),
        imbalance=float(draw(st.integers(0, 1))),
        tardiness=float(draw(st.integers(0, 2))),
        migrations=float(draw(st.integers(0, 1))),
    )
    return Snapshot(agents=agents, tasks=tasks, weights=weights,
                    options=SolveOptions(time_limit=2.0, workers=1))
