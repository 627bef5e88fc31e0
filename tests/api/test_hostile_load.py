"""Hostile and heavy requests against a real server on 127.0.0.1, all at once.

Every item of issue #16 that reaches the service runs concurrently here while
`/healthz` is probed every 20 ms and the RSS of the server's process tree
(server, solver workers, body parser) is sampled every 100 ms:

* no response is 500 or more (503 only with Retry-After),
* the whole tree stays under 3 GB,
* `/healthz` p99 is under 100 ms,
* every time limit holds within limit + 2 s.

The CLI items (watch, replay, one-line errors) are in tests/test_cli_errors.py
and tests/test_batch_watch.py; this file is the service.
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil
import pytest

from allocator.engine import solve
from models import Snapshot
from tests.api.conftest import small_snapshot
from tests.api.server import Server

KEY = "hostile-test-key"
AUTH = {"authorization": f"Bearer {KEY}"}
SYNC_LIMIT = 2.0
JOB_LIMIT = 2.0
SLACK = 2.0  # every time limit must hold within limit + SLACK
RSS_CAP = 3 << 30
HEALTH_P99_S = 0.100


@dataclass
class Outcome:
    name: str
    status: int
    seconds: float
    limit: float | None = None
    retry_after: str | None = None
    note: str = ""


@dataclass
class Record:
    outcomes: list[Outcome] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, o: Outcome) -> None:
        with self.lock:
            self.outcomes.append(o)


def tree_rss(pid: int) -> int:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


# -- bodies (built before the clock starts, so the test client does not compete) ----------

def override_body() -> bytes:
    """1000 agents x 50 resources, 20k tasks, one per-agent demand override (~1.4 MB)."""
    res = [f"r{k}" for k in range(50)]
    agents = [{"id": f"a{i}", "capacity": {r: 100.0 for r in res}} for i in range(1000)]
    tasks: list[dict[str, Any]] = [{"id": f"t{j}", "work": 1, "demand": {res[j % 50]: 1}}
                                   for j in range(20_000)]
    tasks[0]["overrides"] = {"a1": {"demand": {"r0": 2}}}
    return json.dumps({"snapshot": {"agents": agents, "tasks": tasks}}).encode()


def at_caps_body(solver: str = "greedy") -> bytes:
    """2000 agents x 50,000 tasks: the server's own caps, a plain solve."""
    agents = [{"id": f"a{i}", "capacity": {"cpu": 100.0}} for i in range(2000)]
    tasks = [{"id": f"t{j}", "work": 1, "demand": {"cpu": 1}} for j in range(50_000)]
    return json.dumps({"snapshot": {"agents": agents, "tasks": tasks},
                       "solver": solver, "time_limit": 3}).encode()


def huge_body() -> bytes:
    """~13 MB, 580k tasks: over max_tasks, refused after counting (not building models)."""
    tasks = ",".join(f'{{"id":"t{j}","work":1}}' for j in range(580_000))
    return ('{"snapshot":{"agents":[{"id":"a","capacity":{}}],"tasks":[' + tasks
            + "]}}").encode()


def skills_body() -> bytes:
    """/v1/validate with many skills per task and agent (quadratic before)."""
    skills = [f"skill-{k}" for k in range(400)]
    agents = [{"id": f"a{i}", "capacity": {"cpu": 1000}, "skills": skills} for i in range(20)]
    tasks = [{"id": f"t{j}", "work": 1, "demand": {"cpu": 1}, "skills": skills[: 300]}
             for j in range(200)]
    plan = {"status": "feasible", "solver": "x",
            "assignments": [{"task": f"t{j}", "agent": f"a{j % 20}", "start": 0.0,
                             "end": 1.0} for j in range(200)]}
    return json.dumps({"snapshot": {"agents": agents, "tasks": tasks}, "plan": plan}).encode()


def nested_body() -> bytes:
    return b"[" * 200_000 + b"]" * 200_000


# -- the hostile requests ---------------------------------------------------------------

Call = Callable[[httpx.Client, Record], None]


def post(c: httpx.Client, rec: Record, name: str, path: str, *, body: bytes | None = None,
         json_body: Any = None, limit: float | None = None, expect: tuple[int, ...] = (),
         headers: dict[str, str] | None = None, timeout: float = 60) -> httpx.Response:
    t0 = time.monotonic()
    h = {**AUTH, "content-type": "application/json", **(headers or {})}
    content = body if body is not None else json.dumps(json_body).encode()
    r = c.post(path, content=content, headers=h, timeout=timeout)
    rec.add(Outcome(name, r.status_code, time.monotonic() - t0, limit,
                    r.headers.get("retry-after"), r.text[:200]))
    if expect and r.status_code not in expect and r.status_code not in (429, 503):
        rec.add(Outcome(f"{name}: unexpected {r.status_code}", 599, 0, note=r.text[:300]))
    return r


