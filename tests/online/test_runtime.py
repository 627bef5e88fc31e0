"""The asyncio runtime with real coroutines and threads (short sleeps only)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from allocator.errors import AllocatorError, InvalidInputError
from allocator.online import Code
from allocator.online.events import AgentJoined, RateLimit, TaskSpec
from allocator.online.runtime import Reported, Runtime, TaskFailedError, TaskRejectedError
from models import Agent, Priority


def _run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, timeout=20))


def test_coroutines_and_threads_run_with_results_and_concurrency_limits() -> None:
    active = 0
    peak = 0
    lock = threading.Lock()

    def blocking(x: int) -> int:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.01)
        with lock:
            active -= 1
        return x + 1

    async def coro(x: int) -> int:
        await asyncio.sleep(0.005)
        return x * 2

    async def main() -> tuple[list[int], list[int]]:
        async with Runtime([Agent(id="a", concurrency=2), Agent(id="b", concurrency=1)],
                           "edf+stealing") as rt:
            fa = [rt.submit(coro, i, priority=Priority.HIGH) for i in range(20)]
            fb = [rt.submit(blocking, i, home="a") for i in range(12)]
            return list(await asyncio.gather(*fa)), list(await asyncio.gather(*fb))

    a, b = _run(main())
    assert a == [2 * i for i in range(20)] and b == [i + 1 for i in range(12)]
    assert peak <= 3  # 2 + 1 slots


def test_failures_are_retried_then_reported_with_the_cause() -> None:
    calls = {"n": 0}

    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ValueError(f"boom {calls['n']}")
        return "ok"

    def broken() -> None:
        raise KeyError("never")

    async def main() -> None:
        async with Runtime([Agent(id="a"), Agent(id="b")], "fifo", max_retries=2) as rt:
            assert await rt.submit(flaky) == "ok"
            with pytest.raises(TaskFailedError) as e:
                await rt.submit(broken)
            assert e.value.code is Code.RETRIES_EXHAUSTED
            assert isinstance(e.value.__cause__, KeyError)

    _run(main())


def test_timeout_cancels_a_coroutine() -> None:
    cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def main() -> None:
        async with Runtime([Agent(id="a")], "fifo") as rt:
            with pytest.raises(TaskFailedError) as e:
                await rt.submit(slow, timeout=0.05, max_retries=0)
            assert e.value.code is Code.TIMEOUT
            await asyncio.wait_for(cancelled.wait(), 1)

    _run(main())


def test_submitter_cancellation_ends_the_task() -> None:
    async def main() -> None:
        async with Runtime([Agent(id="a")], "fifo") as rt:
            f1 = rt.submit(asyncio.sleep, 5)
            f2 = rt.submit(asyncio.sleep, 5, id="queued")
            await asyncio.sleep(0.01)
            f1.cancel()
            f2.cancel()
            await asyncio.sleep(0.01)
            assert rt.core.outcome("queued")[1] == "cancelled"  # type: ignore[index]

    _run(main())


def test_shutdown_returns_queued_tasks_and_lets_running_finish() -> None:
    async def job(x: int) -> int:
        await asyncio.sleep(0.03)
        return x

    async def main() -> None:
        rt = Runtime([Agent(id="a")], "fifo")
        futs = [rt.submit(job, i, id=f"j{i}") for i in range(4)]
        await asyncio.sleep(0.01)
        returned = await rt.shutdown(drain=False)
        assert returned == ["j1", "j2", "j3"]
        assert futs[0].result() == 0
        for f in futs[1:]:
            assert isinstance(f.exception(), TaskRejectedError)
        with pytest.raises(TaskRejectedError, match="shutting down"):
            await rt.submit(job, 9)

    _run(main())


def test_reported_usage_reaches_the_agent_metrics() -> None:
    async def call() -> Reported:
        return Reported("answer", {"tokens": 123})

    async def main() -> None:
        async with Runtime([Agent(id="llm")], "fifo") as rt:
            assert await rt.submit(call, tokens=100) == "answer"
            assert rt.core.agents["llm"].tokens_used == 123

    _run(main())


def test_agent_failure_mid_task_retries_elsewhere() -> None:
    async def job() -> str:
        await asyncio.sleep(0.05)
        return "done"

    async def main() -> None:
        async with Runtime([Agent(id="a"), Agent(id="b")], "round-robin") as rt:
            f = rt.submit(job, id="x")
            await asyncio.sleep(0.01)
            rt.fail_agent("a")
            assert await f == "done"
            kinds = [line.split()[2] for line in rt.core.history("x").splitlines()]
            assert kinds.count("Dispatch") == 2 and "Retry" in kinds

    _run(main())


def test_blocking_calls_on_fewer_threads_than_slots_all_run_once() -> None:
    """Worker threads chain calls without starving queued ones (2 threads, 6 slots)."""
    seen: list[int] = []
    lock = threading.Lock()

    def job(i: int) -> int:
        with lock:
            seen.append(i)
        if i % 7 == 0:
            time.sleep(0.002)  # some calls really block: other workers must pick up
        if i % 11 == 0:
            raise ValueError(i)
        return i

    async def main() -> list[object]:
        agents = [Agent(id=f"a{k}", concurrency=2) for k in range(3)]
        async with Runtime(agents, "priority+stealing", threads=2, max_retries=0) as rt:
            futs = [rt.submit(job, i, priority=list(Priority)[i % 4], home=f"a{i % 3}")
                    for i in range(300)]
            return list(await asyncio.gather(*futs, return_exceptions=True))

    out = _run(main())
    assert sorted(seen) == list(range(300))  # each call ran exactly once
    for i, r in enumerate(out):
        if i % 11 == 0:
            assert isinstance(r, TaskFailedError) and isinstance(r.__cause__, ValueError)
        else:
            assert r == i


def test_blocking_reports_are_not_lost_while_an_outside_thread_holds_the_lock() -> None:
    """Workers leave their reports to the lock's holder; a holder from outside
    (as the coordinator's snapshot) does not take them, and they still arrive."""
    async def main() -> list[int]:
        async with Runtime([Agent(id=f"a{k}", concurrency=2) for k in range(4)],
                           "priority+stealing", max_retries=0) as rt:
            started = threading.Event()

            def hold() -> None:
                for _ in range(5):
                    with rt.lock:
                        started.set()
                        time.sleep(0.01)  # calls finish meanwhile and queue their reports
                    time.sleep(0.001)

            holder = threading.Thread(target=hold)
            futs = [rt.submit(lambda i=i: i, priority=list(Priority)[i % 4], home=f"a{i % 4}")
                    for i in range(400)]
            holder.start()
            await asyncio.to_thread(started.wait, 5)
            out = list(await asyncio.gather(*futs))
            holder.join()
            assert rt.core.metrics.completed == 400 and not rt._reports
            return out

    assert _run(main()) == list(range(400))


def test_worker_threads_exit_after_shutdown() -> None:
    async def main() -> Runtime:
        rt = Runtime([Agent(id="a", concurrency=3)], "fifo")
        assert await asyncio.gather(*[rt.submit(time.sleep, 0.001) for _ in range(9)])
        await rt.shutdown()
        return rt

    rt = _run(main())
    assert 1 <= len(rt._threads) <= 3
    for th in rt._threads:
        th.join(timeout=2)
        assert not th.is_alive()


def test_a_timed_out_blocking_call_is_abandoned_and_its_late_result_ignored() -> None:
    release = threading.Event()

    def stuck() -> str:
        release.wait(5)
        return "late"

    def quick(x: int) -> int:
        return x

    async def main() -> None:
        async with Runtime([Agent(id="a", concurrency=2)], "fifo", threads=3) as rt:
            f = rt.submit(stuck, id="stuck", timeout=0.05, max_retries=0)
            with pytest.raises(TaskFailedError) as e:
                await f
            assert e.value.code is Code.TIMEOUT
            # The slot is free again while the stuck thread still runs.
            assert await asyncio.gather(*[rt.submit(quick, i) for i in range(20)]) == list(
                range(20))
            release.set()
            await asyncio.sleep(0.05)  # the late result arrives and is dropped
            assert rt.core.outcome("stuck")[1] == "timeout"  # type: ignore[index]
            assert rt.core.metrics.completed == 20

    _run(main())


def test_cancelling_a_queued_blocking_call_means_it_never_runs() -> None:
    ran: list[str] = []
    gate = threading.Event()

    def first() -> None:
        gate.wait(5)

    def second() -> None:
        ran.append("second")

    async def main() -> None:
        async with Runtime([Agent(id="a")], "fifo") as rt:
            f1 = rt.submit(first)
            f2 = rt.submit(second, id="second")
            await asyncio.sleep(0.02)
            assert f2.cancel()
            gate.set()
            await f1
            await asyncio.sleep(0.02)
            assert rt.core.outcome("second")[1] == "cancelled"  # type: ignore[index]

    _run(main())
    assert ran == []


def test_failing_an_agent_mid_call_retries_a_blocking_call_elsewhere_once() -> None:
    calls: list[str] = []
    lock = threading.Lock()
    gate = threading.Event()
    started = threading.Event()

    def job() -> str:
        with lock:
            calls.append(threading.current_thread().name)
            n = len(calls)
        if n == 1:
            started.set()
            gate.wait(5)  # the first attempt hangs until its agent is declared dead
            return "stale"
        return "fresh"

    async def main() -> None:
        async with Runtime([Agent(id="a"), Agent(id="b")], "round-robin") as rt:
            f = rt.submit(job, id="x")
            while not started.is_set():  # the first attempt is running in its thread
                await asyncio.sleep(0.005)
            first = rt.core.tasks["x"].agent
            assert first is not None
            rt.fail_agent(first.id)
            assert await f == "fresh"
            gate.set()
            await asyncio.sleep(0.05)
            kinds = [line.split()[2] for line in rt.core.history("x").splitlines()]
            assert kinds.count("Dispatch") == 2 and kinds.count("Complete") == 1

    _run(main())
    assert len(calls) == 2


def test_blocking_completions_that_free_a_slot_start_coroutines_on_the_loop() -> None:
    """A worker thread's report can dispatch a coroutine: it must start on the loop."""
    loops: list[object] = []

    def blocking(i: int) -> int:
        time.sleep(0.001)
        return i

    async def coro(i: int) -> int:
        loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0)
        return -i

    async def main() -> list[int]:
        async with Runtime([Agent(id="a"), Agent(id="b")], "fifo") as rt:
            futs = [rt.submit(blocking if i % 2 else coro, i) for i in range(40)]
            out = list(await asyncio.gather(*futs))
            assert all(lp is asyncio.get_running_loop() for lp in loops)
            return out

    out = _run(main())
    assert out == [i if i % 2 else -i for i in range(40)]


