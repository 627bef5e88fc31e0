"""Snapshots with `task_table` (columns) through the API's body parser."""

from __future__ import annotations

import json

from api.bodies import parse_body

AGENTS = [{"id": "a0", "capacity": {"cpu": 4}}]


def _body(ids: list[str]) -> bytes:
    table = {"id": ids, "work": [1.0] * len(ids), "demand": {"cpu": [0.5] * len(ids)}}
    return json.dumps({"snapshot": {"agents": AGENTS, "task_table": table}}).encode()


def test_table_rows_count_against_max_tasks() -> None:
    kind, (msg, field) = parse_body("api.schemas.SolveRequest", _body(["t0", "t1", "t2"]),
                                    max_agents=10, max_tasks=2)
    assert kind == "error" and "3 tasks" in msg and field == "snapshot.tasks"


def test_a_table_snapshot_is_parsed_and_kept_as_columns() -> None:
    kind, (_fields, snap, plan) = parse_body("api.schemas.SolveRequest", _body(["t0", "t1"]),
                                            max_agents=10, max_tasks=5)
    assert kind == "ok" and plan is None
    text, n_agents, n_tasks = snap[:3]
    assert (n_agents, n_tasks) == (1, 2)
    assert json.loads(text)["task_table"]["id"] == ["t0", "t1"]


def test_a_bad_column_is_a_field_error() -> None:
    body = json.dumps({"snapshot": {"agents": AGENTS, "task_table": {
        "id": ["t0", "t1"], "work": [1.0, -1.0]}}}).encode()
    kind, (msg, field) = parse_body("api.schemas.SolveRequest", body, max_agents=10,
                                    max_tasks=5)
    assert kind == "error" and "work[1]" in msg and field is not None and "task_table" in field
