"""What an agent reports for a task is an ack the service accepts.

One ack the service refuses (422) refuses the whole pull that carries it and
stopped the agent; the task then expired onto the next agent, which ran the
same command and stopped too. A task whose command prints an unreadable usage
line or an oversized result ends with a reason instead.
"""

from __future__ import annotations

from typing import Any

import pytest

from allocator.cli.live import parse_usage
from allocator.client import _ack
from models.live import MAX_PAYLOAD, Ack

TASK: dict[str, Any] = {"id": "t1", "attempt": 1, "payload": "x"}


@pytest.mark.parametrize("line", ["usage: tokens=" + "9" * 400, "usage: tokens=1e999",
                                  "usage: tokens=1e3"])
def test_a_usage_line_is_read_as_its_number_or_not_at_all(line: str) -> None:
    result, tokens = parse_usage("out\n" + line + "\n", "")
    if tokens is None:  # not a number the service takes: left in the result
        assert line in result
    else:
        assert tokens == 1000.0 and result == "out\n"


@pytest.mark.parametrize("got", [("ok", float("inf")), ("ok", -1.0), ("ok", float("nan")),
                                 ("x" * (MAX_PAYLOAD + 1), None)])
def test_an_ack_the_service_would_refuse_becomes_a_failed_attempt_with_the_field(
        got: tuple[str, float | None]) -> None:
    ack = _ack(TASK, lambda _task: got)
    Ack.model_validate(ack)  # the service accepts it
    assert ack["outcome"] == "error"
    assert ("tokens" in ack["error"]) or ("result" in ack["error"])


def test_a_good_ack_is_sent_as_the_runner_gave_it() -> None:
    ack = _ack(TASK, lambda _task: ("done", 12.0))
    Ack.model_validate(ack)
    assert ack["result"] == "done" and ack["tokens"] == 12.0 and "outcome" not in ack
