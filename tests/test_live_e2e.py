"""Must show (#19): a real server, 4 `allocator agent` processes, 2,000 tasks, two kills.

One agent is SIGKILLed mid-run and the server is SIGKILLed and restarted once
(same SQLite file, same port). Then: every task completed, each exactly once
by the service's accounting (late results of superseded attempts are counted
apart), none lost; critical tasks' p99 wait is below low tasks'; under
saturation the tenants' shares of the started tasks follow their weights 3:1.
Tasks go in through `allocator submit` (JSON lines) and come out through
`allocator tasks --json`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.server import ROOT, free_port

BIN = Path(sys.executable).parent
N = 2000
#: The task: read the payload, log the run (task id, attempt), echo it, report usage.
COMMAND = ["sh", "-c", 'IFS= read -r x; echo "$ALLOCATOR_TASK_ID $ALLOCATOR_TASK_ATTEMPT" '
           '>> "$RUNS"; printf "%s\\n" "$x"; echo "usage: tokens=3" >&2']


class Proc:
    def __init__(self, args: list[str], log: Path, env: dict[str, str]) -> None:
        self.log = log
        with open(log, "ab") as f:
            self.p = subprocess.Popen(args, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    def kill9(self) -> None:
        os.killpg(self.p.pid, signal.SIGKILL)
        self.p.wait(timeout=10)

    def stop(self) -> None:
        if self.p.poll() is None:
            with_timeout = self.p
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                with_timeout.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill9()


def start_server(port: int, env: dict[str, str], log: Path) -> Proc:
    s = Proc([str(BIN / "allocator"), "serve", "--port", str(port), "--workers", "1",
              "--log-level", "warning"], log, env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert s.p.poll() is None, log.read_text()[-2000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/queues", timeout=1).status_code == 200:
                return s
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server not up: {log.read_text()[-2000:]}")


def completed(url: str) -> int:
    try:
        return int(httpx.get(f"{url}/v1/queues", timeout=5).json()["states"]["completed"])
    except (httpx.HTTPError, KeyError, ValueError):
        return -1


def wait_for(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def p99(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(0.99 * len(s)))]


@pytest.mark.timeout(180)
def test_live_service_end_to_end(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    runs = tmp_path / "runs.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RUNS": str(runs),
           "ALLOCATOR_DATABASE_URL": f"sqlite:///{tmp_path / 'live.db'}",
           "ALLOCATOR_LIVE_LEASE_S": "3", "ALLOCATOR_LIVE_MAX_RETRIES": "6",
           "ALLOCATOR_LIVE_TENANT_WEIGHTS": "gold=3,free=1",
           "ALLOCATOR_LIVE_COORDINATE_EVERY": "0", "ALLOCATOR_LIVE_IMBALANCE": "0",
           "ALLOCATOR_MCP_HTTP": "false"}
    server = start_server(port, env, tmp_path / "server.log")
    agents: list[Proc] = []
    try:
        for i in range(4):
            agents.append(Proc([str(BIN / "allocator"), "agent", "--server", url, "--id",
                                f"a{i}", "--concurrency", "2", "--", *COMMAND],
                               tmp_path / f"agent{i}.log", env))
        wait_for(lambda: len(httpx.get(f"{url}/v1/agents").json()["agents"]) == 4, 30,
                 "4 agents")
        prios = ["critical", "high", "normal", "low"]
        tasks = [{"id": f"t{i:04d}", "priority": prios[i % 4],
                  "tenant": "gold" if (i // 4) % 2 else "free", "work": 0.01,
                  "payload": f"payload {i}"} for i in range(N)]
        (tmp_path / "tasks.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tasks))
        sub = subprocess.run([str(BIN / "allocator"), "submit", "--server", url,
                              str(tmp_path / "tasks.jsonl"), "--json"], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
        assert sub.returncode == 0, sub.stderr
        admitted = [json.loads(x) for x in sub.stdout.splitlines()]
        assert len(admitted) == N and all(a["state"] in ("queued", "assigned") for a in admitted)

        wait_for(lambda: completed(url) >= N // 5, 60, "a fifth done")
        agents[0].kill9()  # its leased tasks come back after the 3 s lease
        wait_for(lambda: completed(url) >= N // 2, 60, "half done")
        server.kill9()
        server = start_server(port, env, tmp_path / "server.log")
        try:
            wait_for(lambda: completed(url) >= N, 120, "all done")
        except AssertionError:
            q = httpx.get(f"{url}/v1/queues").json()
            left = [t for t in httpx.get(f"{url}/v1/tasks?limit=100000").json()["tasks"]
                    if t["state"] != "completed"][:5]
            raise AssertionError(f"not all done: {q['states']} {q['stats']} "
                                 f"{[httpx.get(f'{url}/v1/tasks/' + t['id']).json() for t in left]}"
                                 ) from None

        out = subprocess.run([str(BIN / "allocator"), "tasks", "--server", url, "--json"],
                             env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        views = [json.loads(x) for x in out.stdout.splitlines()]
        q = httpx.get(f"{url}/v1/queues").json()
        ag = subprocess.run([str(BIN / "allocator"), "agents", "--server", url, "--json"],
                            env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        live_agents = [json.loads(x) for x in ag.stdout.splitlines()]
    finally:
        for a in agents:
            a.stop()
        server.stop()

    # None lost, each completed exactly once by the accounting.
    assert sorted(v["id"] for v in views) == [t["id"] for t in tasks]
    assert all(v["state"] == "completed" and v["completions"] == 1 for v in views)
    assert all(v["attempts"] >= 1 and v["agent"] in {"a1", "a2", "a3", "a0"} for v in views)
    assert q["stats"]["completed"] == N
    # Delivery was at least once: every task ran, some maybe twice (their extra results
    # were late and ignored); the killed agent's leases expired.
    ran = Counter(line.split()[0] for line in runs.read_text().splitlines())
    assert set(ran) == {t["id"] for t in tasks}
    assert q["stats"]["lease_expiries"] >= 1
    assert q["tokens_by_tenant"]["gold"] == pytest.approx(3.0 * N / 2)
    assert {a["id"] for a in live_agents} == {"a0", "a1", "a2", "a3"}
    assert next(a for a in live_agents if a["id"] == "a0")["status"] == "down"
    # Priorities: critical tasks waited less than low ones.
    wait = {p: [v["started_at"] - v["submitted_at"] for v in views if v["priority"] == p]
            for p in prios}
    assert p99(wait["critical"]) < p99(wait["low"]), {p: p99(w) for p, w in wait.items()}
    # Tenant shares under saturation: the tenants compete inside each priority class
    # (250 tasks each per class). Over a class's first 300 starts both still had backlog
    # (gold, weight 3, runs out after ~333), and gold got about three quarters of them.
    shares = {}
    for p in prios:
        first = sorted((v for v in views if v["priority"] == p),
                       key=lambda v: v["started_at"])[:300]
        shares[p] = sum(v["tenant"] == "gold" for v in first) / len(first)
    print(f"e2e: p99 wait per class {({p: round(p99(w), 3) for p, w in wait.items()})}, "
          f"gold share per class {shares}, runs {sum(ran.values())} for {N} tasks, "
          f"late results {q['stats']['late_completions']}, "
          f"lease expiries {q['stats']['lease_expiries']}, "
          f"replayed {q['stats']['replayed_events']} events")
    assert all(0.62 <= x <= 0.88 for x in shares.values()), shares
    assert 0.68 <= sum(shares.values()) / 4 <= 0.82, shares