def test_shutdown_without_drain_returns_queued_blocking_calls_unrun() -> None:
    ran: list[int] = []
    gate = threading.Event()

    def job(i: int) -> int:
        if i == 0:
            gate.wait(5)
        ran.append(i)
        return i

    async def main() -> None:
        rt = Runtime([Agent(id="a")], "fifo")
        futs = [rt.submit(job, i, id=f"j{i}") for i in range(5)]
        await asyncio.sleep(0.02)
        stopping = asyncio.ensure_future(rt.shutdown(drain=False))
        await asyncio.sleep(0.02)  # the queued calls are returned while j0 still runs
        gate.set()
        returned = await stopping
        assert returned == ["j1", "j2", "j3", "j4"]
        assert futs[0].result() == 0
        for f in futs[1:]:
            assert isinstance(f.exception(), TaskRejectedError)

    _run(main())
    assert ran == [0]


# -- done callbacks: the first one per future runs in the runtime's batch ------------------


def test_done_callbacks_run_on_the_loop_in_resolution_order_with_their_context() -> None:
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    seen: list[tuple[str, str, object]] = []

    async def work(i: int) -> int:
        return i

    async def main() -> None:
        async with Runtime([Agent(id="a")], "fifo", log=0) as rt:
            futs = [rt.submit(work, i, priority=Priority.NORMAL) for i in range(5)]
            for i, f in enumerate(futs):
                var.set(f"ctx{i}")
                f.add_done_callback(lambda fut, i=i: seen.append(
                    (f"first{i}", var.get(), fut.result())))
                f.add_done_callback(lambda fut, i=i: seen.append((f"second{i}", var.get(), None)))
            assert seen == []  # nothing runs before the loop gets its turn
            await asyncio.gather(*futs)
            await asyncio.sleep(0)

    _run(main())
    firsts = [s for s in seen if s[0].startswith("first")]
    assert firsts == [(f"first{i}", f"ctx{i}", i) for i in range(5)]  # one agent: in order
    for i in range(5):  # each future's own callbacks in the order they were added
        assert seen.index((f"first{i}", f"ctx{i}", i)) < seen.index((f"second{i}", f"ctx{i}",
                                                                      None))


