"""One magnitude limit for every front end (models.MAX_MAGNITUDE, speeds, counts).

Before, the API refused numbers above 1e9 and speeds outside [1e-6, 1e6]
(api/limits.py) while the CLI took anything up to the engine's 1e15
(allocator/problem.py), and `max_migrations` up to 10**6 in the API but without
bound on the CLI. The limits now live in models and both front ends check them
with allocator.limits.check_magnitudes (HTTP: tests/api/test_hardening.py, the
same cases; MCP calls the service's own check, as HTTP does).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from allocator.cli import app

runner = CliRunner()

BASE: dict[str, Any] = {
    "agents": [{"id": "a", "capacity": {"cpu": 4}, "cost_rate": 1.0},
               {"id": "b", "capacity": {"cpu": 4}, "speed": 2.0}],
    "tasks": [{"id": "t0", "work": 1, "demand": {"cpu": 1}, "current_agent": "a"},
              {"id": "t1", "work": 2, "demand": {"cpu": 1}}],
}


def edit(path: str, value: Any) -> dict[str, Any]:
    """BASE with the dotted `path` set (list indices as numbers)."""
    snap = copy.deepcopy(BASE)
    *head, last = path.split(".")
    node: Any = snap
    for key in head:
        node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
    node[last] = value
    return snap


#: (case, path, value, the field refused or None for accepted): the edges of the limit.
EDGES = [
    ("capacity 1e12", "agents.0.capacity.cpu", 1e12, None),
    ("capacity at the limit", "agents.0.capacity.cpu", 1e15, None),
    ("capacity past the limit", "agents.0.capacity.cpu", 2e15, "agents.0.capacity.cpu"),
    ("work 1e12", "tasks.1.work", 1e12, None),
    ("work past the limit", "tasks.1.work", 1.5e15, "tasks.1.work"),
    ("cost rate past the limit", "agents.1.cost_rate", 1e16, "agents.1.cost_rate"),
    ("speed 1e-9", "agents.1.speed", 1e-9, None),
    ("speed 1e9", "agents.1.speed", 1e9, None),
    ("speed below the limit", "agents.1.speed", 1e-16, "agents.1.speed"),
    ("speed above the limit", "agents.1.speed", 1e16, "agents.1.speed"),
    ("max_migrations at the limit", "options.max_migrations", 10**15, None),
    ("max_migrations past the limit", "options.max_migrations", 10**15 + 1,
     "options.max_migrations"),
]


@pytest.mark.parametrize(("case", "path", "value", "field"), EDGES, ids=[e[0] for e in EDGES])
def test_cli_takes_and_refuses_what_the_api_does(tmp_path: Path, case: str, path: str,
                                                 value: Any, field: str | None) -> None:
    f = tmp_path / "snap.json"
    f.write_text(json.dumps(edit(path, value)))
    r = runner.invoke(app, ["solve", str(f), "--solver", "greedy", "--time-limit", "2"])
    if field is None:
        assert r.exit_code == 0, r.stderr
        return
    assert r.exit_code == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("error: ") and "Traceback" not in r.stderr
    assert field in lines[-1], lines[-1]


@pytest.mark.parametrize(("flag", "value", "ok"), [
    ("--max-migrations", str(10**15), True),
    ("--max-migrations", str(10**15 + 1), False),
    ("--threshold", "1e15", True),
    ("--threshold", "2e15", False),
    ("--threshold", "nan", False),
])
def test_rebalance_flags_have_the_api_bounds(tmp_path: Path, flag: str, value: str,
                                             ok: bool) -> None:
    """`POST /v1/rebalance`'s max_migrations / threshold are the models' Count / Amount;
    the CLI's flags took any count and NaN."""
    f = tmp_path / "snap.json"
    f.write_text(json.dumps(BASE))
    r = runner.invoke(app, ["rebalance", str(f), flag, value, "--time-limit", "2"])
    if ok:
        assert r.exit_code == 0, r.stderr
    else:
        assert r.exit_code == 2 and flag in r.stderr.splitlines()[-1], r.stderr
