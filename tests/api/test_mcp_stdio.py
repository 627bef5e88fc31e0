"""An MCP client session over stdio with `allocator mcp`: list tools, solve, validate."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from allocator.validate import validate
from models import Plan, Snapshot
from tests.api.conftest import small_snapshot
from tests.api.server import ROOT


@pytest.mark.anyio
async def test_stdio_session_solves(tmp_path: Path) -> None:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    params = StdioServerParameters(
        command=str(Path(sys.executable).parent / "allocator"),
        args=["mcp", "--workers", "1", "--database-url", f"sqlite:///{tmp_path / 'jobs.db'}"],
        env={**os.environ, "PYTHONPATH": str(ROOT), "ALLOCATOR_SYNC_TIME_LIMIT": "2"},
        cwd=str(ROOT),
    )
    snap = small_snapshot()
    async with Client(params, read_timeout_seconds=60) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert {"solve", "validate", "job_status", "submit_job", "solvers"} <= tools
        names = {s["name"] for s in (await client.call_tool("solvers", {})
                                     ).structured_content["solvers"]}
        # HiGHS prints a banner to stdout; through MILP (when present) that must not
        # corrupt the protocol stream.
        for solver in ["milp:highs"] if "milp:highs" in names else []:
            extra = await client.call_tool("solve", {"snapshot": snap, "solver": solver})
            assert not extra.is_error, extra.content
        result = await client.call_tool("solve", {"snapshot": snap, "solver": "cpsat"})
        assert not result.is_error, result.content
        plan = Plan.model_validate(result.structured_content)
        assert plan.status == "optimal"
        assert validate(Snapshot.model_validate(snap), plan) == []
        checked = await client.call_tool("validate", {"snapshot": snap,
                                                      "plan": result.structured_content})
        assert checked.structured_content == {"valid": True, "violations": []}
        bad = await client.call_tool("solve", {"snapshot": snap, "solver": "nope"})
        assert bad.is_error and "unknown_solver" in bad.content[0].text
        missing = await client.call_tool("job_status", {"job_id": "nope"})
        assert missing.is_error and "not_found" in missing.content[0].text
