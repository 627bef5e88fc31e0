"""HTTP API benchmarks: overhead versus the in-process call, and 100 concurrent clients.

    .venv/bin/python benchmarks/api_bench.py [--calls 200] [--clients 100] [--jobs-per-client 3]

1. Overhead: the same small snapshot solved N times in-process
   (`allocator.engine.solve`) and through `POST /v1/solve` on a real server
   (keep-alive client): p50 and p99 of each, and the difference.
2. Load: C clients each submit J jobs at once (small snapshots, CP-SAT) to a
   server with a bounded queue; meanwhile one poller times `GET /v1/jobs/{id}`.
   Reports accepted jobs, 429s, errors, completed-jobs throughput and the p99
   of the status GETs while solves run.

3. Hostile mix (`--hostile-share 0.1`): C clients each send R synchronous
   small solves, a share of which are replaced by hostile requests from
   issue #16 (oversized and override-heavy snapshots, a 13 MB body, nested
   JSON, a stubborn solver, a long simulation, huge migration factors,
   duplicate policies, a foreign Host ...). Reports errors (5xx other than
   503 + Retry-After, transport errors), 429s, 503s, p50/p99 of the small
   solves and the peak RSS of the server's process tree, with a 0 % row as
   the baseline of the same run.

The server runs in its own process group on 127.0.0.1 with a throw-away
SQLite file; the machine is shared, so compare the rows within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from allocator.engine import solve  # noqa: E402
from models import Snapshot  # noqa: E402
from tests.api.server import Server  # noqa: E402


def small_snapshot(n_tasks: int = 8) -> dict[str, Any]:
    return {
        "agents": [{"id": f"a{i}", "capacity": {"cpu": 4}, "speed": 1.0 + i, "cost_rate": 1.0 + i}
                   for i in range(3)],
        "tasks": [{"id": f"t{j}", "work": 1 + j % 3, "demand": {"cpu": 1}}
                  for j in range(n_tasks)],
        "options": {"workers": 1},
    }


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def ms(x: float) -> str:
    return f"{1000 * x:8.2f}"


def overhead(server: Server, calls: int, solver: str) -> list[str]:
    snap_json = small_snapshot()
    snap = Snapshot.model_validate(snap_json)
    for _ in range(5):
        solve(snap, solver=solver)
    local = []
    for _ in range(calls):
        t0 = time.perf_counter()
        solve(snap, solver=solver)
        local.append(time.perf_counter() - t0)
    remote = []
    with httpx.Client(base_url=server.url, timeout=60) as c:
        for _ in range(5):
            c.post("/v1/solve", json={"snapshot": snap_json, "solver": solver})
        for _ in range(calls):
            t0 = time.perf_counter()
            r = c.post("/v1/solve", json={"snapshot": snap_json, "solver": solver})
            remote.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text
    rows = []
    for name, xs in (("in-process", local), ("POST /v1/solve", remote)):
        rows.append(f"| {solver:7s} | {name:15s} | {calls:5d} | {ms(pct(xs, .5))} | "
                    f"{ms(pct(xs, .99))} |")
    rows.append(f"| {solver:7s} | {'overhead':15s} | {calls:5d} | "
                f"{ms(pct(remote, .5) - pct(local, .5))} | "
                f"{ms(pct(remote, .99) - pct(local, .99))} |")
    return rows


async def all_jobs(c: httpx.AsyncClient) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        page = (await c.get("/v1/jobs", params={"limit": 200, "offset": len(out)})).json()
        out += page["items"]
        if len(out) >= page["total"] or not page["items"]:
            return out


def long_snapshot() -> dict[str, Any]:
    """Deadlines and makespan: CP-SAT searches until its (wall-clock) time limit.

    Two CP-SAT workers: with one, the engine runs CP-SAT deterministically and
    its limit is in deterministic units, which can run several times longer.
    """
    snap = json.loads((ROOT / "data" / "examples" / "priorities.json").read_text())
    snap.setdefault("options", {})["workers"] = 2
    return snap


async def load(server: Server, clients: int, per_client: int,
               body: dict[str, Any]) -> dict[str, Any]:
    accepted: list[str] = []
    refused = errors = 0
    gets: list[float] = []
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as c:

        async def client() -> None:
            nonlocal refused, errors
            for _ in range(per_client):
                try:
                    r = await c.post("/v1/jobs", json=body)
                except httpx.HTTPError:
                    errors += 1
                    continue
                if r.status_code == 202:
                    accepted.append(r.json()["id"])
                elif r.status_code == 429:
                    refused += 1
                else:
                    errors += 1

        def poller() -> None:  # its own thread and connection: not queued behind clients
            with httpx.Client(base_url=server.url, timeout=60) as pc:
                while not stop.is_set():
                    if accepted:
                        t0 = time.perf_counter()
                        r = pc.get(f"/v1/jobs/{accepted[len(gets) % len(accepted)]}")
                        gets.append(time.perf_counter() - t0)
                        assert r.status_code == 200
                    time.sleep(0.01)

        stop = threading.Event()
        t0 = time.perf_counter()
        poll = threading.Thread(target=poller, daemon=True)
        poll.start()
        await asyncio.gather(*(client() for _ in range(clients)))
        submit_s = time.perf_counter() - t0
        while True:  # wait for every accepted job to finish
            states = await all_jobs(c)
            if not any(j["state"] in ("queued", "running") for j in states):
                break
            await asyncio.sleep(0.2)
        total_s = time.perf_counter() - t0
        stop.set()
        poll.join()
    return {"submitted": clients * per_client, "accepted": len(accepted), "429": refused,
            "errors": errors, "submit_s": submit_s, "total_s": total_s,
            "jobs_per_s": len(accepted) / total_s,
            "succeeded": sum(j["state"] == "succeeded" for j in states
                             if j["id"] in set(accepted)),
            "get_n": len(gets), "get_p50": pct(gets, .5), "get_p99": pct(gets, .99)}


def hostile_requests() -> list[tuple[str, str, bytes, dict[str, str]]]:
    """(name, path, body, extra headers) of the hostile requests mixed in."""
    from tests.api import test_hostile_load as h

    small = small_snapshot()
    js = {"content-type": "application/json"}

    def body(x: Any) -> bytes:
        return json.dumps(x).encode()

    return [
        ("override 1000x20k x50", "/v1/solve", h.override_body(), js),
        ("2000x50k at caps", "/v1/solve", h.at_caps_body(), js),
        ("2000x50k at caps, cpsat", "/v1/solve", h.at_caps_body("cpsat"), js),
        ("13 MB 580k tasks", "/v1/jobs", h.huge_body(), js),
        ("nested JSON", "/v1/solve", h.nested_body(), js),
        ("validate many skills", "/v1/validate", h.skills_body(), js),
        ("stubborn solver", "/v1/solve",
         body({"snapshot": small, "solver": "test:stubborn", "time_limit": 1}), js),
        ("simulate 50k x3", "/v1/simulate",
         body({"workload": {"tasks": 50_000, "agents": 50},
               "policies": ["fifo", "jsq", "edf"], "time_limit": 1}), js),
        ("16 duplicate policies", "/v1/simulate",
         body({"workload": {"tasks": 100}, "policies": ["fifo"] * 16}), js),
        ("max_migrations 1e29", "/v1/rebalance",
         body({"snapshot": {**small, "options": {"max_migrations": 10**29}}}), js),
        ("foreign Host", "/v1/solve", body({"snapshot": small}),
         {**js, "host": "rebind.evil.example"}),
    ]


async def hostile_mix(server: Server, clients: int, per_client: int, share: float,
                      hostile: list[tuple[str, str, bytes, dict[str, str]]]) -> dict[str, Any]:
    import psutil

    small = json.dumps({"snapshot": small_snapshot(), "solver": "cpsat"}).encode()
    lat: list[float] = []
    counts = {"ok": 0, "429": 0, "503": 0, "4xx": 0, "errors": 0, "hostile": 0}
    rss: list[int] = []
    stop = threading.Event()
    assert server.proc is not None
    root = psutil.Process(server.proc.pid)

    def sample() -> None:
        while not stop.is_set():
            total = 0
            for p in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    total += p.memory_info().rss
            rss.append(total)
            time.sleep(0.1)

    every = round(1 / share) if share > 0 else 0
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as c:

        async def client(k: int) -> None:
            for i in range(per_client):
                n = k * per_client + i
                if every and n % every == every - 1:
                    _, path, content, headers = hostile[(n // every) % len(hostile)]
                    counts["hostile"] += 1
                    try:
                        r = await c.post(path, content=content, headers=headers)
                    except httpx.HTTPError:
                        counts["errors"] += 1
                        continue
                    if r.status_code >= 500 and not (r.status_code == 503
                                                     and r.headers.get("retry-after")):
                        counts["errors"] += 1
                    continue
                t0 = time.perf_counter()
                try:
                    r = await c.post("/v1/solve", content=small,
                                     headers={"content-type": "application/json"})
                except httpx.HTTPError:
                    counts["errors"] += 1
                    continue
                if r.status_code == 200:
                    counts["ok"] += 1
                    lat.append(time.perf_counter() - t0)
                elif r.status_code == 429:
                    counts["429"] += 1
                elif r.status_code == 503 and r.headers.get("retry-after"):
                    counts["503"] += 1
                elif r.status_code >= 500:
                    counts["errors"] += 1
                else:
                    counts["4xx"] += 1

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(clients)))
        wall = time.perf_counter() - t0
        stop.set()
        sampler.join()
    return {**counts, "wall_s": wall, "p50": pct(lat, .5) if lat else float("nan"),
            "p99": pct(lat, .99) if lat else float("nan"), "peak_rss": max(rss)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--jobs-per-client", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-queue", type=int, default=64)
    ap.add_argument("--long-seconds", type=float, default=0.5)
    ap.add_argument("--hostile-share", type=float, default=0.1,
                    help="Share of hostile requests in the mixed run (0 skips it).")
    ap.add_argument("--requests-per-client", type=int, default=5)
    ap.add_argument("--only-hostile", action="store_true",
                    help="Run only the hostile mix (with its 0 %% baseline).")
    args = ap.parse_args()
    if args.only_hostile:
        hostile_main(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp) / "bench.db", ALLOCATOR_WORKERS=str(args.workers),
                        ALLOCATOR_MAX_QUEUE=str(args.max_queue), ALLOCATOR_PLUGINS="",
                        ALLOCATOR_SYNC_TIME_LIMIT="5", ALLOCATOR_MAX_SYNC_WAITING="64").start()
        try:
            print("## API overhead vs in-process call (small snapshot: 3 agents, 8 tasks)\n")
            print("| solver  | path            | calls |  p50 ms  |  p99 ms  |")
            print("|---------|-----------------|------:|---------:|---------:|")
            for solver in ("greedy", "cpsat"):
                for row in overhead(server, args.calls, solver):
                    print(row)
            print(f"\n## {args.clients} concurrent clients x {args.jobs_per_client} jobs "
                  f"(workers={args.workers}, max_queue={args.max_queue})\n")
            print("| jobs | submitted | accepted | 429s | errors | succeeded | submit s | "
                  "all done s | jobs/s | GETs | GET p50 ms | GET p99 ms |")
            print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            scenarios = [
                ("short: cpsat 3x12, proven in ms",
                 {"snapshot": small_snapshot(12), "solver": "cpsat", "time_limit": 1}),
                (f"long: cpsat 3x16 deadlines, {args.long_seconds:g} s each",
                 {"snapshot": long_snapshot(), "solver": "cpsat",
                  "time_limit": args.long_seconds}),
            ]
            for name, body in scenarios:
                r = asyncio.run(load(server, args.clients, args.jobs_per_client, body))
                print(f"| {name} | {r['submitted']} | {r['accepted']} | {r['429']} | "
                      f"{r['errors']} | {r['succeeded']} | {r['submit_s']:.2f} | "
                      f"{r['total_s']:.2f} | {r['jobs_per_s']:.1f} | {r['get_n']} | "
                      f"{1000 * r['get_p50']:.1f} | {1000 * r['get_p99']:.1f} |")
        finally:
            server.stop()
    print("\n(p50/p99 by nearest rank; shared machine: compare rows within one run)")
    if args.hostile_share > 0:
        hostile_main(args)


def hostile_main(args: argparse.Namespace) -> None:
    hostile = hostile_requests()
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp) / "hostile.db", ALLOCATOR_WORKERS=str(args.workers),
                        ALLOCATOR_PLUGINS="tests.api.crashy_solver",
                        ALLOCATOR_SYNC_TIME_LIMIT="2", ALLOCATOR_MAX_SYNC_WAITING="64",
                        ALLOCATOR_MAX_BODY_BYTES=str(16 << 20), ALLOCATOR_MAX_AGENTS="2000",
                        ALLOCATOR_MAX_TASKS="50000").start()
        try:
            print(f"\n## {args.clients} clients x {args.requests_per_client} synchronous "
                  f"requests, small solves (cpsat 3x8) with hostile ones mixed in "
                  f"(workers={args.workers}, sync limit 2 s, max_sync_waiting=64)\n")
            print("| hostile share | requests | hostile | small ok | 429s | 503s (Retry-After) "
                  "| other 4xx | errors | small p50 ms | small p99 ms | peak RSS MiB | wall s |")
            print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for share in (0.0, args.hostile_share):
                r = asyncio.run(hostile_mix(server, args.clients, args.requests_per_client,
                                            share, hostile))
                print(f"| {share:.0%} | {args.clients * args.requests_per_client} | "
                      f"{r['hostile']} | {r['ok']} | {r['429']} | {r['503']} | {r['4xx']} | "
                      f"{r['errors']} | {1000 * r['p50']:.1f} | {1000 * r['p99']:.1f} | "
                      f"{r['peak_rss'] / 2**20:.0f} | {r['wall_s']:.1f} |")
        finally:
            server.stop()
    print("\n(errors = responses >= 500 other than 503 with Retry-After, and transport "
          "errors; the machine is shared: compare the two rows of one run)")


if __name__ == "__main__":
    main()
