"""An agent outlives a service that answers 502/503 for a moment (a proxy in front of a
restarting server, an overloaded one): it backs off and retries with its results kept,
as it does when the connection drops, instead of stopping with the error."""

from __future__ import annotations

import json
import threading
from http.server import ThreadingHTTPServer
from typing import Any

import pytest

from allocator.client import run_agent
from tests.live.stub import JsonHandler


def test_the_agent_retries_a_pull_answered_503_and_reports_the_result() -> None:
    pulls: list[dict[str, Any]] = []
    stop = threading.Event()

    class Handler(JsonHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"] or 0)) or b"{}")
            if self.path == "/v1/agents":
                return self.answer(200, {"lease_s": 30})
            if self.path.endswith("/pull"):
                pulls.append(body)
                n = len(pulls)
                if n == 1:
                    return self.answer(200, {"tasks": [{"id": "t1", "attempt": 1,
                                                        "payload": "hi", "priority": None,
                                                        "tenant": None, "submitted_at": 0}]})
                if n in (2, 3):  # the ack's pull: the proxy in front says 503, then 502
                    return self.answer(503 if n == 2 else 502,
                                       {"type": "busy", "message": "restarting"})
                stop.set()
                return self.answer(200, {"tasks": [], "acks": {"accepted": 1}})
            return self.answer(200, {})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        stats = run_agent(f"http://127.0.0.1:{server.server_port}", "a1",
                          fn=lambda payload: payload.upper(), stop=stop, wait_s=0.05)
    finally:
        server.shutdown()
        server.server_close()
    assert stats.ok == 1
    assert [a["result"] for a in pulls[3].get("acks", [])] == ["HI"]  # resent, not lost


@pytest.mark.parametrize("stated", [True, False])
def test_acks_over_the_body_limit_are_split_and_none_is_dropped(stated: bool) -> None:
    """Four finished results of 1.5 KB on one pull, a body limit of 4 KB: the pull was
    refused 413 as a whole and the agent stopped with every result unsent. The agent
    now splits its acks under the limit the service states at registration (or, behind a
    proxy with a smaller one, learns it from the 413) and every result arrives once."""
    limit = 4096
    acked: list[str] = []
    refused: list[int] = []
    stop = threading.Event()

    class Handler(JsonHandler):
        def do_POST(self) -> None:
            size = int(self.headers["content-length"] or 0)
            raw = self.rfile.read(size)
            if size > limit:
                refused.append(size)
                return self.answer(413, {"type": "body_too_large",
                                         "message": f"request body larger than {limit} bytes"})
            body = json.loads(raw or b"{}")
            if self.path == "/v1/agents":
                return self.answer(200, {"lease_s": 30,
                                         **({"max_body_bytes": limit} if stated else {})})
            if self.path.endswith("/pull"):
                acked.extend(a["task"] for a in body.get("acks", []))
                tasks = []
                if not acked and not refused and not getattr(Handler, "leased", False):
                    Handler.leased = True  # type: ignore[attr-defined]
                    tasks = [{"id": f"t{i}", "attempt": 1, "payload": "x" * 1500,
                              "priority": None, "tenant": None, "submitted_at": 0}
                             for i in range(4)]
                if len(set(acked)) >= 4:
                    stop.set()
                return self.answer(200, {"tasks": tasks, "acks": {"accepted": len(acked)}})
            return self.answer(200, {})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        stats = run_agent(f"http://127.0.0.1:{server.server_port}", "a1",
                          fn=lambda payload: payload, stop=stop, batch=4, wait_s=0.05)
    finally:
        server.shutdown()
        server.server_close()
    assert stats.ok == 4
    assert sorted(acked) == ["t0", "t1", "t2", "t3"]  # each once, none dropped
    if stated:
        assert refused == []


def test_a_stopping_agent_reports_its_results_without_leasing_more() -> None:
    """The agent's last report was a pull (max 1): it leased a queued task it would never
    run, which sat on the departed agent until its lease expired and then failed."""
    leased_after_stop: list[str] = []
    results: dict[str, Any] = {}
    stop = threading.Event()

    class Handler(JsonHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"] or 0)) or b"{}")
            if self.path.endswith("/complete"):
                results[self.path.split("/")[3]] = body.get("result")
                return self.answer(200, {"accepted": True})
            if self.path.endswith("/pull"):
                for a in body.get("acks", []):
                    results[a["task"]] = a.get("result")
                n = getattr(Handler, "n", 0) + 1
                Handler.n = n  # type: ignore[attr-defined]
                if stop.is_set():
                    leased_after_stop.append(f"t{n}")
                task = {"id": f"t{n}", "attempt": 1, "payload": "hi", "priority": None,
                        "tenant": None, "submitted_at": 0}
                return self.answer(200, {"tasks": [task]})
            return self.answer(200, {"lease_s": 30})

    def fn(payload: str) -> str:
        stop.set()  # SIGTERM arrives while the first task runs
        return payload.upper()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        run_agent(f"http://127.0.0.1:{server.server_port}", "a1", fn=fn, stop=stop,
                  wait_s=0.05)
    finally:
        server.shutdown()
        server.server_close()
    assert results == {"t1": "HI"}
    assert leased_after_stop == []
