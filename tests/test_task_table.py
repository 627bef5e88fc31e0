"""Snapshots given as a TaskTable (columns) against the same tasks as Task objects.

Both must compile to the same Problem, give the same plan, and refuse the
same bad input with an error naming the field and the row.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from allocator.engine import solve
from allocator.problem import compile_snapshot
from allocator.validate import validate
from models import (
    Agent,
    AssignmentTable,
    Group,
    Plan,
    Priority,
    Snapshot,
    Task,
    TaskTable,
    Topology,
    Weights,
)
from models.columns import Coded

PROBLEM_ARRAYS = ("work", "release", "deadline", "hard_deadline", "priority_rank",
                  "unassigned_penalty", "tardiness_weight", "current", "migration_cost",
                  "demand_base", "capacity", "speed", "up")


def _agents(m: int) -> list[Agent]:
    return [Agent(id=f"a{i}", speed=1.0 + 0.25 * (i % 3), concurrency=1 + i % 2,
                  skills=["x", "y"][: i % 3], capacity={"cpu": 4.0 + i, "mem": 8.0},
                  labels={"zone": f"z{i % 2}"})
            for i in range(m)]


def _table(seed: int, n: int, m: int) -> TaskTable:
    """A table using every column, with None / empty entries mixed in."""
    rng = np.random.default_rng(seed)
    release = np.round(rng.uniform(0, 5, n), 2)
    has_deadline = rng.random(n) < 0.5
    deadline = [float(r + d) if h else None
                for r, d, h in zip(release, np.round(rng.uniform(1, 20, n), 2), has_deadline,
                                   strict=True)]
    agent_ids = [f"a{i}" for i in range(m)]
    skills_pool: list[list[str]] = [[], ["x"], ["y"], ["y", "x"]]
    return TaskTable(
        id=[f"t{j}" for j in range(n)],
        work=np.round(rng.lognormal(0, 0.7, n), 3),
        demand={"cpu": np.round(rng.uniform(0, 2, n), 2), "mem": rng.uniform(0, 1, n).tolist()},
        priority=[list(Priority)[k] for k in rng.integers(0, 4, n)],
        release=release,
        deadline=deadline,
        hard_deadline=[bool(h and rng.random() < 0.3) for h in has_deadline],
        skills=[skills_pool[k] for k in rng.integers(0, 4, n)],
        allowed_agents=[None if rng.random() < 0.7 else sorted(
            {agent_ids[k] for k in rng.integers(0, m, 2)}) for _ in range(n)],
        forbidden_agents=[[] if rng.random() < 0.8 else [agent_ids[int(rng.integers(m))]]
                          for _ in range(n)],
        current_agent=[None if rng.random() < 0.5 else agent_ids[int(rng.integers(m))]
                       for _ in range(n)],
        progress=np.round(rng.uniform(0, 1, n), 2),
        migration_cost=[None if rng.random() < 0.5 else float(k) for k in rng.integers(0, 9, n)],
        tenant=[None if rng.random() < 0.5 else "acme" for _ in range(n)],
        group=[None if rng.random() < 0.5 else f"g{int(rng.integers(2))}" for _ in range(n)],
    )


def _pair(seed: int, n: int = 40, m: int = 5, **extra: object) -> tuple[Snapshot, Snapshot]:
    """(columnar snapshot, the same snapshot with Task objects)."""
    table = _table(seed, n, m)
    common = dict(agents=_agents(m), weights=Weights(cost=1.0, makespan=1.0, tardiness=1.0),
                  topology=Topology(groups=[Group(id="g0"), Group(id="g1")]), **extra)
    columnar = Snapshot(task_table=table, **common)  # type: ignore[arg-type]
    objects = Snapshot(tasks=list(table.rows()), **common)  # type: ignore[arg-type]
    return columnar, objects


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 60), m=st.integers(1, 6))
def test_columnar_and_object_snapshots_compile_to_the_same_problem(seed: int, n: int,
                                                                   m: int) -> None:
    table = _table(seed, n, m)
    agents = _agents(m)
    topo = Topology(groups=[Group(id="g0"), Group(id="g1")])
    a = compile_snapshot(Snapshot(agents=agents, task_table=table, topology=topo, time=1.0))
    b = compile_snapshot(Snapshot(agents=agents, tasks=list(table.rows()), topology=topo,
                                  time=1.0))
    assert a.snapshot.columnar and not b.snapshot.columnar
    assert a.task_ids == b.task_ids and a.resources == b.resources
    for name in PROBLEM_ARRAYS:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    ra, rb = a.rule_groups, b.rule_groups
    for name in ("group_of", "group_agents", "skill_set_of", "skill_masks"):
        assert np.array_equal(getattr(ra, name), getattr(rb, name)), name
    assert (ra.allowed, ra.forbidden) == (rb.allowed, rb.forbidden)
    assert a.topology is not None and b.topology is not None
    assert np.array_equal(a.topology.group_of, b.topology.group_of)
    assert a.snapshot._rows is None  # compiling built no Task object


@pytest.mark.parametrize("solver", ["greedy", "balance"])
def test_columnar_and_object_snapshots_give_the_same_plan(solver: str) -> None:
    columnar, objects = _pair(7, n=60, m=6)
    p1 = solve(columnar, solver=solver, time_limit=2, seed=1, deterministic=True)
    p2 = solve(objects, solver=solver, time_limit=2, seed=1, deterministic=True)
    assert p1.model_dump(exclude={"wall_time_s", "solutions"}) == p2.model_dump(
        exclude={"wall_time_s", "solutions"})
    assert validate(columnar, p1) == [] and validate(objects, p2) == []
    assert columnar._rows is None  # solving and validating built no full task list


def test_rows_read_back_as_the_tasks_put_in() -> None:
    tasks = [Task(id="a", work=2, demand={"cpu": 1}, skills=["y", "x"], deadline=4,
                  hard_deadline=True, priority="high", allowed_agents=["a0"]),
             Task(id="b", current_agent="a1", migration_cost=3, tenant="t")]
    table = TaskTable(
        id=["a", "b"], work=[2, 1], demand={"cpu": [1, 0]}, skills=[["y", "x"], None],
        deadline=[4, None], hard_deadline=[True, False], priority=["high", "normal"],
        allowed_agents=[["a0"], None], current_agent=[None, "a1"], migration_cost=[None, 3],
        tenant=[None, "t"])
    got = list(table.rows())
    assert got[0] == tasks[0]
    assert got[1] == tasks[1].model_copy(update={"demand": {"cpu": 0.0}})


def test_the_tasks_of_a_table_are_built_once_and_only_when_read() -> None:
    columnar, objects = _pair(3)
    assert columnar.columnar and columnar.n_tasks == 40 and columnar._rows is None
    assert columnar.task_ids == [t.id for t in objects.tasks]
    assert columnar.task_at(5) == objects.tasks[5] and columnar._rows is None
    assert list(columnar.iter_tasks()) == objects.tasks and columnar._rows is None
    untouched = columnar.model_copy()
    assert columnar.tasks == objects.tasks
    assert columnar.tasks is columnar.tasks  # built once
    assert untouched == columnar and untouched._rows is None  # equal fields, equal snapshots


def test_json_round_trips_as_columns() -> None:
    columnar, _ = _pair(5)
    again = Snapshot.model_validate_json(columnar.model_dump_json())
    assert again.columnar and again.task_table == columnar.task_table
    assert again.model_dump()["tasks"] == []


def test_assigning_or_copying_in_a_task_list_replaces_the_table() -> None:
    columnar, objects = _pair(9, n=5)
    copied = columnar.model_copy(update={"tasks": objects.tasks[:2]})
    assert not copied.columnar and copied.n_tasks == 2 and len(compile_snapshot(copied).work) == 2
    columnar.tasks = objects.tasks[:3]
    assert not columnar.columnar and columnar.task_table is None and columnar.n_tasks == 3


def test_tasks_and_task_table_together_are_refused() -> None:
    columnar, objects = _pair(1, n=3)
    with pytest.raises(ValidationError, match="tasks and task_table are both given"):
        Snapshot(agents=objects.agents, tasks=objects.tasks, task_table=columnar.task_table)


def _both_refuse(task_fields: dict, column_fields: dict) -> tuple[str, str]:
    with pytest.raises(ValidationError) as as_objects:
        Snapshot(agents=_agents(2), tasks=[Task(id="t0"), Task(**task_fields)])
    with pytest.raises(ValidationError) as as_columns:
        Snapshot(agents=_agents(2), task_table=TaskTable(**column_fields))
    return str(as_objects.value), str(as_columns.value)


NAN = float("nan")


@pytest.mark.parametrize(("task", "columns", "says"), [
    pytest.param({"id": "t1", "work": NAN}, {"id": ["t0", "t1"], "work": [1.0, NAN]},
                 ["work", "1", "finite"], id="NaN work"),
    pytest.param({"id": "t1", "work": -2}, {"id": ["t0", "t1"], "work": np.array([1.0, -2.0])},
                 ["work", "1", "greater than or equal to 0"], id="negative work"),
    pytest.param({"id": "t1", "demand": {"cpu": -1}},
                 {"id": ["t0", "t1"], "demand": {"cpu": [0, -1]}},
                 ["demand", "'cpu'", "-1"], id="negative demand"),
    pytest.param({"id": "t1", "demand": {"cpu": float("inf")}},
                 {"id": ["t0", "t1"], "demand": {"cpu": [0, float("inf")]}},
                 ["demand", "'cpu'", "finite"], id="infinite demand"),
    pytest.param({"id": "t0"}, {"id": ["t0", "t0"]}, ["id", "1", "duplicate task id 't0'"],
                 id="duplicate id"),
    pytest.param({"id": "t1", "release": 5, "deadline": 2},
                 {"id": ["t0", "t1"], "release": [0, 5], "deadline": [None, 2]},
                 ["deadline", "before release", "'t1'"], id="deadline before release"),
    pytest.param({"id": "t1", "hard_deadline": True},
                 {"id": ["t0", "t1"], "hard_deadline": [False, True]},
                 ["hard_deadline", "no deadline", "'t1'"], id="hard deadline without deadline"),
    pytest.param({"id": "t1", "progress": 1.5}, {"id": ["t0", "t1"], "progress": [0, 1.5]},
                 ["progress", "1"], id="progress above 1"),
    pytest.param({"id": "t1", "demand": {"gpu": 1}},
                 {"id": ["t0", "t1"], "demand": {"gpu": [0, 1]}},
                 ["demand", "unknown resource 'gpu'"], id="unknown resource"),
    pytest.param({"id": "t1", "current_agent": "zz"},
                 {"id": ["t0", "t1"], "current_agent": [None, "zz"]},
                 ["current_agent", "1", "unknown agent 'zz'"], id="unknown current agent"),
    pytest.param({"id": "t1", "forbidden_agents": ["zz"]},
                 {"id": ["t0", "t1"], "forbidden_agents": [[], ["zz"]]},
                 ["forbidden_agents", "1", "unknown agent 'zz'"], id="unknown forbidden agent"),
    pytest.param({"id": ""}, {"id": ["t0", ""]}, ["id", "1", "at least 1 character"],
                 id="empty id"),
])
def test_bad_columns_are_refused_like_bad_tasks(task: dict, columns: dict,
                                                says: list[str]) -> None:
    as_objects, as_columns = _both_refuse(task, columns)
    for word in says:
        assert word in as_objects, (word, as_objects)
        assert word in as_columns, (word, as_columns)


@pytest.mark.parametrize(("columns", "says"), [
    pytest.param({"id": ["a", "b"], "work": [1.0]}, "work has 1 rows, id has 2", id="short column"),
    pytest.param({"id": ["a"], "work": ["x"]}, "work[0] must be a number", id="text in numbers"),
    pytest.param({"id": ["a"], "work": [[1.0]]}, "work[0] must be a number", id="nested"),
    pytest.param({"id": ["a"], "hard_deadline": [1]}, "hard_deadline[0] must be a boolean",
                 id="int as boolean"),
    pytest.param({"id": ["a"], "skills": [[1]]}, "skills[0] must be a list of strings",
                 id="skill not a string"),
    pytest.param({"id": ["a"], "deadline": np.array([NAN])}, "deadline[0] must be a finite",
                 id="NaN deadline is not 'none'"),
])
def test_malformed_columns_name_the_column(columns: dict, says: str) -> None:
    with pytest.raises(ValidationError) as err:
        TaskTable(**columns)
    assert says in str(err.value)


def test_codes_must_point_into_the_values() -> None:
    with pytest.raises(ValueError, match=r"codes\[1\] = 1 is not an index"):
        Coded.of([0, 1], [["x"]])


def test_a_lone_string_is_a_list_of_one_and_coded_columns_are_taken_as_given() -> None:
    t = TaskTable(id=["a", "b", "c"], skills=["x", None, ["x", "y"]],
                  forbidden_agents=Coded.of([0, 0, 1], [[], ["a0"]]))
    assert [r.skills for r in t.rows()] == [["x"], [], ["x", "y"]]
    assert [r.forbidden_agents for r in t.rows()] == [[], [], ["a0"]]


def test_a_plan_from_columns_writes_the_rows_of_a_plan_from_objects() -> None:
    columnar, _ = _pair(4, n=50, m=5)
    plan = solve(columnar, solver="greedy", time_limit=2)
    table = plan.assignment_table
    assert table is not None and len(table) == plan.metrics.assigned  # type: ignore[union-attr]
    as_objects = plan.model_copy(update={"assignments": list(table.rows())})
    assert as_objects.assignment_table is None
    assert plan.model_dump_json() == as_objects.model_dump_json()
    assert plan == as_objects and plan.agent_of() == as_objects.agent_of()
    assert Plan.model_validate_json(plan.model_dump_json()) == plan
    assert validate(columnar, plan) == [] and plan._rows is None  # validated row by row
    assert [a.task for a in plan.assignments] == table.tasks()
    assert plan.assignments is plan.assignments  # built once, on first read


def test_the_validator_reads_a_plan_s_columns() -> None:
    columnar, _ = _pair(4, n=20, m=3)
    plan = solve(columnar, solver="greedy", time_limit=2)
    table = plan.assignment_table
    assert table is not None and len(table) >= 2
    again = [np.r_[c, c[:1]] for c in (table.task, table.agent, table.start, table.end)]
    twice = AssignmentTable(table.task_ids, table.agent_ids, *again)
    bad = plan.model_copy()
    bad._table = twice
    assert "assigned_twice" in {v.kind for v in validate(columnar, bad)}