def hostile_calls(bodies: dict[str, bytes]) -> list[tuple[str, Call]]:
    small = small_snapshot()

    # The sparse problem solves these (a plan, possibly cut short by the time
    # limit: 200; or 422 when even the parse used the limit up); an exact
    # backend at the caps is still refused by the memory estimate (413).
    def memory_override(c: httpx.Client, rec: Record) -> None:
        post(c, rec, "override 1000x20k x50", "/v1/solve", body=bodies["override"],
             limit=SYNC_LIMIT, expect=(200, 422))

    def memory_caps(c: httpx.Client, rec: Record) -> None:
        post(c, rec, "2000x50k at caps", "/v1/solve", body=bodies["caps"], limit=SYNC_LIMIT,
             expect=(200, 422))
        post(c, rec, "2000x50k at caps, cpsat", "/v1/solve", body=bodies["caps_cpsat"],
             expect=(413,))

    def huge(c: httpx.Client, rec: Record) -> None:
        post(c, rec, "13 MB 580k tasks", "/v1/jobs", body=bodies["huge"], expect=(422,))

    def nested(c: httpx.Client, rec: Record) -> None:
        post(c, rec, "nested JSON", "/v1/solve", body=bodies["nested"], expect=(422,))

    def validate_skills(c: httpx.Client, rec: Record) -> None:
        post(c, rec, "validate many skills", "/v1/validate", body=bodies["skills"],
             limit=SYNC_LIMIT, expect=(200,))

    def simulate_long(c: httpx.Client, rec: Record) -> None:
        # Seven policies over 50k tasks: several seconds of work even for the compiled
        # simulator (three took about a second on an idle machine), so the limit bites.
        r = post(c, rec, "simulate 50k x7, limit 1", "/v1/simulate", limit=1.0, expect=(200,),
                 json_body={"workload": {"tasks": 50_000, "agents": 50},
                            "policies": ["fifo", "jsq", "edf", "edf+stealing", "p2c",
                                         "round-robin", "random"], "time_limit": 1.0})
        if r.status_code == 200 and r.json().get("complete") is not False:
            rec.add(Outcome("simulate not cut short", 599, 0))

    def simulate_dups(c: httpx.Client, rec: Record) -> None:
        post(c, rec, "16 duplicate policies", "/v1/simulate", expect=(422,),
             json_body={"workload": {"tasks": 1000}, "policies": ["fifo"] * 16})

    def stubborn_sync(c: httpx.Client, rec: Record) -> None:
        post(c, rec, "stubborn sync solve", "/v1/solve", limit=1.0, expect=(200,),
             json_body={"snapshot": small, "solver": "test:stubborn", "time_limit": 1.0})

    def stubborn_job(c: httpx.Client, rec: Record) -> None:
        r = post(c, rec, "stubborn job submit", "/v1/jobs", expect=(202,),
                 json_body={"snapshot": small, "solver": "test:stubborn",
                            "time_limit": JOB_LIMIT})
        if r.status_code != 202:
            return
        job_id = r.json()["id"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            job = c.get(f"/v1/jobs/{job_id}", headers=AUTH).json()
            if job["state"] not in ("queued", "running"):
                break
            time.sleep(0.2)
        ran = (_ts(job["finished_at"]) - _ts(job["started_at"])) if job.get("finished_at") \
            else math.inf
        rec.add(Outcome("stubborn job ran", 200 if job["state"] == "timed_out" else 599, ran,
                        JOB_LIMIT, note=job["state"]))
        d = c.delete(f"/v1/jobs/{job_id}", headers=AUTH)
        rec.add(Outcome("DELETE finished job", d.status_code, 0, note=d.text[:200]))

    def disconnect(c: httpx.Client, rec: Record) -> None:
        t0 = time.monotonic()
        with contextlib.suppress(httpx.TimeoutException):
            c.post("/v1/solve", headers=AUTH, timeout=0.3,
                   json={"snapshot": small, "solver": "test:stubborn", "time_limit": 2})
        rec.add(Outcome("client hangs up", 200, time.monotonic() - t0))

    def edges(c: httpx.Client, rec: Record) -> None:
        for name, patch in [("max_migrations 1e29", {"options": {"max_migrations": 10**29}}),
                            ("label factor 1e300",
                             {"migration": {"label_factors": {"zone": 1e300}}})]:
            post(c, rec, name, "/v1/rebalance", json_body={"snapshot": {**small, **patch}},
                 expect=(422,))
        plan = solve(Snapshot.model_validate(small), solver="greedy").model_dump(
            mode="json", by_alias=True)
        dup = {**plan, "assignments": plan["assignments"] * 2}
        post(c, rec, "bottlenecks dup plan", "/v1/bottlenecks",
             json_body={"snapshot": small, "plan": dup}, expect=(422,))
        nan = json.dumps({"snapshot": small, "plan": plan}).replace(
            '"end": ' + json.dumps(plan["assignments"][0]["end"]), '"end": NaN', 1)
        post(c, rec, "bottlenecks NaN plan", "/v1/bottlenecks", body=nan.encode(),
             expect=(422,))
        r = post(c, rec, "bottlenecks plain", "/v1/bottlenecks", limit=SYNC_LIMIT,
                 json_body={"snapshot": small}, expect=(200,))
        if "NaN" in r.text or "Infinity" in r.text:
            rec.add(Outcome("non-standard JSON token", 599, 0))

    def exposure(c: httpx.Client, rec: Record) -> None:
        for path in ("/docs", "/openapi.json"):
            r = c.get(path)
            rec.add(Outcome(f"GET {path} without key", r.status_code, 0))
            if r.status_code != 401:
                rec.add(Outcome(f"{path} open", 599, 0))
        r = c.get("/v1/solvers", headers={**AUTH, "host": "rebind.evil.example"})
        rec.add(Outcome("foreign Host", r.status_code, 0))
        if r.status_code != 421:
            rec.add(Outcome("foreign Host accepted", 599, 0))
        for k in range(20):
            c.request(f"X{k}", "/metrics", headers=AUTH)
        text = c.get("/metrics", headers=AUTH).text
        if any(f'method="X{k}"' in text for k in range(20)):
            rec.add(Outcome("metrics label per made-up method", 599, 0))

    return [("memory: override", memory_override), ("memory: caps", memory_caps),
            ("huge body", huge), ("nested", nested), ("validate skills", validate_skills),
            ("simulate long", simulate_long), ("simulate dups", simulate_dups),
            ("stubborn sync", stubborn_sync), ("stubborn job", stubborn_job),
            ("disconnect", disconnect), ("edges", edges), ("exposure", exposure)]


def _ts(s: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(s).timestamp()


@pytest.fixture(scope="module")
def server(make_server: Any) -> Server:
    return make_server(ALLOCATOR_API_KEYS=KEY, ALLOCATOR_WORKERS="2",
                       ALLOCATOR_SYNC_TIME_LIMIT=str(SYNC_LIMIT),
                       ALLOCATOR_JOB_TIME_LIMIT=str(JOB_LIMIT),
                       ALLOCATOR_MAX_BODY_BYTES=str(16 << 20), ALLOCATOR_MAX_AGENTS="2000",
                       ALLOCATOR_MAX_TASKS="50000", ALLOCATOR_MAX_SYNC_WAITING="16")


@pytest.mark.serial
def test_hostile_load(server: Server) -> None:
    bodies = {"override": override_body(), "caps": at_caps_body(),
              "caps_cpsat": at_caps_body("cpsat"), "huge": huge_body(),
              "skills": skills_body(), "nested": nested_body()}
    assert len(bodies["huge"]) > 12 << 20
    rec = Record()
    health: list[float] = []
    rss: list[int] = []
    stop = threading.Event()
    assert server.proc is not None
    pid = server.proc.pid

    late_wake: list[float] = []

    def probe() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            while not stop.is_set():
                t0 = time.perf_counter()
                r = c.get("/healthz")
                health.append(time.perf_counter() - t0)
                assert r.status_code == 200
                t1 = time.perf_counter()
                time.sleep(0.02)
                late_wake.append(time.perf_counter() - t1 - 0.02)

    def sample() -> None:
        while not stop.is_set():
            rss.append(tree_rss(pid))
            time.sleep(0.1)

    bg = [threading.Thread(target=probe), threading.Thread(target=sample)]
    for t in bg:
        t.start()
    time.sleep(0.5)  # a baseline of health probes first
    calls = hostile_calls(bodies) * 2  # each item twice, all concurrently
    errors: list[BaseException] = []

    def run(call: tuple[str, Call]) -> None:
        try:
            with httpx.Client(base_url=server.url, timeout=60) as c:
                call[1](c, rec)
        except BaseException as e:
            errors.append(RuntimeError(f"{call[0]}: {type(e).__name__}: {e}"))

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as ex:
        list(ex.map(run, calls))
    wall = time.monotonic() - t0
    stop.set()
    for t in bg:
        t.join()

    assert not errors, errors
    bad = [o for o in rec.outcomes
           if o.status >= 500 and not (o.status == 503 and o.retry_after)]
    assert not bad, bad
    late = [o for o in rec.outcomes if o.limit is not None and o.seconds > o.limit + SLACK]
    assert not late, late
    peak = max(rss)
    assert peak < RSS_CAP, f"peak RSS {peak / 2**30:.2f} GiB"
    health.sort()
    p99 = health[min(len(health) - 1, int(0.99 * len(health)))]
    # How late this process's own sleeping thread woke (the machine's load, not the
    # server's): a shared CI machine at load 11 put healthz's p99 at 259 ms with the
    # server's event loop free. A blocked loop costs seconds, far above this allowance.
    late_wake.sort()
    jitter = late_wake[min(len(late_wake) - 1, int(0.99 * len(late_wake)))]
    summary = (f"{len(rec.outcomes)} outcomes in {wall:.1f} s; healthz n={len(health)} "
               f"p50={statistics.median(health) * 1e3:.1f} ms p99={p99 * 1e3:.1f} ms; "
               f"wake-up lateness p99={jitter * 1e3:.1f} ms; peak RSS {peak / 2**20:.0f} MiB")
    print(summary)
    for o in rec.outcomes:
        if o.name.startswith(("2000x50k", "override")):
            print(f"  {o.name}: {o.status} in {o.seconds:.1f} s {o.note[:80]!r}")
    assert p99 < HEALTH_P99_S + 2 * jitter, summary
