"""Exact-instruction tests on the core: events in, the precise instructions out."""

from __future__ import annotations

from typing import Any

import pytest

from allocator.errors import InvalidInputError
from allocator.online import (
    AgentFailed,
    AgentJoined,
    AgentLeft,
    Code,
    Executor,
    Shutdown,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    Tick,
)
from models import Agent

from .helpers import agents, brief, run, submit

C = TaskCompleted


@pytest.mark.parametrize(
    ("policy", "events", "expected"),
    [
        pytest.param(
            "fifo", [submit("t1"), submit("t2"), submit("t3")],
            [("Dispatch", "t1", "a", 1), ("Dispatch", "t2", "b", 1)],
            id="fifo fills free agents in arrival order, the rest waits"),
        pytest.param(
            "round-robin", [submit("t1"), submit("t2"), submit("t3")],
            [("Dispatch", "t1", "a", 1), ("Dispatch", "t2", "b", 1)],
            id="round-robin alternates agents"),
        pytest.param(
            "jsq", [submit("t1"), submit("t2"), submit("t3"), submit("t4")],
            [("Dispatch", "t1", "a", 1), ("Dispatch", "t2", "b", 1)],
            id="jsq sends each arrival to the shortest queue"),
        pytest.param(
            "edf", [submit("t1", deadline=9), submit("t2", time=0.1, deadline=5),
                    submit("t3", time=0.2, deadline=1),
                    C(task_id="t1", agent="a", attempt=1, time=1)],
            [("Dispatch", "t1", "a", 1), ("Dispatch", "t2", "b", 1),
             ("Complete", "t1", "a", 1), ("Dispatch", "t3", "a", 1)],
            id="edf serves the earliest deadline next"),
        pytest.param(
            "edf", [submit("t1", deadline=9), submit("t2", deadline=5), submit("t3", deadline=1),
                    C(task_id="t3", agent="a", attempt=1, time=1)],
            [("Dispatch", "t3", "a", 1), ("Dispatch", "t2", "b", 1),
             ("Complete", "t3", "a", 1), ("Dispatch", "t1", "a", 1)],
            id="edf starts the earliest deadlines of tasks submitted at one instant"),
        pytest.param(
            "fifo", [submit("t1"), submit("t2"), submit("t3"),
                     C(task_id="t1", agent="a", attempt=1, time=1)],
            [("Dispatch", "t1", "a", 1), ("Dispatch", "t2", "b", 1),
             ("Complete", "t1", "a", 1), ("Dispatch", "t3", "a", 1)],
            id="a completion frees a slot for the next task"),
        pytest.param(
            "fifo", [submit("t1"), C(task_id="t1", agent="b", attempt=1, time=1),
                     C(task_id="t1", agent="a", attempt=2, time=1)],
            [("Dispatch", "t1", "a", 1)],
            id="completions from the wrong agent or attempt are stale and ignored"),
        pytest.param(
            "fifo", [submit("t1"), TaskFailed(task_id="t1", agent="a", attempt=1, time=1)],
            [("Dispatch", "t1", "a", 1), ("Retry", "t1", 2), ("Dispatch", "t1", "b", 2)],
            id="a failed attempt is retried elsewhere first"),
        pytest.param(
            "fifo", [submit("t1", max_retries=0),
                     TaskFailed(task_id="t1", agent="a", attempt=1, time=1)],
            [("Dispatch", "t1", "a", 1), ("Fail", "t1", Code.RETRIES_EXHAUSTED)],
            id="no retries left: the task fails with a reason"),
        pytest.param(
            "fifo", [submit("t1"), TaskFailed(task_id="t1", agent="a", attempt=1, time=1,
                                              retryable=False)],
            [("Dispatch", "t1", "a", 1), ("Fail", "t1", Code.NOT_RETRYABLE)],
            id="a non-retryable failure ends the task"),
        pytest.param(
            "fifo", [submit("t1"), AgentFailed(agent_id="a", time=1),
                     C(task_id="t1", agent="a", attempt=1, time=2)],
            [("Dispatch", "t1", "a", 1), ("BreakerOpened", "a"), ("Retry", "t1", 2),
             ("Dispatch", "t1", "b", 2)],
            id="agent crash mid-task: breaker opens, retried on b, late result ignored"),
        pytest.param(
            "fifo", [submit("t1", skills=("gpu",))],
            [("Reject", "t1", Code.NO_ELIGIBLE_AGENT)],
            id="no agent has the skill: rejected with a reason"),
        pytest.param(
            "fifo", [submit("t1", hard_deadline=True, deadline=0.5, work=1.0)],
            [("Reject", "t1", Code.DEADLINE_INFEASIBLE)],
            id="infeasible hard deadline: rejected at admission"),
        pytest.param(
            "fifo", [submit("t1"), submit("t2"), submit("t3"), TaskCancelled(task_id="t3"),
                     TaskCancelled(task_id="t1")],
            [("Dispatch", "t1", "a", 1), ("Dispatch", "t2", "b", 1),
             ("Fail", "t3", Code.CANCELLED), ("Cancel", "t1", "a", 1),
             ("Fail", "t1", Code.CANCELLED)],
            id="cancel a queued task and a running one"),
        pytest.param(
            "fifo", [submit("t1"), submit("t2"), submit("t3"),
                     Shutdown(drain=False), submit("t4")],
            [("Dispatch", "t1", "a", 1), ("Dispatch", "t2", "b", 1),
             ("Reject", "t3", Code.SHUTDOWN), ("Reject", "t4", Code.SHUTDOWN)],
            id="shutdown without drain returns queued tasks and refuses new ones"),
    ],
)
def test_exact_instructions(policy: str, events: list[Any], expected: list[tuple[Any, ...]]
                            ) -> None:
    ex = Executor(policy, agents=agents("a", "b"))
    assert run(ex, *events) == expected


