from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.server import Server

EXAMPLES = Path(__file__).resolve().parents[2] / "data" / "examples"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def make_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Server]]:
    """Start servers for a test module; all are stopped when the module ends."""
    started: list[Server] = []

    def make(db: Path | None = None, **env: str) -> Server:
        db = db or tmp_path_factory.mktemp("api") / "jobs.db"
        s = Server(db, **env).start()
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / name).read_text())


def small_snapshot(n_tasks: int = 4) -> dict[str, Any]:
    """Two agents and a few tasks: CP-SAT proves optimality in milliseconds."""
    return {
        "agents": [{"id": "a", "capacity": {"cpu": 4}, "cost_rate": 1.0},
                   {"id": "b", "capacity": {"cpu": 4}, "speed": 2.0, "cost_rate": 3.0}],
        "tasks": [{"id": f"t{j}", "work": 1 + j % 3, "demand": {"cpu": 1}}
                  for j in range(n_tasks)],
    }


def slow_snapshot() -> dict[str, Any]:
    """Deadlines and makespan: CP-SAT keeps searching for seconds without a proof."""
    snap = example("priorities.json")
    snap.setdefault("options", {})["workers"] = 1
    return snap
