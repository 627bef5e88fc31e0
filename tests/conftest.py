from __future__ import annotations

from pathlib import Path

import pytest

from models import Agent, Snapshot, Task, Weights

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
EXAMPLES = DATA / "examples"


@pytest.fixture
def small_snapshot() -> Snapshot:
    """Three agents, six tasks, two resources, one skill; everything fits."""
    agents = [
        Agent(id="a", capacity={"cpu": 4, "mem": 8}, speed=1.0, skills=["py"], cost_rate=1.0),
        Agent(id="b", capacity={"cpu": 4, "mem": 8}, speed=2.0, skills=["py", "sql"],
              cost_rate=2.0),
        Agent(id="c", capacity={"cpu": 2, "mem": 4}, speed=1.0, skills=["sql"], cost_rate=0.5),
    ]
    tasks = [
        Task(id="t1", work=4, demand={"cpu": 1, "mem": 2}, skills=["py"]),
        Task(id="t2", work=2, demand={"cpu": 1, "mem": 2}, skills=["sql"]),
        Task(id="t3", work=6, demand={"cpu": 2, "mem": 2}),
        Task(id="t4", work=1, demand={"cpu": 1}, priority="critical", deadline=3),
        Task(id="t5", work=3, demand={"mem": 4}, release=1),
        Task(id="t6", work=2, demand={"cpu": 1}, current_agent="a"),
    ]
    return Snapshot(agents=agents, tasks=tasks, weights=Weights(cost=1, makespan=1))