def test_every_instruction_has_an_id_time_and_cause() -> None:
    ex = Executor("fifo", agents=agents("a"))
    ev = submit("t1", time=2.5)
    out = ex.handle(ev)
    assert [type(i).__name__ for i in out] == ["Dispatch"]
    assert out[0].cause == ev.id and out[0].time == 2.5 and out[0].id > ev.id


def test_history_prints_a_tasks_chain() -> None:
    ex = Executor("fifo", agents=agents("a", "b"))
    ex.handle(submit("t1"), TaskFailed(task_id="t1", agent="a", attempt=1, time=1),
              C(task_id="t1", agent="b", attempt=2, time=2))
    kinds = [line.split()[2] for line in ex.history("t1").splitlines()]
    assert kinds == ["TaskSubmitted", "Dispatch", "TaskFailed", "Retry", "Dispatch",
                     "TaskCompleted", "Complete"]
    assert ex.outcome("t1") == ("complete", "", "")


def test_duplicate_task_id_is_an_input_error() -> None:
    ex = Executor("fifo", agents=agents("a"))
    ex.handle(submit("t1"))
    with pytest.raises(InvalidInputError, match="duplicate"):
        ex.handle(submit("t1"))


def test_agent_leaving_moves_queued_tasks_and_finishes_running() -> None:
    ex = Executor("round-robin", agents=agents("a", "b"))
    assert run(ex, submit("t1"), submit("t2"), submit("t3")) == [
        ("Dispatch", "t1", "a", 1), ("Dispatch", "t2", "b", 1)]
    # t3 is queued at a (round-robin); a leaves gracefully
    assert run(ex, AgentLeft(agent_id="a", time=1)) == [
        ("Migrate", "t3", "a", "b", Code.AGENT_LEFT)]
    assert run(ex, C(task_id="t1", agent="a", attempt=1, time=2)) == [("Complete", "t1", "a", 1)]
    assert run(ex, C(task_id="t2", agent="b", attempt=1, time=3)) == [
        ("Complete", "t2", "b", 1), ("Dispatch", "t3", "b", 1)]
    assert ex.agents["a"].status.value == "down"


def test_agent_rejoining_takes_waiting_work() -> None:
    ex = Executor("fifo", agents=agents("a"))
    assert run(ex, AgentFailed(agent_id="a"), submit("t1")) == [("BreakerOpened", "a")]
    assert run(ex, AgentJoined(agent=Agent(id="a"), time=5)) == [("Dispatch", "t1", "a", 1)]


def test_timeout_cancels_and_retries_then_fails_with_timeout_code() -> None:
    ex = Executor("fifo", agents=agents("a", "b"), max_retries=1)
    out = ex.handle(submit("t1", timeout=2.0))
    assert brief(out, timers=True) == [("Dispatch", "t1", "a", 1), ("SetTimer", 2.0)]
    assert run(ex, Tick(time=2.0)) == [
        ("Cancel", "t1", "a", 1), ("Retry", "t1", 2), ("Dispatch", "t1", "b", 2)]
    assert run(ex, Tick(time=4.0)) == [("Cancel", "t1", "b", 2), ("Fail", "t1", Code.TIMEOUT)]


