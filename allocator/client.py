"""A small client of the live service (docs/live.md): submit and wait, and an agent loop.

Standard library only (`http.client` on one keep-alive connection per
client), so agents start fast and need nothing beyond this package.

    from allocator.client import LiveClient, run_agent

    c = LiveClient("http://127.0.0.1:8000")
    c.submit_and_wait([{"id": "t1", "payload": "hello", "tenant": "a"}])

    run_agent("http://127.0.0.1:8000", "worker-1", lambda payload: payload.upper(),
              concurrency=4)

A callable gets the task's payload and returns the result text, or a
`(result, tokens)` pair to report usage; an exception fails the attempt
(retried by the service up to its retry limit).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from allocator.errors import AllocatorError

log = logging.getLogger(__name__)

FINAL = frozenset({"completed", "failed", "rejected", "cancelled"})


class LiveError(AllocatorError):
    """The service answered with an error (`status`, and its type, message and field)."""

    def __init__(self, status: int, message: str, *, type_: str = "error",
                 field: str | None = None) -> None:
        super().__init__(f"HTTP {status} {type_}: {message}", field=field)
        self.status = status
        self.type = type_


class LiveClient:
    """One keep-alive HTTP connection to the service. Not thread-safe: one per thread."""

    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = 75.0) -> None:
        u = urlsplit(url if "://" in url else f"http://{url}")
        if u.scheme not in ("http", "https") or not u.hostname:
            raise LiveError(0, f"not an http(s) URL: {url!r}", type_="invalid_input",
                            field="server")
        self.url = url
        self._https = u.scheme == "https"
        self._host = u.hostname
        self._port = u.port or (443 if self._https else 80)
        self._prefix = u.path.rstrip("/")
        self.timeout = timeout
        self._headers = {"content-type": "application/json", "accept": "application/json"}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> LiveClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """One call; JSON in and out. Network errors raise ConnectionError (retry later)."""
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        for attempt in (0, 1):
            if self._conn is None:
                cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
                self._conn = cls(self._host, self._port, timeout=self.timeout)
            try:
                self._conn.request(method, self._prefix + path, body=data, headers=self._headers)
                resp = self._conn.getresponse()
                raw = resp.read()
            except (OSError, http.client.HTTPException) as e:
                self.close()
                # A kept-alive connection the server closed: try once on a fresh one.
                if attempt == 0 and isinstance(e, http.client.RemoteDisconnected | BrokenPipeError
                                               | ConnectionResetError):
                    continue
                raise ConnectionError(f"{method} {self.url}{path}: {e}") from e
            if resp.status >= 400:
                try:
                    err = json.loads(raw)
                    raise LiveError(resp.status, str(err.get("message")),
                                    type_=str(err.get("type")), field=err.get("field"))
                except (ValueError, AttributeError):
                    raise LiveError(resp.status, raw[:200].decode(errors="replace")) from None
            return json.loads(raw) if raw else None
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ clients

    def submit(self, tasks: Iterable[dict[str, Any]], *, batch: int = 1000
               ) -> list[dict[str, Any]]:
        """Submit tasks (in batches); per task its id, admission state and reason."""
        out: list[dict[str, Any]] = []
        buf: list[dict[str, Any]] = []
        for t in tasks:
            buf.append(t)
            if len(buf) >= batch:
                out += self.request("POST", "/v1/tasks", {"tasks": buf})["tasks"]
                buf = []
        if buf:
            out += self.request("POST", "/v1/tasks", {"tasks": buf})["tasks"]
        return out

    def task(self, task_id: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/tasks/{task_id}")  # type: ignore[no-any-return]

    def tasks(self, *, state: str | None = None, page: int = 10_000) -> list[dict[str, Any]]:
        """Every task (one JSON object each: id, state, attempts, agent ...), paged."""
        out: list[dict[str, Any]] = []
        while True:
            q = f"?limit={page}&offset={len(out)}" + (f"&state={state}" if state else "")
            got = self.request("GET", "/v1/tasks" + q)
            out += got["tasks"]
            if len(out) >= got["total"] or not got["tasks"]:
                return out

    def agents(self) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/agents")["agents"]  # type: ignore[no-any-return]

    def queues(self) -> dict[str, Any]:
        return self.request("GET", "/v1/queues")  # type: ignore[no-any-return]

    def cancel(self, task_id: str) -> dict[str, Any]:
        return self.request("DELETE", f"/v1/tasks/{task_id}")  # type: ignore[no-any-return]

    def wait(self, ids: Iterable[str], *, timeout: float = 60.0, poll: float = 0.2
             ) -> dict[str, dict[str, Any]]:
        """Until every task is final (completed, failed, rejected, cancelled); their views."""
        left = set(ids)
        done: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while left:
            for t in self.tasks():
                if t["id"] in left and t["state"] in FINAL:
                    left.discard(t["id"])
                    done[t["id"]] = t
            if not left:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(left)} task(s) not finished after {timeout}s")
            time.sleep(poll)
        return done

    def submit_and_wait(self, tasks: Iterable[dict[str, Any]], *, timeout: float = 60.0
                        ) -> dict[str, dict[str, Any]]:
        """Submit, then wait for every accepted task to finish (with its result)."""
        got = self.submit(tasks)
        ids = [t["id"] for t in got]
        self.wait(ids, timeout=timeout)
        return {i: self.task(i) for i in ids}

    # ------------------------------------------------------------------ agents

    def register(self, agent: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", "/v1/agents", agent)  # type: ignore[no-any-return]

    def heartbeat(self, agent_id: str, *, draining: bool = False) -> dict[str, Any]:
        return self.request("POST", f"/v1/agents/{agent_id}/heartbeat",  # type: ignore[no-any-return]
                            {"status": "draining" if draining else "up"})

    def pull(self, agent_id: str, *, max: int = 1, wait: float = 10.0,
             acks: list[dict[str, Any]] | None = None,
             held: list[tuple[str, int]] | None = None) -> dict[str, Any]:
        """Acknowledge `acks` and long-poll; `held` (what runs here) lets the service
        offer again a lease whose answer this agent never got."""
        body: dict[str, Any] = {"max": max, "wait": wait}
        if acks:
            body["acks"] = acks
        if held is not None:
            body["held"] = held
        return self.request("POST", f"/v1/agents/{agent_id}/pull", body)  # type: ignore[no-any-return]

    def complete(self, task_id: str, attempt: int, **fields: Any) -> dict[str, Any]:
        return self.request("POST", f"/v1/tasks/{task_id}/complete",  # type: ignore[no-any-return]
                            {"attempt": attempt, **fields})


# ---------------------------------------------------------------------------- agent loop

#: Answers that say "not now" rather than "no": the agent waits and tries again, as it
#: does when the connection drops (a proxy before a restarting server says 502/503/504).
TRANSIENT = frozenset({429, 502, 503, 504})

#: What a task runner returns: the result text, or (result, tokens used).
Result = str | tuple[str, float | None]
Runner = Callable[[dict[str, Any]], Result]


@dataclass
class AgentStats:
    """What an agent loop did (returned when it stops)."""

    ran: int = 0
    ok: int = 0
    errors: int = 0
    late: int = 0
    duplicates: int = 0
    reconnects: int = 0
    start_latency: list[float] = field(default_factory=list)


def _ack(task: dict[str, Any], run: Runner) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        got = run(task)
    except Exception as e:  # the task's failure, reported to the service
        return {"task": task["id"], "attempt": task["attempt"], "outcome": "error",
                "error": f"{type(e).__name__}: {e}"[:2000],
                "duration": time.perf_counter() - t0}
    result, tokens = got if isinstance(got, tuple) else (got, None)
    ack: dict[str, Any] = {"task": task["id"], "attempt": task["attempt"],
                           "duration": time.perf_counter() - t0}
    if result is not None:
        ack["result"] = result
    if tokens is not None:
        ack["tokens"] = tokens
    return _checked(ack)


def _checked(ack: dict[str, Any]) -> dict[str, Any]:
    """The ack, or a failed attempt naming the field the service would refuse.

    One refused ack (an infinite token count, a result over MAX_PAYLOAD) makes
    the service answer 422 to the whole pull carrying it, which stopped the agent
    and, once the lease expired, every agent that ran the task next.
    """
    from pydantic import ValidationError

    from models.live import Ack

    try:
        Ack.model_validate(ack)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        return {"task": ack["task"], "attempt": ack["attempt"], "outcome": "error",
                "error": f"the task's {where} is not one the service takes: "
                         f"{err['msg']}"[:2000],
                "duration": ack["duration"]}
    return ack


def _size(x: Any) -> int:
    return len(json.dumps(x, separators=(",", ":")).encode())


def _too_big(ack: dict[str, Any], room: int) -> dict[str, Any]:
    """An ack no request under the body limit can carry, as a failed attempt saying why."""
    return {"task": ack["task"], "attempt": ack["attempt"], "outcome": "error",
            "retryable": False, "duration": ack.get("duration", 0.0),
            "error": f"the task's result ({_size(ack)} bytes as JSON) does not fit in a "
                     f"request to the service (its body limit leaves {room} bytes)"}


def _take(acks: list[dict[str, Any]], room: int | None
          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(acks for one request, the rest): at most `room` bytes of acks, MAX_BATCH of them.

    One request carrying every finished result was refused 413 as a whole once they
    passed the service's (or a proxy's) body limit, and the agent stopped with them.
    """
    from models.live import MAX_BATCH

    if room is None:
        return acks[:MAX_BATCH], acks[MAX_BATCH:]
    out: list[dict[str, Any]] = []
    used = 0
    for i, ack in enumerate(acks):
        n = _size(ack) + 1
        if n > room:
            ack = _too_big(ack, room)
            n = _size(ack) + 1
        if out and (used + n > room or len(out) >= MAX_BATCH):
            return out, acks[i:]
        out.append(ack)
        used += n
    return out, []


