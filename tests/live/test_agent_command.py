"""`allocator agent`'s command runner: a timed-out or cancelled command ends with
everything it started, so the agent's slot (and its SIGTERM) does not wait on a
grandchild holding the output pipes."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import pytest

from allocator.cli.live import run_command

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")

#: The shell waits on its child, so killing the shell alone leaves `sleep` holding stdout.
HANG = ["sh", "-c", "sleep 60; echo never"]


def _run_in_thread(task: dict[str, Any], procs: dict[Any, Any]) -> tuple[threading.Thread,
                                                                         list[BaseException]]:
    errors: list[BaseException] = []

    def go() -> None:
        try:
            run_command(HANG, task, procs, threading.Lock())
        except BaseException as e:  # collected for the assertion
            errors.append(e)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t, errors


def test_a_timed_out_command_and_its_children_are_killed() -> None:
    t, errors = _run_in_thread({"id": "t", "attempt": 1, "payload": "", "timeout": 0.3}, {})
    t.join(30)  # a hang check (the sleep is 60 s), not a speed check
    assert not t.is_alive()
    assert isinstance(errors[0], TimeoutError)


def test_a_cancelled_command_and_its_children_are_killed() -> None:
    from allocator.cli.live import _kill_group

    procs: dict[Any, Any] = {}
    t, errors = _run_in_thread({"id": "t", "attempt": 1, "payload": ""}, procs)
    deadline = time.monotonic() + 10
    while ("t", 1) not in procs and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # let the shell start its sleep
    _kill_group(procs[("t", 1)])
    t.join(30)
    assert not t.is_alive()
    assert isinstance(errors[0], RuntimeError) and "exit status" in str(errors[0])


def _gone(pid: int) -> bool:
    """The process no longer runs (gone, or a zombie nobody has reaped yet)."""
    import os

    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False


def test_a_command_dies_with_its_agent_killed_by_sigkill(tmp_path: Any) -> None:
    """SIGKILL of `allocator agent` took none of its commands along: the service re-leased
    the task and its side effects happened twice. The command's whole group now goes."""
    import os
    import signal
    import subprocess
    from http.server import ThreadingHTTPServer
    from pathlib import Path

    from tests.live.stub import JsonHandler

    pidfile = tmp_path / "grandchild.pid"
    leased = threading.Event()

    class Handler(JsonHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"] or 0))
            body: dict[str, Any] = {"lease_s": 30}
            if self.path.endswith("/pull"):
                body = {"tasks": []}
                if not leased.is_set():
                    leased.set()
                    body["tasks"] = [{"id": "t1", "attempt": 1, "payload": "", "priority": None,
                                      "tenant": None, "submitted_at": 0}]
                else:
                    time.sleep(0.2)
            self.answer(200, body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # The shell starts `sleep` (the grandchild), writes its pid and waits on it.
    script = f"sleep 60 & echo $! > {pidfile}.tmp; mv {pidfile}.tmp {pidfile}; wait"
    agent = subprocess.Popen(
        [str(Path(sys.executable).parent / "allocator"), "agent", "--id", "a1",
         "--server", f"http://127.0.0.1:{server.server_port}", "--", "sh", "-c", script],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    grandchild = 0
    try:
        deadline = time.monotonic() + 60  # a hang check: the agent's start on a loaded box
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        grandchild = int(pidfile.read_text())
        assert not _gone(grandchild)
        agent.send_signal(signal.SIGKILL)
        agent.wait(30)
        deadline = time.monotonic() + 10
        while not _gone(grandchild) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(grandchild), "the command's child outlived its agent"
    finally:
        agent.kill()
        agent.wait(30)
        server.shutdown()
        server.server_close()
        if grandchild and not _gone(grandchild):
            os.kill(grandchild, signal.SIGKILL)