def test_capacity_is_respected_while_running() -> None:
    ex = Executor("fifo", agents=agents("a", capacity={"gpu": 1}, concurrency=4))
    assert run(ex, submit("t1", demand=(("gpu", 1.0),)), submit("t2", demand=(("gpu", 1.0),)),
               submit("t3")) == [("Dispatch", "t1", "a", 1)]  # t2 blocks the head: no overtaking
    assert run(ex, C(task_id="t1", agent="a", attempt=1, time=1)) == [
        ("Complete", "t1", "a", 1), ("Dispatch", "t2", "a", 1), ("Dispatch", "t3", "a", 1)]


def test_skills_route_through_separate_global_pools() -> None:
    ex = Executor("fifo", agents=[Agent(id="a"), Agent(id="g", skills=["gpu"])])
    assert run(ex, submit("t1"), submit("t2"), submit("g1", skills=("gpu",))) == [
        ("Dispatch", "t1", "a", 1), ("Dispatch", "t2", "g", 1)]
    # g frees up: the gpu task is the only one it may take from its pools first-come
    assert run(ex, C(task_id="t2", agent="g", attempt=1, time=1)) == [
        ("Complete", "t2", "g", 1), ("Dispatch", "g1", "g", 1)]


def test_deferred_by_class_cap_then_admitted() -> None:
    from allocator.online import AdmissionConfig
    from models import Priority

    ex = Executor("fifo", agents=agents("a"), admission=AdmissionConfig(
        class_caps={Priority.LOW: 1}, defer_delay=1.0, max_defers=1))
    out = ex.handle(submit("t1", priority=Priority.LOW), submit("t2", priority=Priority.LOW),
                    submit("t3", priority=Priority.LOW))
    assert brief(out) == [("Dispatch", "t1", "a", 1), ("Defer", "t3", Code.QUEUE_CAP)]
    # t2 is queued (cap 1); at t=1 t3 is re-admitted, still over the cap: rejected
    assert run(ex, Tick(time=1.0)) == [("Reject", "t3", Code.QUEUE_CAP)]
    assert ex.outcome("t3")[2].endswith("deferred 1 times")  # type: ignore[index]


def test_hard_deadline_expiring_in_queue_fails_at_dispatch() -> None:
    ex = Executor("fifo", agents=agents("a"))
    assert run(ex, submit("t1", work=5), submit("t2", work=1, deadline=6.5,
                                                 hard_deadline=True)) == [
        ("Dispatch", "t1", "a", 1)]
    assert run(ex, C(task_id="t1", agent="a", attempt=1, time=6)) == [
        ("Complete", "t1", "a", 1), ("Fail", "t2", Code.DEADLINE_EXPIRED)]


@pytest.mark.parametrize("policy", ["fifo", "edf+stealing", "priority+stealing", "wfq"])
@pytest.mark.parametrize("log", [0, None])
def test_direct_entry_points_match_handle(policy: str, log: int | None) -> None:
    """submit_at / complete_at decide exactly what handle() decides for the same events."""
    from allocator.online.events import TaskSpec, completed, submitted
    from models import Priority

    def drive(direct: bool) -> tuple[list[tuple[Any, ...]], dict[str, Any]]:
        ex = Executor(policy, agents=[Agent(id=a) for a in "abc"], log=log, seed=1)
        seen: list[tuple[Any, ...]] = []
        running: list[tuple[str, str, int]] = []
        now = 0.0
        prios = list(Priority)
        for i in range(40):
            now += 0.25
            spec = TaskSpec(f"t{i}", work=1.0 + i % 3, priority=prios[i % 4], home="abc"[i % 3],
                            deadline=now + 5 + i % 7, tenant=f"x{i % 2}")
            out = ex.submit_at(spec, now) if direct else ex.handle(submitted(spec, now))
            if i % 2:
                done, running[:] = running[:2], running[2:]
                for tid, ag, att in done:
                    out += (ex.complete_at(tid, ag, att, now, 0.5) if direct
                            else ex.handle(completed(tid, ag, att, now, 0.5)))
            for ins in out:
                seen.append((type(ins).__name__, ins.id, ins.cause, ins.time,
                             getattr(ins, "task_id", None), getattr(ins, "agent", None)))
                if type(ins).__name__ == "Dispatch":
                    running.append((ins.task_id, ins.agent, ins.attempt))  # type: ignore[attr-defined]
        # a stale report counts as an event too, and changes nothing
        ex.complete_at("t0", "z", 9, now) if direct else ex.handle(completed("t0", "z", 9, now))
        m = ex.metrics
        return seen, {"events": m.events, "stale": m.stale, "completed": m.completed,
                      "log": len(ex.log) if ex.log.enabled else 0}

    assert drive(True) == drive(False)


