"""The large-body parser process dying between requests (OOM kill, kill -9) is not the
next request's fault: that request is parsed by a fresh parser, not answered 500."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from api.bodies import BodyParser
from api.schemas import SolveRequest
from tests.api.conftest import small_snapshot

pytestmark = pytest.mark.anyio


async def test_a_parser_killed_while_idle_is_replaced_for_the_next_body() -> None:
    parser = BodyParser(max_agents=50, max_tasks=200)
    parser.start()
    try:
        raw = json.dumps({"snapshot": small_snapshot(), "solver": "greedy"}).encode()
        first: Any = await parser.parse(SolveRequest, raw)
        assert first.snapshot.n_tasks == 4
        pool = parser._pool
        assert pool is not None
        for proc in list(pool._processes.values()):  # type: ignore[attr-defined]
            proc.kill()
        deadline = time.monotonic() + 10  # the pool notices the death on its own thread
        while not pool._broken and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.02)
        again: Any = await parser.parse(SolveRequest, raw)
        assert again.snapshot.n_tasks == 4 and again.solver == "greedy"
    finally:
        parser.close()
