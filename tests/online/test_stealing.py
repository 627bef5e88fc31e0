"""Work stealing: victims, threshold, steal-half, skills, back-off (dask test_steal style).

Each case builds the victim's queue first and then lets the thief join, so the
thief's first look at the system is the situation under test.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from allocator.online import (
    AgentFailed,
    AgentJoined,
    Executor,
    StealConfig,
    TaskCompleted,
    Tick,
    make_policy,
)
from allocator.online.events import Dispatch, Steal
from models import Agent

from .helpers import submit


def cfg(**kw: Any) -> StealConfig:
    """Stealing alone: no overflow to the global queue unless a case asks for it."""
    return StealConfig(**{"overflow_wait": math.inf, **kw})


def _steals(out: list[Any]) -> list[tuple[str, str, str]]:
    return [(i.task_id, i.victim, i.thief) for i in out if isinstance(i, Steal)]


@pytest.mark.parametrize(
    ("thief", "tasks", "config", "expected"),
    [
        pytest.param(Agent(id="b"), ["t1", "t2", "t3", "t4", "t5"], cfg(),
                     [("t5", "a", "b"), ("t4", "a", "b")],
                     id="an idle thief takes half of the victim's queue from the back"),
        pytest.param(Agent(id="b"), ["t1", "t2"], cfg(), [("t2", "a", "b")],
                     id="a single queued task moves when the thief is clearly sooner"),
        pytest.param(Agent(id="b", speed=0.2), ["t1", "t2"], cfg(), [],
                     id="does not steal when the slow thief would finish later"),
        pytest.param(Agent(id="b", speed=0.55), ["t1", "t2"], cfg(), [],
                     id="no steal inside the margin (no thrashing)"),
        pytest.param(Agent(id="b"), ["t1", "t2"], cfg(latency=1.0), [],
                     id="the move's latency counts against the thief"),
        pytest.param(Agent(id="b"), ["t1", "t2", "t3", "t4", "t5"], cfg(max_batch=1),
                     [("t5", "a", "b")], id="batch size is capped"),
        pytest.param(Agent(id="b"), ["t1", "g2", "g3"], cfg(), [],
                     id="skills are respected: the thief lacks gpu"),
        pytest.param(Agent(id="b", skills=["gpu"]), ["t1", "g2", "g3"], cfg(),
                     [("g3", "a", "b")], id="a thief with the skill may take it"),
    ],
)
def test_steal_table(thief: Agent, tasks: list[str], config: StealConfig,
                     expected: list[tuple[str, str, str]]) -> None:
    ex = Executor(make_policy("stealing", steal=config),
                  agents=[Agent(id="a", skills=["gpu"])])
    ex.handle(*[submit(t, home="a", skills=("gpu",) if t.startswith("g") else ())
                for t in tasks])
    assert _steals(ex.handle(AgentJoined(agent=thief))) == expected


def test_victim_is_the_most_loaded_agent() -> None:
    ex = Executor(make_policy("stealing", steal=cfg()), agents=[Agent(id="a"), Agent(id="b")])
    ex.handle(submit("a1", home="a"), submit("a2", home="a"), submit("b1", home="b", work=5),
              submit("b2", home="b", work=5), submit("b3", home="b", work=5))
    out = ex.handle(AgentJoined(agent=Agent(id="c")))
    assert {v for _, v, _ in _steals(out)} == {"b"}


def test_home_placement_keeps_locality_and_moving_costs() -> None:
    """With a migration cost, only work worth the move leaves home."""
    ex = Executor(make_policy("stealing", steal=cfg()), agents=[Agent(id="a")])
    ex.handle(*[submit(f"t{i}", home="a", migration_cost=2.5) for i in range(4)])
    out = ex.handle(AgentJoined(agent=Agent(id="b")))
    # a: 1 running + 3 queued = 4; b would need 1 + 2.5 (x1.1 on the run) -> only the last
    assert _steals(out) == [("t3", "a", "b")]


def test_failed_steals_back_off_exponentially() -> None:
    pol = make_policy("stealing", steal=cfg(backoff=0.5, max_backoff=2.0))
    ex = Executor(pol, agents=[Agent(id="a")])
    ex.handle(submit("t1", home="a"), submit("t2", home="a"))
    ex.handle(AgentJoined(agent=Agent(id="b", speed=0.1)))
    b = ex.agents["b"]
    assert b.steal_fails == 1 and b.backoff_until == pytest.approx(0.5)
    ex.handle(Tick(time=0.5))
    assert b.steal_fails == 2 and b.backoff_until == pytest.approx(1.5)
    ex.handle(Tick(time=1.5), Tick(time=3.5))
    assert b.backoff_until - ex.now == pytest.approx(2.0)  # capped at max_backoff


def test_global_queue_is_the_fallback_when_home_is_down() -> None:
    ex = Executor("stealing", agents=[Agent(id="a"), Agent(id="b")])
    ex.handle(AgentFailed(agent_id="a"))
    out = ex.handle(submit("t1", home="a"), submit("t2", home="a"))
    assert [(i.task_id, i.agent) for i in out if isinstance(i, Dispatch)] == [("t1", "b")]
    out = ex.handle(TaskCompleted(task_id="t1", agent="b", attempt=1, time=1))
    assert [(i.task_id, i.agent) for i in out if isinstance(i, Dispatch)] == [("t2", "b")]


def test_overflow_to_the_global_queue_when_home_is_backed_up() -> None:
    ex = Executor(make_policy("stealing", steal=cfg(overflow_wait=2.0)), agents=[Agent(id="a")])
    ex.handle(*[submit(f"t{i}", home="a") for i in range(5)])
    a = ex.agents["a"]
    assert len(a.queue) == 2  # t1, t2 at home (load <= 2); t3, t4 overflowed
    out = ex.handle(AgentJoined(agent=Agent(id="b")))
    # Stealing comes first (b takes t2 from a's back end: it finishes it sooner);
    # the global queue is the fallback once a steal is not worth it.
    assert _steals(out) == [("t2", "a", "b")]
    assert [(i.task_id, i.agent) for i in out if isinstance(i, Dispatch)] == [("t2", "b")]
    out = ex.handle(TaskCompleted(task_id="t2", agent="b", attempt=1, time=1.0))
    assert _steals(out) == []  # a's queue holds only t1, due next: not worth moving
    assert [(i.task_id, i.agent) for i in out if isinstance(i, Dispatch)] == [("t3", "b")]


def test_no_ping_pong() -> None:
    ex = Executor(make_policy("stealing", steal=cfg()), agents=[Agent(id="a")])
    ex.handle(*[submit(f"t{i}", home="a") for i in range(8)])
    ex.handle(AgentJoined(agent=Agent(id="b")))
    moves: list[tuple[str, str, str]] = []
    now = 0.0
    for _ in range(8):
        now += 1.0
        evs = [TaskCompleted(task_id=t.id, agent=a.id, attempt=t.attempt, time=now)
               for a in ex.agents.values() for t in a.running.values()]
        moves += _steals(ex.handle(*evs))
    counts: dict[str, int] = {}
    for tid, _, _ in moves:
        counts[tid] = counts.get(tid, 0) + 1
    assert all(c == 1 for c in counts.values())
    assert ex.live() == 0


def test_steal_interval_doubles_on_failure_and_resets_on_success() -> None:
    """The adaptive rule on the injected clock: back off while nothing is worth taking."""
    ex = Executor(make_policy("stealing", steal=cfg(backoff=0.1, max_backoff=0.4)),
                  agents=[Agent(id="a"), Agent(id="b", speed=0.1)])
    b = ex.agents["b"]
    # b is 10x slower: taking t1 (due at 1 on a) would finish it at 11: not worth it.
    ex.handle(submit("t0", home="a"), submit("t1", home="a"))
    chosen = [b.steal_interval]
    for now in (0.15, 0.35, 0.8):  # each just after the previous back-off ends
        ex.handle(Tick(time=now))
        chosen.append(b.steal_interval)
    assert ex.metrics.steals == 0
    assert chosen == [0.2, 0.4, 0.4, 0.4]  # doubling, capped at max_backoff
    assert ex.metrics.steal_interval_sum == pytest.approx(0.1 + 0.2 + 0.4 + 0.4)
    # A long backlog at a makes a steal worth it at b's next poll (t=1.2): reset.
    ex.handle(*[submit(f"x{k}", home="a", time=0.85) for k in range(20)])
    assert ex.metrics.steals == 0  # b is still backing off
    out = ex.handle(Tick(time=1.25))
    assert _steals(out) and b.steal_interval == 0.1


def test_plan_steal_is_pure_and_respects_the_margin() -> None:
    from allocator.online.state import eligible
    from allocator.online.stealing import plan_steal, victims_of

    ex = Executor(make_policy("stealing", steal=cfg(overflow_wait=math.inf)),
                  agents=[Agent(id="a")])
    ex.handle(*[submit(f"t{i}", home="a") for i in range(6)])
    ex.handle(AgentJoined(agent=Agent(id="b", status="down")))
    a, b = ex.agents["a"], ex.agents["b"]
    before = [t.id for t in a.queue]
    moves = plan_steal(b, victims_of(b, [a], 1), ex.policy.steal, 0.0, 0.1, eligible)
    assert [t.id for t in a.queue] == before  # nothing moved by planning
    assert [t.id for t, _, _ in moves] == ["t5", "t4"]  # half of 5 queued, from the back
    assert not plan_steal(b, victims_of(b, [a], 1), ex.policy.steal, 0.0, 10.0, eligible)
    # The core's screened call (thief's load given, victims already over the floor)
    # plans the same moves.
    assert plan_steal(b, victims_of(b, [a], 1), ex.policy.steal, 0.0, 0.1, eligible,
                      thief_fin=b.load(0.0), screened=True) == moves
