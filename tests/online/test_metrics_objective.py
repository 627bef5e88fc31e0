"""The online objective (priced straight from the ledger) equals the Plan terms' pricing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from allocator.objectives import Schedule, term_cost, term_migrations, term_tardiness
from allocator.online.core import Executor
from allocator.online.metrics import online_objective
from allocator.online.simulator import Simulator
from allocator.online.workload import AgentClass, WorkloadConfig, generate
from allocator.problem import compile_snapshot
from models import Agent, Priority, Snapshot, Task, Weights


def _reference(ex: Executor, w: Weights) -> dict[str, float]:
    """The ledger compiled into a Snapshot and priced by allocator.objectives."""
    rows = ex.metrics.ledger.rows
    by_index = {a.index: a for a in ex.agents.values()}
    agents = [Agent(id=a.id, cost_rate=a.spec.cost_rate) for a in ex.agents.values()]
    classes = list(Priority)
    tasks = []
    for k, (_, start, end, done, rank, d, home, mc) in enumerate(rows):
        deadline = max(d, 0.0) if done and not math.isnan(d) else None
        current = by_index[home].id if done and home >= 0 else None
        tasks.append(Task(
            id=f"{k}", work=end - start, priority=classes[rank], deadline=deadline,
            current_agent=current, migration_cost=mc if current is not None else None))
    prob = compile_snapshot(Snapshot(time=0.0, agents=agents, tasks=tasks, weights=w))
    agent_of = np.array([prob.agent_index[by_index[r[0]].id] for r in rows], dtype=np.int64)
    start = np.array([r[1] for r in rows])
    end = np.array([r[2] for r in rows])
    sched = Schedule(agent_of, start, end)
    cost = term_cost(prob, agent_of)
    tard = term_tardiness(prob, sched)
    mig = term_migrations(prob, agent_of)
    return {"cost": cost, "tardiness": tard, "migration_cost": mig,
            "weighted_objective": w.cost * cost + w.tardiness * tard + w.migrations * mig}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_online_objective_equals_the_plan_terms(seed: int) -> None:
    fleet = [AgentClass(count=3, speed=1.0, cost_rate=1.0, name="slow"),
             AgentClass(count=2, speed=2.0, cost_rate=3.5, name="fast")]
    wl = generate(WorkloadConfig(tasks=400, agents=5, fleet=fleet, load=1.1, seed=seed,
                                 migration_cost=0.3, task_failure=0.1, mtbf=60.0, mttr=5.0))
    w = Weights(cost=0.7, tardiness=2.0, migrations=1.5)
    sim = Simulator(wl, "edf+stealing", seed=seed, weights=w)
    row = sim.run().row
    ex = sim.executor
    done = [r for r in ex.metrics.ledger.rows if r[3]]
    assert len(done) == row["completed"] and len(ex.metrics.ledger) > len(done)  # failed too
    fast = online_objective(ex)
    ref = _reference(ex, w)
    assert ref["tardiness"] > 0 and ref["migration_cost"] > 0 and ref["cost"] > 0
    for k, v in ref.items():
        assert fast[k] == pytest.approx(v, rel=1e-9, abs=1e-9), k
