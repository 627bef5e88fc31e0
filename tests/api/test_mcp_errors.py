"""MCP tools answer bad arguments in one line naming the field (no service needed)."""

from __future__ import annotations

from typing import Any

import pytest
from mcp.server.mcpserver.exceptions import ToolError

from api.mcp_server import build_mcp


@pytest.mark.anyio
@pytest.mark.parametrize(("tool", "args", "field"), [
    ("solve", {"snapshot": {"agents": "x"}}, "snapshot.agents"),
    ("solve", {"snapshot": {"agents": []}, "time_limit": 1e9}, "time_limit"),
    ("solve", {"snapshot": {"agents": []}, "seed": -1}, "seed"),
    ("submit_job", {"snapshot": {"agents": []}, "solver": ""}, "solver"),
    ("job_status", {"job_id": 5}, "job_id"),
    ("rebalance", {"snapshot": {"agents": []}, "max_migrations": 10**29}, "max_migrations"),
    ("simulate", {"policies": ["fifo", "fifo"]}, "policies"),
])
async def test_bad_arguments_name_the_field(tool: str, args: dict[str, Any],
                                            field: str) -> None:
    mcp = build_mcp(lambda: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(ToolError) as info:
        await mcp.call_tool(tool, args)
    msg = str(info.value)
    assert "invalid_input: " in msg and f"(field {field})" in msg, msg
    assert "\n" not in msg