def test_done_callbacks_added_in_an_empty_context_each_run_in_their_own() -> None:
    # The runtime keeps no Context for an empty snapshot: each callback runs in a
    # fresh empty one, so what one callback sets is not seen by the next.
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var2", default="unset")
    seen: list[tuple[int, str, int]] = []

    async def work(i: int) -> int:
        return i

    def cb(fut: asyncio.Future[int]) -> None:
        seen.append((fut.result(), var.get(), len(contextvars.copy_context())))
        var.set(f"set by {fut.result()}")

    async def main() -> None:
        async with Runtime([Agent(id="a")], "fifo", log=0) as rt:
            futs = [rt.submit(work, i) for i in range(3)]
            for f in futs:
                contextvars.Context().run(f.add_done_callback, cb)
            await asyncio.gather(*futs)
            await asyncio.sleep(0)

    _run(main())
    assert seen == [(0, "unset", 0), (1, "unset", 0), (2, "unset", 0)]


def test_a_failing_done_callback_is_reported_and_the_others_still_run() -> None:
    errors: list[dict[str, object]] = []
    ran: list[int] = []

    async def work(i: int) -> int:
        return i

    def cb(fut: asyncio.Future[int]) -> None:
        if fut.result() == 1:
            raise RuntimeError("callback broke")
        ran.append(fut.result())

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: errors.append(ctx))
        async with Runtime([Agent(id="a")], "fifo", log=0) as rt:
            futs = [rt.submit(work, i) for i in range(3)]
            for f in futs:
                f.add_done_callback(cb)
            await asyncio.gather(*futs)
            await asyncio.sleep(0)

    _run(main())
    assert ran == [0, 2]
    assert len(errors) == 1 and isinstance(errors[0]["exception"], RuntimeError)


