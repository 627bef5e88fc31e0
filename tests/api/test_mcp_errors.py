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


class _Recorder:
    """Stands in for the service: keeps what a capability tool would run."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def run_capability(self, kind: str, snapshot: object,
                             params: dict[str, Any]) -> str:
        self.calls.append((kind, params))
        return '{"rows": [], "complete": true}'


@pytest.mark.anyio
async def test_simulate_tool_passes_the_executor_options() -> None:
    rec = _Recorder()
    mcp = build_mcp(lambda: rec)  # type: ignore[arg-type,return-value]
    await mcp.call_tool("simulate", {
        "policies": ["stealing"],
        "options": {"admission": "throttle", "target_wait": 2.5, "aging": 10},
    })
    (kind, params), = rec.calls
    assert kind == "simulate"
    assert params["options"]["admission"] == "throttle"
    assert params["options"]["target_wait"] == 2.5
    assert params["options"]["aging"] == 10


@pytest.mark.anyio
async def test_simulate_tool_names_a_bad_option() -> None:
    mcp = build_mcp(lambda: _Recorder())  # type: ignore[arg-type,return-value]
    with pytest.raises(ToolError) as info:
        await mcp.call_tool("simulate", {"options": {"admission": "bogus"}})
    assert "(field options.admission)" in str(info.value), str(info.value)
