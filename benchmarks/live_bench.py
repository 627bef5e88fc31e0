"""Live service benchmark: no-op tasks end to end, beside Ray tasks in the same run.

    .venv/bin/python benchmarks/live_bench.py [--tasks 20000] [--agents 8] [--batch 64]
                                              [--rate 1000] [--seconds 5] [--no-ray]

Two measurements per system, printed as one table with ratios (live / Ray):

1. Throughput: N no-op tasks submitted at once (batches of 1,000); tasks/s from
   the first submit to the last completion as the submitter sees it.
2. Dispatch latency: an open-loop stream at `--rate` tasks/s for `--seconds`
   (a batch every 10 ms); for each task, the time from the client's submit
   call to the moment an agent holds it (p50, p99). That is below saturation,
   so it measures the dispatch path, not a queue.

Live: a real `allocator serve` process (one uvicorn worker, SQLite in a temp
dir, every input group-committed to the event log) and `--agents` agent loops
of `allocator.client.run_agent` (threads of this process; batch pulls, results
riding on the next pull). Ray: `ray.init(num_cpus=2)` with its temp dir under
the same temp dir, a `@ray.remote` no-op function.

The machine is shared: compare rows of one run; record `uptime` with them.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from allocator.client import LiveClient, run_agent  # noqa: E402


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveRun:
    def __init__(self, tmp: Path, agents: int, batch: int) -> None:
        self.port = _port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT),
               "ALLOCATOR_DATABASE_URL": f"sqlite:///{tmp / 'live.db'}",
               "ALLOCATOR_LIVE_COORDINATE_EVERY": "0", "ALLOCATOR_LIVE_IMBALANCE": "0",
               "ALLOCATOR_MCP_HTTP": "false"}
        self.server = subprocess.Popen(
            [str(Path(sys.executable).parent / "allocator"), "serve", "--port", str(self.port),
             "--workers", "1", "--log-level", "warning"],
            env=env, cwd=ROOT, stdout=open(tmp / "server.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT, start_new_session=True)
        self.runs = 0
        deadline = time.monotonic() + 90
        while True:
            try:
                LiveClient(self.url, timeout=2).queues()
                break
            except (ConnectionError, OSError):
                if time.monotonic() > deadline or self.server.poll() is not None:
                    raise RuntimeError((tmp / "server.log").read_text()[-2000:]) from None
                time.sleep(0.2)
        self.recv: dict[str, float] = {}
        self.stop = threading.Event()
        self.threads = []
        recv = self.recv

        def noop(task: dict[str, Any]) -> str:
            recv[task["id"]] = time.time()
            return ""

        for i in range(agents):
            t = threading.Thread(target=run_agent, args=(self.url, f"bench-{i}"),
                                 kwargs={"runner": noop, "batch": batch, "stop": self.stop,
                                         "wait_s": 2.0}, daemon=True)
            t.start()
            self.threads.append(t)
        c = LiveClient(self.url)
        while len(c.agents()) < agents:
            time.sleep(0.05)
        self.client = c

    def done(self) -> int:
        return int(self.client.queues()["states"]["completed"])

    def throughput(self, n: int) -> float:
        base = self.done()
        self.runs += 1
        tasks = [{"id": f"thr{self.runs}-{i}", "payload": ""} for i in range(n)]
        t0 = time.perf_counter()
        self.client.submit(tasks, batch=1000)
        while self.done() < base + n:
            time.sleep(0.05)
        return n / (time.perf_counter() - t0)

    def latency(self, rate: float, seconds: float) -> list[float]:
        sent: dict[str, float] = {}
        per = max(1, round(rate / 100))
        k = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            ids = [f"lat-{k + j}" for j in range(per)]
            k += per
            now = time.time()
            self.client.submit([{"id": i} for i in ids])
            for i in ids:
                sent[i] = now
            nxt = t0 + (k / per) * 0.01
            delay = nxt - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        deadline = time.monotonic() + 30
        while any(i not in self.recv for i in sent) and time.monotonic() < deadline:
            time.sleep(0.01)
        missing = [i for i in sent if i not in self.recv]
        if missing:
            print(f"warning: {len(missing)} task(s) not started after 30 s, e.g. "
                  f"{self.client.task(missing[0])}; queues: {self.client.queues()['states']}")
        return [self.recv[i] - s for i, s in sent.items() if i in self.recv]

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(5)
        try:
            os.killpg(self.server.pid, signal.SIGINT)
            self.server.wait(15)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            os.killpg(self.server.pid, signal.SIGKILL)


def ray_run(tmp: Path, n: int, rate: float, seconds: float) -> tuple[float, list[float]]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(tmp / "ray"),
             log_to_driver=False, logging_level="ERROR")
    try:
        @ray.remote
        def noop() -> float:
            return time.time()

        ray.get([noop.remote() for _ in range(200)])  # warm the workers
        t0 = time.perf_counter()
        ray.get([noop.remote() for _ in range(n)])
        thr = n / (time.perf_counter() - t0)
        per = max(1, round(rate / 100))
        refs: list[tuple[float, Any]] = []
        k = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            now = time.time()
            refs += [(now, noop.remote()) for _ in range(per)]
            k += 1
            delay = t0 + k * 0.01 - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        starts = ray.get([r for _, r in refs])
        return thr, [s - t for (t, _), s in zip(refs, starts, strict=True)]
    finally:
        ray.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=20_000)
    ap.add_argument("--agents", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--no-ray", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="live-bench-") as d:
        tmp = Path(d)
        live = LiveRun(tmp, a.agents, a.batch)
        try:
            live.throughput(min(2000, a.tasks))  # warm-up
            thr = live.throughput(a.tasks)
            lat = live.latency(a.rate, a.seconds)
        finally:
            live.close()
        rows = [("live (allocator serve)", thr, lat)]
        if not a.no_ray:
            try:
                rthr, rlat = ray_run(tmp, a.tasks, a.rate, a.seconds)
                rows.append(("ray tasks", rthr, rlat))
            except ImportError:
                print("ray is not installed: no baseline row")
    print(f"\n{a.tasks} no-op tasks, {a.agents} agents (batch {a.batch}); latency at "
          f"{a.rate:g} tasks/s for {a.seconds:g} s; load: {os.getloadavg()[0]:.2f}")
    print(f"{'system':<24} {'tasks/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'n':>6}")
    for name, t, lat in rows:
        print(f"{name:<24} {t:>9.0f} {_pct(lat, 0.5) * 1e3:>8.2f} {_pct(lat, 0.99) * 1e3:>8.2f} "
              f"{len(lat):>6}")
    if rows[-1][0] == "ray tasks":
        (_, t1, l1), (_, t2, l2) = rows[0], rows[-1]
        print(f"{'ratio live / ray':<24} {t1 / t2:>9.2f} {_pct(l1, .5) / _pct(l2, .5):>8.2f} "
              f"{_pct(l1, .99) / _pct(l2, .99):>8.2f}")


if __name__ == "__main__":
    main()