def test_removed_and_late_done_callbacks_and_cancellation() -> None:
    calls: list[str] = []

    async def slow() -> str:
        await asyncio.sleep(0.05)
        return "late"

    async def quick() -> str:
        return "quick"

    async def main() -> None:
        async with Runtime([Agent(id="a"), Agent(id="b")], "fifo", log=0) as rt:
            f = rt.submit(quick)
            def gone(_: object) -> None:
                calls.append("removed")
            f.add_done_callback(gone)
            f.add_done_callback(lambda _: calls.append("kept"))
            assert f.remove_done_callback(gone) == 1
            assert await f == "quick"
            await asyncio.sleep(0)
            f.add_done_callback(lambda _: calls.append("after-done"))  # runs soon, not now
            assert calls == ["kept"]
            await asyncio.sleep(0)
            assert calls == ["kept", "after-done"]
            g = rt.submit(slow)
            g.add_done_callback(lambda fut: calls.append(f"cancelled={fut.cancelled()}"))
            await asyncio.sleep(0.01)
            assert g.cancel()
            assert not g.cancel()
            await asyncio.sleep(0)
            assert calls[-1] == "cancelled=True"
        assert rt.core.metrics.completed == 1

    _run(main())


def test_runtime_futures_work_with_asyncio_combinators() -> None:
    # wait_for (remove_done_callback, then cancel), wait, shield and as_completed
    # all go through the futures' own callbacks.
    async def slow() -> str:
        await asyncio.sleep(0.2)
        return "slow"

    async def quick() -> str:
        return "quick"

    async def main() -> None:
        async with Runtime([Agent(id="a"), Agent(id="b")], "fifo", log=0) as rt:
            f = rt.submit(slow)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(f, 0.02)
            assert f.cancelled()
            g, h = rt.submit(quick), rt.submit(slow)
            done, pending = await asyncio.wait([g, h], return_when=asyncio.FIRST_COMPLETED)
            assert done == {g} and pending == {h}
            assert await asyncio.shield(rt.submit(quick)) == "quick"
            got = [await c for c in asyncio.as_completed([rt.submit(quick), rt.submit(quick)])]
            assert got == ["quick", "quick"] and await h == "slow"
        assert rt.core.metrics.completed == 5

    _run(main())


