"""LiveService on asyncio: long-poll wake-ups, re-solves installed as plans, durable writes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from allocator.live.coordinator import LiveOptions
from allocator.live.service import LiveService, ResolveOptions
from allocator.live.store import LiveStore


@pytest.mark.anyio
async def test_a_waiting_pull_wakes_on_submit() -> None:
    svc = LiveService(None, resolve=ResolveOptions(every=None, imbalance=None))
    await svc.start()
    try:
        await svc.register({"id": "a", "concurrency": 4})
        pull = asyncio.create_task(svc.pull("a", limit=4, wait=5.0))
        await asyncio.sleep(0.05)
        assert not pull.done()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await svc.submit([{"id": "t1", "payload": "x"}])
        got = await asyncio.wait_for(pull, 2.0)
        assert [t["id"] for t in got["tasks"]] == ["t1"]
        assert loop.time() - t0 < 1.0
    finally:
        await svc.close()


@pytest.mark.anyio
async def test_the_coordinator_loop_re_solves_and_installs_plans(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    svc = LiveService(url, LiveOptions(lease_s=30),
                      resolve=ResolveOptions(every=0.2, imbalance=None, min_interval=0.1,
                                             solver="greedy", time_limit=0.2))
    await svc.start()
    try:
        await svc.register({"id": "slow", "concurrency": 1, "speed": 1.0})
        await svc.register({"id": "fast", "concurrency": 1, "speed": 4.0})
        await svc.submit([{"id": f"t{i}", "work": 1.0 + i % 3} for i in range(30)])
        deadline = asyncio.get_running_loop().time() + 10
        while svc.solves == 0 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        assert svc.solves >= 1 and svc.c.stats["plans"] >= 1
        # Work every task off; each ends exactly once whatever the plans moved.
        held: dict[str, list[dict[str, object]]] = {"slow": [], "fast": []}
        for _ in range(200):
            for a in ("slow", "fast"):
                got = await svc.pull(a, limit=1, wait=0, acks=held[a])
                held[a] = [{"task": t["id"], "attempt": t["attempt"]} for t in got["tasks"]]
            if svc.c.counts["completed"] == 30:
                break
        views = [svc.c.task_view(f"t{i}") for i in range(30)]
        assert all(v["state"] == "completed" and v["completions"] == 1 for v in views), \
            [v["state"] for v in views]
        seq = svc.c.seq
    finally:
        await svc.close()
    # Everything acknowledged is in the log, plans included.
    store = LiveStore(url)
    try:
        assert store.last_seq() == seq
        kinds = {k for rows in store.rows() for _, _, _, body in rows
                 for k in ([x[0] for x in __import__("json").loads(body)])}
        assert {"join", "submit", "lease", "complete", "plan"} <= kinds
    finally:
        store.close()
