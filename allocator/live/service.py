"""The live coordinator on asyncio: long-poll pulls, group commits, leases, re-solves.

`LiveService` owns one :class:`LiveCoordinator` (the core and the records,
touched only from the event loop) and four background loops:

- the *flusher* writes the coordinator's pending log rows to the store in one
  transaction per batch (whatever accumulated while the previous write ran:
  group commit) and wakes the requests waiting for their rows to be durable;
- the *clock* loop fires the core's timers and expires the leases of agents
  not heard from within `lease_s`;
- the *re-solver* asks `allocator.online.coordinator.Coordinator` whether a
  re-solve is due (every `coordinate_every` seconds, or when the imbalance of
  the agents' loads passes its threshold), snapshots the core on the loop,
  solves in a thread and installs the plan (logged like any input).

Requests that change state answer only once their rows are durable, so an
acknowledged submit or completion survives a crash; pulls need not wait for
their lease rows (an agent that gets a task twice runs the attempt it already
has once: at-least-once delivery, exactly-once accounting).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from allocator.clock import WallClock
from allocator.live.coordinator import Delivery, LiveCoordinator, LiveOptions
from allocator.live.store import LiveStore

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ResolveOptions:
    """The periodic / imbalance re-solve (allocator.online.coordinator.Coordinator)."""

    every: float | None = 30.0
    imbalance: float | None = 0.5
    min_interval: float = 5.0
    solver: str = "greedy"
    time_limit: float = 1.0


class LiveService:
    """The live coordinator behind an event loop (see the module docstring)."""

    def __init__(self, database_url: str | None, options: LiveOptions | None = None, *,
                 resolve: ResolveOptions | None = None, tick_s: float = 0.05) -> None:
        self.url = database_url
        self.options = options or LiveOptions()
        self.resolve = resolve if resolve is not None else ResolveOptions()
        self.tick_s = tick_s
        self.store: LiveStore | None = None
        self.coord: LiveCoordinator | None = None
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-log")
        self._loops: list[asyncio.Task[Any]] = []
        self._dirty = asyncio.Event()
        self._durable = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._pulls: dict[str, list[asyncio.Future[None]]] = {}
        self._flush_error: BaseException | None = None
        self.solves = 0
        self.closed = False

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Open the log, replay it into a fresh core, start the loops."""
        loop = asyncio.get_running_loop()
        epoch = time.time()
        batches: list[Any] = []
        if self.url is not None:
            self.store = store = await loop.run_in_executor(self._db, LiveStore, self.url)
            epoch = await loop.run_in_executor(self._db, store.epoch)
        coord = LiveCoordinator(self.options, clock=WallClock(epoch), epoch=epoch)
        if self.store is not None:
            t0 = time.perf_counter()
            batches = await loop.run_in_executor(self._db, lambda: list(self.store.rows()))  # type: ignore[union-attr]
            n = coord.recover(batches)
            if n:
                log.info("live: replayed %d event(s) in %.2fs; %d task(s) live", n,
                         time.perf_counter() - t0, len(coord.core.tasks))
        self._durable = coord.seq
        coord.on_work = self._wake
        coord.on_log = self._dirty.set
        self.coord = coord
        self._loops = [asyncio.create_task(self._flusher()), asyncio.create_task(self._clock()),
                       asyncio.create_task(self._resolver())]

    async def close(self) -> None:
        """Stop the loops after a last flush (nothing acknowledged is lost)."""
        if self.closed:
            return
        self.closed = True
        for t in self._loops:
            t.cancel()
        for t in self._loops:
            with contextlib.suppress(BaseException):
                await t
        if self.coord is not None and self.store is not None:
            rows = self.coord.drain_rows()
            with contextlib.suppress(Exception):
                await asyncio.get_running_loop().run_in_executor(self._db, self.store.append,
                                                                 rows)
        for fs in self._pulls.values():
            for f in fs:
                if not f.done():
                    f.set_result(None)
        if self.store is not None:
            self.store.close()
        self._db.shutdown(wait=False)

    @property
    def c(self) -> LiveCoordinator:
        assert self.coord is not None, "live service not started"
        return self.coord

    # ------------------------------------------------------------------ durability

    async def _flusher(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            rows = self.c.drain_rows()
            if not rows:
                continue
            if self.store is not None:
                while True:
                    try:
                        await loop.run_in_executor(self._db, self.store.append, rows)
                        break
                    except Exception as e:  # keep the rows; try again (database blip)
                        log.exception("live: writing %d event(s) failed; retrying", len(rows))
                        self._flush_error = e
                        await asyncio.sleep(0.5)
                self._flush_error = None
            self._durable = rows[-1][0]
            keep = []
            for seq, fut in self._waiters:
                if seq <= self._durable:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    keep.append((seq, fut))
            self._waiters = keep

    async def durable(self) -> None:
        """Until every input recorded so far is in the store."""
        seq = self.c.seq
        if seq <= self._durable:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((seq, fut))
        self._dirty.set()
        await fut

    # ------------------------------------------------------------------ loops

    async def _clock(self) -> None:
        lease_every = min(1.0, self.options.lease_s / 4)
        last = 0.0
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                c = self.c
                c.tick()
                now = time.monotonic()
                if now - last >= lease_every:
                    last = now
                    dead = c.expire()
                    if dead:
                        log.warning("live: lease expired for agent(s) %s", ", ".join(dead))
            except Exception:  # pragma: no cover - a bug must not stop the clock
                log.exception("live: clock loop")

    async def _resolver(self) -> None:
        r = self.resolve
        if not r.every and r.imbalance is None:
            return
        from allocator.online.coordinator import Coordinator

        co = Coordinator(self.c.core, every=r.every, imbalance=r.imbalance,
                         min_interval=r.min_interval, solver=r.solver, time_limit=r.time_limit)
        while True:
            await asyncio.sleep(max(min(r.min_interval, 1.0), 0.05))
            try:
                now = self.c.core.now
                if not co.due(now) or not self.c.core.queued():
                    continue
                co.last_solve = now
                snap = co.hedge(self.c.core.snapshot(weights=co.weights))
                plan = await asyncio.to_thread(
                    co._solve, snap, solver=co.solver, time_limit=co.time_limit,
                    previous=co.last_plan, stability=co.stability, seed=co.seed,
                    deterministic=True)
                co.last_plan = plan
                self.c.install(plan)
                self.solves += 1
            except Exception:
                log.exception("live: re-solve failed")

    # ------------------------------------------------------------------ pulls

    def _wake(self, agent_id: str) -> None:
        fs = self._pulls.pop(agent_id, None)
        if fs:
            for f in fs:
                if not f.done():
                    f.set_result(None)

    async def pull(self, agent_id: str, *, limit: int, wait: float,
                   acks: list[dict[str, Any]] | None = None,
                   held: list[tuple[str, int]] | None = None) -> dict[str, Any]:
        """Acknowledge `acks`, then lease up to `limit` tasks, waiting up to `wait` s for one.

        With `held` (what the agent runs), leases it does not hold are offered again.
        """
        c = self.c
        acked: list[dict[str, Any]] = []
        if acks:
            c._agent(agent_id)
            acked = c.complete_many(acks)
        if held is not None:
            c.reconcile(agent_id, [*held, *((a["task"], a["attempt"]) for a in acks or ())])
        got: list[Delivery] = c.take(agent_id, limit)
        wait = min(wait, self.options.lease_s / 2)
        if not got and wait > 0:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._pulls.setdefault(agent_id, []).append(fut)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fut, wait)
            fs = self._pulls.get(agent_id)
            if fs and fut in fs:
                fs.remove(fut)
            if not self.closed:
                got = c.take(agent_id, limit)
        if acks:
            await self.durable()
        return {"tasks": [_delivery(d) for d in got], "cancel": c.cancels(agent_id),
                "acks": {"accepted": sum(1 for a in acked if a["accepted"]),
                         "late": sum(1 for a in acked if not a["accepted"])}}

    # ------------------------------------------------------------------ state changes

    async def submit(self, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = self.c.submit(tasks)
        await self.durable()
        return out

    async def register(self, body: dict[str, Any]) -> dict[str, Any]:
        out = self.c.register(body)
        await self.durable()
        return out

    async def heartbeat(self, agent_id: str, *, draining: bool = False) -> dict[str, Any]:
        out = self.c.heartbeat(agent_id, draining=draining)
        await self.durable()
        return out

    async def leave(self, agent_id: str) -> dict[str, Any]:
        out = self.c.leave(agent_id)
        await self.durable()
        return out

    async def complete(self, task_id: str, body: dict[str, Any]) -> dict[str, Any]:
        out = self.c.complete(task_id, body)
        await self.durable()
        return out

    async def cancel(self, task_id: str) -> dict[str, Any]:
        out = self.c.cancel(task_id)
        await self.durable()
        return out


def _delivery(d: Delivery) -> dict[str, Any]:
    return {"id": d.id, "attempt": d.attempt, "payload": d.payload, "priority": d.priority,
            "tenant": d.tenant, "work": d.work, "kind": d.kind, "timeout": d.timeout,
            "submitted_at": round(d.submitted, 6),
            "deadline_at": round(d.deadline, 6) if d.deadline is not None else None}


__all__ = ["LiveService", "ResolveOptions", "WallClock"]
