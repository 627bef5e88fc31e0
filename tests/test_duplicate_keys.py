"""A JSON object with a repeated key is refused, naming the key's path, on every input.

Before, the standard `json` reader kept the last value: a snapshot with two
"capacity" keys in one agent was solved with the second, silently. Now CLI files
(exit 2), batch inputs (failed, with the reason), HTTP bodies (422, field: small
and large ones, tests/api/test_hardening.py) and MCP tool arguments (a tool error
naming the field; over stdio in tests/api/test_mcp_stdio.py) refuse it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp.server.mcpserver.exceptions import ToolError
from typer.testing import CliRunner

from allocator.batch import run_batch
from allocator.cli import app
from allocator.io.strict_json import (
    DUPLICATE_MARK,
    DuplicateKeyError,
    loads,
    mark_duplicate_arguments,
)
from api.mcp_server import build_mcp

runner = CliRunner()

#: Two "capacity" keys in the first agent (the case from docs/benchmarks/robustness.md).
DUP_SNAPSHOT = ('{"agents": [{"id": "a", "capacity": {"cpu": 1}, "capacity": {"cpu": 9}}], '
                '"tasks": [{"id": "t", "demand": {"cpu": 5}}]}')


@pytest.mark.parametrize(("text", "path"), [
    (DUP_SNAPSHOT, "agents.0.capacity"),
    ('{"a": 1, "a": 2}', "a"),
    ('{"x": [{}, {"y": {"z": 1, "z": 1}}]}', "x.1.y.z"),
    ('[{"k": 1}, {"k": 1, "j": 0, "k": 2}]', "1.k"),
])
def test_the_reader_names_the_repeated_key(text: str, path: str) -> None:
    with pytest.raises(DuplicateKeyError) as info:
        loads(text)
    assert info.value.path == path
    assert isinstance(info.value, json.JSONDecodeError)  # malformed JSON to every caller
    assert loads('{"a": {"b": 1}, "b": [1, {"a": 2}]}') == {"a": {"b": 1}, "b": [1, {"a": 2}]}


def test_cli_refuses_a_snapshot_file_with_a_repeated_key(tmp_path: Path) -> None:
    f = tmp_path / "dup.json"
    f.write_text(DUP_SNAPSHOT)
    r = runner.invoke(app, ["solve", str(f), "--solver", "greedy", "--time-limit", "1"])
    assert r.exit_code == 2, r.stderr
    last = [ln for ln in r.stderr.splitlines() if ln.strip()][-1]
    assert last.startswith("error: ") and "agents.0.capacity" in last and "duplicate" in last
    assert "Traceback" not in r.stderr


def test_batch_fails_the_input_with_a_repeated_key(tmp_path: Path) -> None:
    f = tmp_path / "dup.json"
    f.write_text(DUP_SNAPSHOT)
    res = run_batch([f], tmp_path / "out", solver="greedy", time_limit=1)
    assert res[0].outcome == "failed"
    assert "agents.0.capacity" in (res[0].error or "")


def test_mcp_arguments_with_a_repeated_key_are_a_tool_error() -> None:
    raw = ('{"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "solve", '
           '"arguments": {"snapshot": ' + DUP_SNAPSHOT + ', "solver": "greedy"}}}')
    marked = mark_duplicate_arguments(raw)
    assert isinstance(marked, str)
    args: dict[str, Any] = json.loads(marked)["params"]["arguments"]
    assert args[DUPLICATE_MARK] == "snapshot.agents.0.capacity"
    assert mark_duplicate_arguments('{"jsonrpc": "2.0", "id": 1, "method": "x"}') is None
    mcp = build_mcp(lambda: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(ToolError) as info:
        import anyio

        anyio.run(mcp.call_tool, "solve", args)
    msg = str(info.value)
    assert msg.startswith("invalid_input: ") and "(field snapshot.agents.0.capacity)" in msg


def test_the_http_mcp_app_sees_the_mark() -> None:
    """/mcp (streamable HTTP): the body reaches the SDK's app with the mark added."""
    import anyio

    from api.mcp_server import strict_mcp_app

    seen: list[bytes] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append((await receive())["body"])

    raw = ('{"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "solve", '
           '"arguments": {"snapshot": ' + DUP_SNAPSHOT + '}}}').encode()
    parts = [raw[:40], raw[40:]]

    async def receive() -> dict[str, Any]:
        chunk = parts.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(parts)}

    async def send(message: Any) -> None:
        pass

    anyio.run(strict_mcp_app(inner), {"type": "http", "method": "POST"}, receive, send)
    args = json.loads(seen[0])["params"]["arguments"]
    assert args[DUPLICATE_MARK] == "snapshot.agents.0.capacity"