def run_agent(url: str, agent_id: str, fn: Callable[[str], Result] | None = None, *,
              runner: Runner | None = None, concurrency: int = 1, batch: int = 1,
              agent: dict[str, Any] | None = None, api_key: str | None = None,
              stop: threading.Event | None = None, wait_s: float = 5.0,
              max_tasks: int | None = None, on_cancel: Callable[[str, int], None] | None = None,
              record_latency: bool = False) -> AgentStats:
    """Register and serve tasks until `stop` is set (or `max_tasks` ran).

    `fn(payload)` (or `runner(task)`, which sees the whole task) runs each
    task. `concurrency` > 1 runs that many at once in threads; otherwise up to
    `batch` tasks are pulled at a time and run in order (cheap tasks: one
    round trip per batch, their results ride on the next pull). The loop
    survives server restarts (it reconnects and resends unacknowledged
    results) and skips a task it already holds if the service offers it twice.
    """
    if runner is None:
        if fn is None:
            raise ValueError("give fn (payload -> result) or runner (task -> result)")
        f = fn

        def runner(task: dict[str, Any]) -> Result:
            return f(task["payload"])

    run: Runner = runner
    stop = stop or threading.Event()
    slots = max(concurrency, batch)
    spec = {"id": agent_id, **(agent or {}), "concurrency": slots}
    c = LiveClient(url, api_key=api_key)
    stats = AgentStats()
    lock = threading.Lock()
    acks: list[dict[str, Any]] = []
    running: dict[tuple[str, int], Future[dict[str, Any]]] = {}
    recent: deque[tuple[str, int]] = deque(maxlen=4 * slots + 64)
    recent_set: set[tuple[str, int]] = set()
    pool = ThreadPoolExecutor(concurrency, thread_name_prefix=f"agent-{agent_id}") \
        if concurrency > 1 else None
    lease = [30.0]
    #: The largest request body the service takes (it says at registration; a proxy's
    #: smaller one is learnt from a 413). None: not known, send as many acks as fit MAX_BATCH.
    body_limit: list[int | None] = [None]

    def room(held: list[tuple[str, int]]) -> int | None:
        """Bytes left for acks in a pull carrying `held` (None: no known limit)."""
        if body_limit[0] is None:
            return None
        # (128: the body's keys, `max` and `wait`)
        return max(body_limit[0] - _size(held) - 128, 256)

    def remember(key: tuple[str, int]) -> None:
        if len(recent) == recent.maxlen:
            recent_set.discard(recent[0])
        recent.append(key)
        recent_set.add(key)

    def connect() -> None:
        back = 0.05
        while not stop.is_set():
            try:
                got = c.register(spec)
                lease[0] = float(got.get("lease_s", lease[0]))
                if isinstance(got.get("max_body_bytes"), int) and got["max_body_bytes"] > 0:
                    body_limit[0] = min(got["max_body_bytes"], body_limit[0] or 1 << 62)
                return
            except ConnectionError:
                stats.reconnects += 1
                stop.wait(back)
                back = min(back * 2, 1.0)
            except LiveError as e:
                if e.status not in TRANSIENT:
                    raise
                stats.reconnects += 1
                stop.wait(back)
                back = min(back * 2, 1.0)

    def beat() -> None:
        hb = LiveClient(url, api_key=api_key)
        while not stop.wait(lease[0] / 3):
            try:
                got = hb.heartbeat(agent_id)
                lease[0] = float(got.get("lease_s", lease[0]))
                for x in got.get("cancel", ()):
                    if on_cancel is not None:
                        on_cancel(x["task"], x["attempt"])
            except (ConnectionError, LiveError):
                continue
        hb.close()

    def add(ack: dict[str, Any]) -> None:
        if ack.get("outcome") == "error":
            stats.errors += 1
        else:
            stats.ok += 1
        acks.append(ack)

    def finished(fut: Future[dict[str, Any]], key: tuple[str, int]) -> None:
        ack = fut.result()
        with lock:
            running.pop(key, None)
            add(ack)

    connect()
    hb_thread = threading.Thread(target=beat, name=f"heartbeat-{agent_id}", daemon=True)
    hb_thread.start()
    try:
        while not stop.is_set():
            if max_tasks is not None and stats.ran >= max_tasks and not running:
                with lock:
                    if not acks:
                        break
            with lock:
                busy = len(running)
                # Finished but not yet acknowledged is held too: acks split over several
                # pulls, the service would offer the later ones' tasks again.
                held = [*running, *((a["task"], a["attempt"]) for a in acks)]
                send, acks[:] = _take(acks, room(held))
            free = slots - busy
            if free <= 0 and not send:
                wait(list(running.values()), timeout=wait_s, return_when=FIRST_COMPLETED)
                continue
            if max_tasks is not None:
                free = min(free, max(max_tasks - stats.ran, 0))
            if free <= 0:  # (acks free their slots, so this is the max_tasks case)
                with lock:
                    acks[:0] = send
                if not running:
                    break
                wait(list(running.values()), timeout=wait_s, return_when=FIRST_COMPLETED)
                continue
            try:
                got = c.pull(agent_id, max=free, wait=0 if acks else 0.2 if busy else wait_s,
                             acks=send, held=held)
            except ConnectionError:
                with lock:
                    acks[:0] = send
                stats.reconnects += 1
                stop.wait(0.1)
                continue
            except LiveError as e:
                with lock:
                    acks[:0] = send
                if e.status == 404:
                    connect()
                    continue
                if e.status == 413 and send:  # a smaller limit (a proxy's): learn it, split
                    body_limit[0] = _size({"acks": send, "held": held}) // 2
                    continue
                if e.status in TRANSIENT:  # a proxy before a restarting server, overload
                    stats.reconnects += 1
                    stop.wait(0.5)
                    continue
                raise
            stats.late += got.get("acks", {}).get("late", 0)
            for x in got.get("cancel", ()):
                if on_cancel is not None:
                    on_cancel(x["task"], x["attempt"])
            now = time.time()
            for task in got["tasks"]:
                key = (task["id"], task["attempt"])
                if key in running or key in recent_set:
                    stats.duplicates += 1
                    continue
                remember(key)
                stats.ran += 1
                if record_latency:
                    stats.start_latency.append(now - task["submitted_at"])
                if pool is None:
                    ack = _ack(task, run)
                    with lock:
                        add(ack)
                else:
                    fut = pool.submit(_ack, task, run)
                    with lock:
                        running[key] = fut
                    fut.add_done_callback(lambda f, k=key: finished(f, k))  # type: ignore[misc]
        # Stopping: report what finished (best effort).
        if pool is not None:
            pool.shutdown(wait=True)
        # One completion each, not a pull: a pull leases (max >= 1), and a task leased
        # now would never run here; it failed at the lease's expiry, never started.
        with lock:
            left = list(acks)
        for ack in left:
            with contextlib.suppress(ConnectionError, LiveError):
                (ack,), _ = _take([ack], room([]))
                body = {k: v for k, v in ack.items() if k != "task"}
                c.request("POST", f"/v1/tasks/{ack['task']}/complete", body)
    finally:
        stop.set()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        c.close()
    return stats


__all__ = ["AgentStats", "LiveClient", "LiveError", "run_agent"]