def test_a_runtime_outliving_its_loop_still_runs_done_callbacks_on_the_next() -> None:
    rt = Runtime([Agent(id="a")], "fifo", log=0)
    seen: list[str] = []

    async def work(x: str) -> str:
        return x

    async def first() -> None:
        f = rt.submit(work, "one")
        f.add_done_callback(lambda fut: seen.append(fut.result()))
        await f
        # the loop ends with a batch scheduled and not run (as when a loop is stopped)
        rt._done_batch.append(rt.submit(work, "lost"))

    async def second() -> None:
        g = rt.submit(work, "two")
        g.add_done_callback(lambda fut: seen.append(fut.result()))
        assert await g == "two"
        await asyncio.sleep(0)
        await rt.shutdown()

    asyncio.run(first())
    asyncio.run(second())
    assert seen[0] == "one" and seen[-1] == "two"


def test_submit_takes_every_taskspec_field_with_its_default() -> None:
    # submit spells the fields out (a positional TaskSpec call is cheaper than **fields):
    # a field added to TaskSpec must be added to submit too, with the same default.
    import dataclasses
    import inspect

    params = inspect.signature(Runtime.submit).parameters
    kw = {n: p.default for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    fields = {f.name: f.default for f in dataclasses.fields(TaskSpec)}
    assert kw.keys() == fields.keys()
    assert {n: d for n, d in kw.items() if n != "id"} == {
        n: d for n, d in fields.items() if n != "id"}
    assert kw["id"] is None  # made up by the runtime

    async def main() -> None:
        async with Runtime([Agent(id="a"), Agent(id="b", skills=["gpu"])], "fifo",
                           log=0) as rt:
            f = rt.submit(lambda x: x * 2, 21, id="t1", work=2.0, priority=Priority.HIGH,
                          skills=("gpu",), tenant="x", kind="k", max_retries=0)
            assert await f == 42
            assert rt.core.agents["b"].completed == 1  # the skill reached the core
            assert rt.core.outcome("t1") == ("complete", "", "")

    _run(main())


class _RaisingCore:
    """Stands in for a core with a bug: every feed raises."""

    def __init__(self, core):  # type: ignore[no-untyped-def]
        self._core = core

    def feed(self, items):  # type: ignore[no-untyped-def]
        list(items)
        raise ValueError("core bug")

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        return getattr(self._core, name)


def test_a_raising_core_fails_every_task_instead_of_hanging_its_callers() -> None:
    async def main() -> tuple[list[BaseException], BaseException]:
        async with Runtime([Agent(id="a")], "fifo") as rt:
            ok = await rt.submit(lambda: 1)
            assert ok == 1
            rt.core = _RaisingCore(rt.core)  # type: ignore[assignment]
            futs = [rt.submit(lambda: 2) for _ in range(3)]
            outcomes = await asyncio.gather(*futs, return_exceptions=True)
            with pytest.raises(TaskRejectedError) as later:
                await rt.submit(lambda: 3)
            return list(outcomes), later.value

    outcomes, later = _run(main())
    assert all(isinstance(o, TaskFailedError) and o.code is Code.INTERNAL_ERROR
               and "core bug" in o.reason for o in outcomes)
    assert isinstance(later, TaskRejectedError) and later.code is Code.INTERNAL_ERROR


class _FaultyCore:
    """Stands in for a core with a bug: once `fail` is set, the listed entry points
    raise; every call to a driver entry point after the first fault is recorded."""

    ENTRY = ("handle", "feed", "complete_at", "submit_at", "tick_at")

    def __init__(self, core, fail, *, off_loop=False):  # type: ignore[no-untyped-def]
        self._core = core
        self._fail = fail
        self._off_loop = off_loop  # only calls from a worker thread raise
        self.faults = 0
        self.after: list[str] = []

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        target = getattr(self._core, name)
        if name not in self.ENTRY:
            return target

        def call(*args, **kwargs):  # type: ignore[no-untyped-def]
            if self.faults:
                self.after.append(name)
            if name in self._fail and not (
                    self._off_loop and threading.current_thread() is threading.main_thread()):
                self.faults += 1
                raise ValueError("core bug")
            return target(*args, **kwargs)

        return call


def _watch_threads_and_loop(errors: list[str]) -> None:
    """Record exceptions that escape a thread or reach the loop's handler."""
    threading.excepthook = lambda a: errors.append(f"thread: {a.exc_value!r}")
    asyncio.get_running_loop().set_exception_handler(
        lambda loop, ctx: errors.append(f"loop: {ctx.get('message')} {ctx.get('exception')!r}"))


def test_a_core_raising_on_handle_fails_each_outstanding_task_once() -> None:
    # Runtime.handle's path: the finished task keeps its result, a running blocking call,
    # a running coroutine and the queued tasks each fail once with internal_error; the
    # blocking call's late result reaches no core; nothing escapes a thread or the loop.
    errors: list[str] = []
    hook = threading.excepthook
    release = threading.Event()

    def blocked() -> str:
        release.wait(5)
        return "late"

    async def main() -> None:
        _watch_threads_and_loop(errors)
        gate = asyncio.Event()

        async def waiting() -> str:
            await gate.wait()
            return "late"

        rt = Runtime([Agent(id="a", concurrency=2)], "fifo")
        assert await rt.submit(lambda: "early") == "early"
        running = [rt.submit(blocked), rt.submit(waiting)]
        queued = [rt.submit(lambda i=i: i) for i in range(4)]
        await asyncio.sleep(0.05)
        assert rt.core.metrics.dispatches == 3 and rt.core.queued() == 4
        core = rt.core = _FaultyCore(rt.core, fail={"handle"})  # type: ignore[assignment]
        with pytest.raises(ValueError, match="core bug"):
            rt.handle(AgentJoined(agent=Agent(id="b")))
        release.set()
        gate.set()
        outcomes = await asyncio.gather(*running, *queued, return_exceptions=True)
        await asyncio.sleep(0.05)  # the blocking call has returned: its result is dropped
        assert all(isinstance(o, TaskFailedError) and o.code is Code.INTERNAL_ERROR
                   and "core bug" in o.reason for o in outcomes), outcomes
        assert core.faults == 1 and core.after == []  # nothing reached the core again
        with pytest.raises(AllocatorError, match="core bug"):
            rt.handle(AgentJoined(agent=Agent(id="c")))
        with pytest.raises(TaskRejectedError):
            await rt.submit(lambda: 0)
        await rt.shutdown()

    try:
        _run(main())
    finally:
        threading.excepthook = hook
    assert errors == []


def test_a_core_raising_in_a_worker_thread_fails_the_tasks_instead_of_the_thread() -> None:
    # The worker threads report finished calls to the core themselves: a core that
    # raises there fails every outstanding task (none hangs, none ends twice) and
    # the worker thread lives on.
    errors: list[str] = []
    hook = threading.excepthook

    async def main() -> list[BaseException | int]:
        _watch_threads_and_loop(errors)
        rt = Runtime([Agent(id="a"), Agent(id="b")], "fifo")
        core = rt.core = _FaultyCore(rt.core, fail={"complete_at", "feed"},  # type: ignore[assignment]
                                     off_loop=True)
        futs = [rt.submit(time.sleep, 0.001) for _ in range(20)]
        outcomes = list(await asyncio.gather(*futs, return_exceptions=True))
        assert core.faults == 1 and core.after == []
        assert all(th.is_alive() for th in rt._threads)  # the workers carry on
        await rt.shutdown()
        return outcomes

    try:
        outcomes = _run(main())
    finally:
        threading.excepthook = hook
    assert outcomes and all(isinstance(o, TaskFailedError) and o.code is Code.INTERNAL_ERROR
                            for o in outcomes), outcomes
    assert errors == []


@pytest.mark.parametrize(("field", "value"), [
    ("work", float("nan")), ("work", -1.0), ("work", float("inf")), ("priority", "urgent"),
    ("deadline", float("nan")), ("timeout", -1.0), ("timeout", 0.0), ("max_retries", -3),
    ("demand", (("cpu", -1.0),)), ("tokens", float("nan")), ("migration_cost", -5.0),
    ("skills", "gpu"), ("work", "3"),
])
def test_a_bad_submit_field_is_an_input_error_and_the_runtime_keeps_working(
        field: str, value: object) -> None:
    # Runtime.submit fed its fields to the core unchecked: priority="urgent" made the
    # core raise (KeyError), which fails every outstanding task and every later submit
    # with internal_error; a negative demand freed capacity other tasks then over-used.
    async def main() -> None:
        async with Runtime([Agent(id="a", capacity={"cpu": 4})], "edf", log=0) as rt:
            with pytest.raises(InvalidInputError) as err:
                rt.submit(lambda: 1, id="bad", **{field: value})
            assert err.value.field == field
            assert await rt.submit(lambda: 2, id="good") == 2

    _run(main())


def test_resubmitting_a_finished_task_id_is_an_input_error_not_a_broken_runtime() -> None:
    # The id of a finished task left Runtime._jobs but not the core: the core raised
    # "duplicate task id", and the runtime failed every task (internal_error) from then on.
    async def main() -> None:
        async with Runtime([Agent(id="a"), Agent(id="b")], "fifo") as rt:
            slow = rt.submit(asyncio.sleep, 0.05, id="slow")
            assert await rt.submit(lambda: 1, id="x") == 1
            with pytest.raises(InvalidInputError, match="duplicate") as err:
                rt.submit(lambda: 2, id="x")
            assert err.value.field == "id"
            assert await rt.submit(lambda: 3, id="y") == 3
            await slow

    _run(main())


@pytest.mark.parametrize("usage", [{"tokens": "12"}, "tokens", {"tokens": float("nan")},
                                   {"tokens": -1e9}, {"tokens": float("inf")}])
def test_bad_reported_usage_fails_its_task_and_the_runtime_keeps_working(usage: Any) -> None:
    # A task's Reported usage went to the core unchecked: a string made the core raise
    # (every task failed with internal_error), inf left the agent's token bucket in
    # debt forever (later tasks never ran), NaN and negatives poisoned the learned
    # token estimate (a negative estimate over-fills the bucket: the quota is gone).
    async def main() -> None:
        async with Runtime([(Agent(id="a"), RateLimit(tokens_per_min=6000.0))], "fifo") as rt:
            with pytest.raises(TaskFailedError) as err:
                await rt.submit(lambda: Reported(1, usage=usage), tokens=100.0, kind="k")
            assert err.value.code is Code.NOT_RETRYABLE and "usage" in err.value.reason
            assert isinstance(err.value.__cause__, InvalidInputError)
            assert await asyncio.wait_for(rt.submit(lambda: 2, tokens=100.0, kind="k"), 5) == 2
            assert rt.core.metrics.token_estimate(TaskSpec("x", tokens=100.0, kind="k")) == 100.0
            assert rt.core.agents["a"].tokens_used == 0.0

    _run(main())


def test_every_set_timer_gets_its_tick_even_behind_an_earlier_one() -> None:
    # The runtime kept one loop timer, the earliest: a SetTimer later than the armed
    # one was dropped. The core requests a later time while an earlier request is
    # pending whenever its clock passed that one first (a worker's completion read
    # the clock before the loop's timer fired); then the earlier Tick came, the core
    # (its latest request still ahead) asked nothing more, and its timers (timeouts,
    # breaker re-opens) never fired: tasks for an open agent waited forever.
    from allocator.clock import VirtualClock
    from allocator.online.events import SetTimer, Tick

    async def main() -> list[float]:
        clock = VirtualClock(100.0)
        rt = Runtime([Agent(id="a")], "fifo", clock=clock)
        ticks: list[Any] = []
        post = rt._post

        def spy(ev: Any) -> None:
            post(ev)
            if isinstance(ev, Tick):
                ticks.append(ev)

        rt._post = spy  # type: ignore[method-assign]
        rt.apply([SetTimer(at=100.01)])
        rt.apply([SetTimer(at=100.03)])  # later than the armed one: must not be dropped
        for _ in range(50):
            await asyncio.sleep(0.01)
            if clock.now() < 100.05:
                clock.advance(0.005)
            if len(ticks) >= 2:
                break
        await rt.shutdown()
        return ticks

    assert len(_run(main())) >= 2  # one Tick per requested time
