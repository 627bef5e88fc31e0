"""Snapshot validation: every bad input is a clear error naming the field."""

from __future__ import annotations

import json
import math

import pytest
from pydantic import ValidationError

from allocator.errors import InvalidInputError
from allocator.io import parse_snapshot
from models import Agent, Plan, Snapshot, Task, Weights


def base(**overrides: object) -> dict:
    snap: dict = {
        "agents": [{"id": "a", "capacity": {"cpu": 4}}, {"id": "b", "capacity": {"cpu": 2}}],
        "tasks": [{"id": "t1", "work": 1, "demand": {"cpu": 1}}],
    }
    snap.update(overrides)
    return snap


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        pytest.param(base(agents=[{"id": "a"}, {"id": "a"}]), "agents[1].id", "duplicate",
                     id="duplicate agent id"),
        pytest.param(base(tasks=[{"id": "t"}, {"id": "t"}]), "tasks[1].id", "duplicate",
                     id="duplicate task id"),
        pytest.param(base(tasks=[{"id": "t", "current_agent": "zz"}]), "current_agent",
                     "unknown agent", id="unknown current agent"),
        pytest.param(base(tasks=[{"id": "t", "allowed_agents": ["zz"]}]), "allowed_agents",
                     "unknown agent", id="unknown allowed agent"),
        pytest.param(base(tasks=[{"id": "t", "overrides": {"zz": {"cost": 1}}}]), "overrides",
                     "unknown agent", id="unknown override agent"),
        pytest.param(base(tasks=[{"id": "t", "demand": {"gpu": 1}}]), "demand",
                     "unknown resource", id="unknown resource"),
        pytest.param(base(tasks=[{"id": "t", "work": -1}]), "tasks.0.work", "greater than",
                     id="negative work"),
        pytest.param(base(tasks=[{"id": "t", "work": "NaN"}]), "tasks.0.work", "finite",
                     id="NaN work"),
        pytest.param(base(agents=[{"id": "a", "capacity": {"cpu": -2}}]), "capacity",
                     ">= 0", id="negative capacity"),
        pytest.param(base(agents=[{"id": "a", "speed": 0}]), "agents.0.speed", "greater than",
                     id="zero speed"),
        pytest.param(base(tasks=[{"id": "t", "release": 5, "deadline": 2}]), "tasks.0",
                     "before release", id="deadline before release"),
        pytest.param(base(tasks=[{"id": "t", "hard_deadline": True}]), "tasks.0",
                     "no deadline", id="hard deadline without deadline"),
        pytest.param(base(tasks=[{"id": "t", "colour": "red"}]), "tasks.0.colour",
                     "Extra inputs", id="unknown field"),
        pytest.param(base(tasks=[{"id": "t", "priority": "urgent"}]), "tasks.0.priority",
                     "critical", id="unknown priority"),
        pytest.param(base(agents="nope"), "agents", "list", id="wrong type"),
        pytest.param(base(options={"time_limit": -1}), "options.time_limit", "greater than",
                     id="negative time limit"),
    ],
)
def test_invalid_snapshots_name_the_field(data: dict, field: str, words: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        parse_snapshot(json.loads(json.dumps(data)))
    message = str(info.value)
    assert field in message
    assert words in message


def test_nan_capacity_in_python_is_rejected() -> None:
    with pytest.raises(ValidationError, match="finite"):
        Agent(id="a", capacity={"cpu": math.nan})


def test_valid_snapshot_round_trips_through_json(small_snapshot: Snapshot) -> None:
    again = Snapshot.model_validate_json(small_snapshot.model_dump_json())
    assert again == small_snapshot


def test_weights_fill_in_missing_priority_classes() -> None:
    w = Weights(unassigned={"critical": 5})
    assert w.unassigned["critical"] == 5
    assert w.unassigned["low"] == 1000.0


def test_schema_exports() -> None:
    assert "agents" in Snapshot.model_json_schema()["properties"]
    assert "assignments" in Plan.model_json_schema()["properties"]


def test_task_defaults_are_sensible() -> None:
    t = Task(id="x")
    assert t.work == 1.0 and t.priority == "normal" and t.deadline is None
