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