@pytest.mark.parametrize("policy", ["fifo", "edf+stealing", "priority+stealing", "wfq"])
@pytest.mark.parametrize("log", [0, None])
def test_feed_matches_handle(policy: str, log: int | None) -> None:
    """feed() over compact items decides exactly what handle() decides for the same events."""
    from allocator.online.events import TaskCancelled, TaskSpec, completed, submitted
    from models import Priority

    def drive(compact: bool) -> tuple[list[tuple[Any, ...]], dict[str, Any]]:
        ex = Executor(policy, agents=[Agent(id=a) for a in "abc"], log=log, seed=1)
        seen: list[tuple[Any, ...]] = []
        running: list[tuple[str, str, int]] = []
        now = 0.0
        prios = list(Priority)
        for batch in range(12):
            items: list[Any] = []
            for j in range(4):  # a batch of submissions, completions and a cancel
                i = batch * 4 + j
                now += 0.25
                spec = TaskSpec(f"t{i}", work=1.0 + i % 3, priority=prios[i % 4],
                                home="abc"[i % 3], deadline=now + 5 + i % 7, tenant=f"x{i % 2}")
                items.append((now, spec) if compact else submitted(spec, now))
            done, running[:] = running[:3], running[3:]
            for tid, ag, att in done:
                items.append((now, tid, ag, att, 0.5, None) if compact
                             else completed(tid, ag, att, now, 0.5))
            if batch % 5 == 4:
                items.append(TaskCancelled(task_id=f"t{batch * 4}", time=now))
            items.append((now, "t0", "z", 9, None, {"tokens": 3.0}) if compact
                         else completed("t0", "z", 9, now, None, {"tokens": 3.0}))  # stale
            out = ex.feed(items) if compact else ex.handle(*items)
            for ins in out:
                seen.append((type(ins).__name__, ins.id, ins.cause, ins.time,
                             getattr(ins, "task_id", None), getattr(ins, "agent", None)))
                if type(ins).__name__ == "Dispatch":
                    running.append((ins.task_id, ins.agent, ins.attempt))  # type: ignore[attr-defined]
        m = ex.metrics
        return seen, {"events": m.events, "stale": m.stale, "completed": m.completed,
                      "dispatches": m.dispatches,
                      "log": [str(x) for x in ex.log] if ex.log.enabled else 0}

    got, want = drive(True), drive(False)
    assert got == want
    assert want[1]["completed"] > 20 and want[1]["stale"] >= 12


@pytest.mark.parametrize("policy", ["stealing", "round-robin", "fifo"])
def test_a_reregistered_agent_that_lost_a_skill_is_not_given_back_its_tasks(
        policy: str) -> None:
    # Re-registration re-placed the agent's running and queued tasks before taking
    # its new spec: a task needing "gpu" went straight back to the agent, which had
    # just registered without "gpu", and ran there (found by a chaos driver).
    gpu = Agent(id="a", skills=["gpu"], capacity={"cpu": 2}, concurrency=2)
    ex = Executor(policy, agents=[gpu, Agent(id="b", skills=["gpu"], capacity={"cpu": 2})])
    ex.handle(submit("t1", skills=("gpu",), home="a", demand=(("cpu", 2.0),)),
              submit("t2", skills=("gpu",), home="a", demand=(("cpu", 2.0),)),
              submit("t3", skills=("gpu",), home="a", demand=(("cpu", 2.0),)))
    out = ex.handle(AgentJoined(agent=Agent(id="a", capacity={"cpu": 1}, concurrency=2),
                                time=1.0))
    assert not [d for d in out if type(d).__name__ == "Dispatch" and d.agent == "a"]
    assert all(t.agent is None or t.agent.id != "a" for t in ex.tasks.values())
    assert not ex.agents["a"].queue and not ex.agents["a"].running
