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


def _requests(n: int) -> list[dict[str, object]]:
    return [{"jsonrpc": "2.0", "id": 1, "method": "initialize",
             "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                        "clientInfo": {"name": "t", "version": "0"}}},
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            *({"jsonrpc": "2.0", "id": 2 + k, "method": "tools/call",
               "params": {"name": "slow", "arguments": {}}} for k in range(n)),
            {"jsonrpc": "2.0", "id": 99, "method": "tools/list"}]


@pytest.mark.anyio
async def test_requests_written_just_before_eof_are_all_answered() -> None:
    """The SDK cancelled its in-flight handlers when the read stream ended: requests a
    client wrote just before closing stdin went unanswered (2-3 of 5 in a real run)."""
    import anyio
    import mcp_types as types
    from mcp.server import MCPServer
    from mcp.shared.message import SessionMessage

    from api.mcp_server import run_draining

    server = MCPServer("t")

    @server.tool()
    async def slow() -> str:
        await anyio.sleep(0.02)
        return "done"

    for _ in range(10):
        r_send, r_recv = anyio.create_memory_object_stream[SessionMessage | Exception](100)
        w_send, w_recv = anyio.create_memory_object_stream[SessionMessage](100)
        for m in _requests(5):
            r_send.send_nowait(SessionMessage(types.jsonrpc_message_adapter.validate_python(m)))
        r_send.close()  # EOF right behind the last request
        with anyio.fail_after(30):  # a hang check, not a speed check
            await run_draining(server, r_recv, w_send, limit=20)
        answered = set()
        while True:
            try:
                answered.add(getattr(w_recv.receive_nowait().message, "id", None))
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
        assert answered >= {1, 2, 3, 4, 5, 6, 99}, answered


def test_a_real_stdio_server_answers_everything_sent_before_eof(tmp_path: Path) -> None:
    import json
    import subprocess

    calls = [{"jsonrpc": "2.0", "id": 2 + k, "method": "tools/call",
              "params": {"name": "solvers", "arguments": {}}} for k in range(10)]
    data = "".join(json.dumps(m) + "\n" for m in [*_requests(0)[:2], *calls]).encode()
    p = subprocess.run(
        [str(Path(sys.executable).parent / "allocator"), "mcp", "--workers", "1",
         "--database-url", f"sqlite:///{tmp_path / 'jobs.db'}"],
        input=data, capture_output=True, timeout=180, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    ids = {json.loads(line).get("id") for line in p.stdout.decode().splitlines() if line}
    assert ids == set(range(1, 12)), p.stderr.decode()[-2000:]


def test_stdio_tool_arguments_with_a_repeated_key_are_refused(tmp_path: Path) -> None:
    """Raw JSON-RPC lines (a client library cannot write a repeated key): the SDK kept the
    last "capacity"; now the call is a tool error naming the path (tests/test_duplicate_keys.py)."""
    import json
    import subprocess

    snap = json.dumps(small_snapshot()).replace(
        '"capacity": {"cpu": 4}', '"capacity": {"cpu": 1}, "capacity": {"cpu": 4}', 1)
    lines = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
    ]
    text = "".join(json.dumps(m) + "\n" for m in lines)
    text += ('{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "solve", '
             '"arguments": {"snapshot": ' + snap + ', "solver": "greedy"}}}\n')
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "allocator"), "mcp", "--workers", "1",
         "--database-url", f"sqlite:///{tmp_path / 'jobs.db'}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=str(ROOT))
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(text)
        proc.stdin.flush()
        answer = None
        for line in proc.stdout:  # the answers, until the tool call's
            msg = json.loads(line)
            if msg.get("id") == 2:
                answer = msg
                break
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert answer is not None and answer["result"]["isError"], answer
    said = answer["result"]["content"][0]["text"]
    assert said.startswith("invalid_input: duplicate key 'capacity'"), said
    assert "(field snapshot.agents.0.capacity)" in said, said
