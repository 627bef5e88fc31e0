"""The live coordinator on an injected clock: leases, exactly-once accounting, replay."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from allocator.clock import VirtualClock
from allocator.errors import NotFoundError
from allocator.live.coordinator import LiveCoordinator, LiveOptions
from allocator.live.store import LiveStore
from allocator.online.admission import AdmissionConfig
from models import Priority


def make(clock: VirtualClock | None = None, **kw: Any) -> LiveCoordinator:
    return LiveCoordinator(LiveOptions(**{"lease_s": 5.0, **kw}), clock=clock or VirtualClock())


def tasks(n: int, **kw: Any) -> list[dict[str, Any]]:
    return [{"id": f"t{i}", **kw} for i in range(n)]


def test_a_silent_agent_loses_its_leases_and_the_work_runs_elsewhere() -> None:
    ck = VirtualClock()
    c = make(ck)
    c.register({"id": "a", "concurrency": 2})
    c.register({"id": "b", "concurrency": 2})
    c.submit(tasks(4))
    got_a = c.take("a", 10)
    got_b = c.take("b", 10)
    assert len(got_a) == 2 and len(got_b) == 2
    for _ in range(4):  # b keeps heartbeating, a says nothing
        ck.advance(2.0)
        c.heartbeat("b")
        assert c.expire() == ([] if ck.now() <= 5.0 else ["a"]) or ck.now() > 5.0
    assert c.agent_view("a")["status"] == "down"
    assert c.agent_view("b")["status"] == "up"
    for d in got_a:  # a's attempts were superseded: attempt 2, queued for b
        assert c.task_view(d.id)["attempts"] in (1, 2)
        assert c.task_view(d.id)["state"] in ("queued", "assigned")
    assert c.stats["lease_expiries"] == 1
    # b finishes its own and then a's tasks: each exactly once.
    c.complete_many([{"task": d.id, "attempt": d.attempt} for d in got_b])
    again = c.take("b", 10)
    assert sorted(d.id for d in again) == sorted(d.id for d in got_a)
    assert all(d.attempt == 2 for d in again)
    c.complete_many([{"task": d.id, "attempt": d.attempt} for d in again])
    assert all(c.task_view(f"t{i}")["state"] == "completed" for i in range(4))
    assert all(c.task_view(f"t{i}")["completions"] == 1 for i in range(4))


def test_heartbeats_keep_leases_alive_past_the_lease() -> None:
    ck = VirtualClock()
    c = make(ck)
    c.register({"id": "a"})
    c.submit(tasks(1))
    (d,) = c.take("a", 1)
    for _ in range(10):
        ck.advance(4.0)  # under the 5 s lease each time, 40 s in all
        c.heartbeat("a")
        assert c.expire() == []
    assert c.complete("t0", {"attempt": d.attempt})["accepted"]


def test_a_late_completion_of_a_superseded_attempt_is_ignored_and_counted() -> None:
    ck = VirtualClock()
    c = make(ck)
    c.register({"id": "a"})
    c.register({"id": "b"})
    c.submit(tasks(1))
    (first,) = c.take("a", 1) or c.take("b", 1)
    holder = c.task_view("t0")["agent"]
    other = "b" if holder == "a" else "a"
    ck.advance(6.0)
    c.heartbeat(other)
    assert c.expire() == [holder]
    (second,) = c.take(other, 1)
    assert second.attempt == first.attempt + 1
    # The old lessee comes back and reports: late, ignored; the new attempt counts once.
    late = c.complete("t0", {"attempt": first.attempt, "agent": holder, "result": "old"})
    assert late == {"task": "t0", "accepted": False, "state": "running"}
    ok = c.complete("t0", {"attempt": second.attempt, "result": "new"})
    assert ok["accepted"] and ok["state"] == "completed"
    again = c.complete("t0", {"attempt": second.attempt, "result": "dup"})
    assert not again["accepted"]
    v = c.task_view("t0")
    assert (v["completions"], v["late_completions"], v["result"]) == (1, 2, "new")
    assert c.stats["late_completions"] == 2 and c.stats["completed"] == 1


def test_admission_answers_at_submit_with_its_reason() -> None:
    ck = VirtualClock()
    c = make(ck, admission=AdmissionConfig(class_caps={Priority.LOW: 2}))
    c.register({"id": "a"})
    out = c.submit(tasks(5, priority="low"))
    states = [o["state"] for o in out]
    # One running, two queued, two over the cap: deferred (retried later) with the reason.
    assert states == ["assigned", "queued", "queued", "deferred", "deferred"]
    assert all(o["code"] == "queue_cap" and "cap" in o["reason"] for o in out[3:])
    hard = c.submit([{"id": "h", "work": 100.0, "deadline": 1.0, "hard_deadline": True}])
    assert hard[0]["state"] == "rejected" and hard[0]["code"] == "deadline_infeasible"
    assert "deadline" in hard[0]["reason"]
    dup = c.submit([{"id": "t0"}])
    assert dup[0]["duplicate"] and c.stats["duplicates"] == 1


def test_cancel_a_queued_and_a_running_task() -> None:
    ck = VirtualClock()
    c = make(ck)
    c.register({"id": "a"})
    c.submit(tasks(2))
    (d,) = c.take("a", 5)
    queued = "t1" if d.id == "t0" else "t0"
    assert c.cancel(queued)["state"] == "cancelled"
    assert c.cancel(d.id)["state"] == "cancelled"
    # The running attempt is told to stop on the next heartbeat; its result is late.
    assert c.heartbeat("a")["cancel"] == [{"task": d.id, "attempt": d.attempt}]
    assert not c.complete(d.id, {"attempt": d.attempt})["accepted"]
    assert c.task_view(d.id)["state"] == "cancelled"
    with pytest.raises(NotFoundError):
        c.cancel("nope")


def test_failed_attempts_retry_then_fail_with_the_reason() -> None:
    c = make(max_retries=1)
    c.register({"id": "a"})
    c.submit(tasks(1))
    for n in (1, 2):
        (d,) = c.take("a", 1)
        assert d.attempt == n
        c.complete("t0", {"attempt": n, "outcome": "error", "error": "boom"})
    v = c.task_view("t0")
    assert v["state"] == "failed" and v["code"] == "retries_exhausted" and "boom" in v["reason"]


def test_an_expired_agent_that_comes_back_is_rejoined() -> None:
    ck = VirtualClock()
    c = make(ck)
    c.register({"id": "a"})
    ck.advance(10.0)
    assert c.expire() == ["a"]
    assert c.heartbeat("a")["rejoined"]
    assert c.agent_view("a")["status"] == "up"
    c.submit(tasks(1))
    assert [d.id for d in c.take("a", 1)] == ["t0"]


def test_critical_first_and_tenant_shares_follow_weights_under_saturation() -> None:
    c = make(tenant_weights={"gold": 3.0, "free": 1.0})
    c.register({"id": "a"})
    c.submit([{"id": "block"}])
    c.take("a", 1)  # the only slot is busy: everything below queues
    c.submit([{"id": f"{ten}-{p.value}-{i}", "priority": p.value, "tenant": ten}
              for i in range(40) for p in (Priority.LOW, Priority.CRITICAL)
              for ten in ("gold", "free")])
    order: list[str] = []
    prev = ("block", 1)
    for _ in range(160):
        c.complete(prev[0], {"attempt": prev[1]})
        (d,) = c.take("a", 1)
        order.append(d.id)
        prev = (d.id, d.attempt)
    first = order[:40]
    assert sum("critical" in x for x in first) >= 32  # stride 8:1 between the classes
    crit = [x for x in order if "critical" in x][:40]
    gold = sum(x.startswith("gold") for x in crit)
    assert 27 <= gold <= 33, crit  # 3:1 -> 30 of the first 40 critical


def test_a_burst_submitted_in_one_call_starts_its_critical_task_first(tmp_path: Path) -> None:
    """One POST of several tasks is one instant: the core sees all of them before it
    assigns any (the first listed low task used to take the idle agent), and the log
    replays to the same assignment."""
    c = make()
    c.register({"id": "a"})
    c.submit([{"id": "low-0", "priority": "low"}, {"id": "low-1", "priority": "low"},
              {"id": "crit", "priority": "critical"}, {"id": "high", "priority": "high"}])
    assert c.task_view("crit")["state"] == "assigned"
    store = LiveStore(f"sqlite:///{tmp_path / 'live.db'}")
    try:
        store.append(c.drain_rows())
        fresh = make(VirtualClock(c.clock.now()))
        fresh.recover(store.rows(chunk=2))
    finally:
        store.close()
    for co in (c, fresh):
        assert [d.id for d in co.take("a", 1)] == ["crit"]
        assert co.task_view("low-0")["state"] == "queued"


def _drive(c: LiveCoordinator, ck: VirtualClock, rng: random.Random, steps: int) -> None:
    """Random operations: submits, pulls, completions (some late), failures, expiries."""
    leased: list[tuple[str, int, str]] = []
    n = len(c.tasks)
    for _ in range(steps):
        ck.advance(rng.choice([0.0, 0.1, 0.5, 2.0]))
        op = rng.random()
        if op < 0.3:
            batch = []
            for _ in range(rng.randint(1, 4)):
                batch.append({"id": f"t{n}", "priority": rng.choice(list(Priority)).value,
                              "tenant": rng.choice(["x", "y", "z"]), "work": rng.random() * 2,
                              "payload": f"p{n}"})
                n += 1
            c.submit(batch)
        elif op < 0.55:
            agent = rng.choice(["a", "b", "c"])
            if agent in c.agents:
                leased += [(d.id, d.attempt, agent) for d in c.take(agent, rng.randint(1, 3))]
        elif op < 0.8 and leased:
            tid, att, agent = leased.pop(rng.randrange(len(leased)))
            c.complete(tid, {"attempt": att, "agent": agent, "result": f"r{tid}",
                             "tokens": 3.0, "outcome": rng.choice(["ok", "ok", "error"])})
        elif op < 0.85:
            c.register({"id": rng.choice(["a", "b", "c"]), "concurrency": rng.randint(1, 3)})
        elif op < 0.9 and n:
            c.cancel(f"t{rng.randrange(n)}")
        elif op < 0.95:
            c.expire()
        else:
            c.heartbeat(rng.choice(list(c.agents))) if c.agents else None
        c.tick()


@pytest.mark.parametrize("seed", range(6))
def test_replaying_the_log_rebuilds_the_same_state(seed: int, tmp_path: Path) -> None:
    ck = VirtualClock()
    c = make(ck, tenant_weights={"x": 2.0})
    rng = random.Random(seed)
    store = LiveStore(f"sqlite:///{tmp_path / 'live.db'}")
    try:
        for _ in range(4):  # several flushes, as the service does
            _drive(c, ck, rng, 60)
            store.append(c.drain_rows())
        fresh = make(VirtualClock(ck.now()), tenant_weights={"x": 2.0})
        n = fresh.recover(store.rows(chunk=37))
        assert n > 0 and store.count() == c.seq == fresh.seq
    finally:
        store.close()
    assert set(fresh.tasks) == set(c.tasks)
    for tid in c.tasks:
        assert fresh.task_view(tid) == c.task_view(tid)
    for co in (c, fresh):  # the kept counts are the counts
        real = {k: 0 for k in co.counts}
        for r in co.tasks.values():
            real[r.state] += 1
        assert co.counts == real
    q1, q2 = c.queues(), fresh.queues()
    q2["stats"]["replayed_events"] = q1["stats"]["replayed_events"]
    q2["stats"]["duplicates"] = q1["stats"]["duplicates"]  # refused, so never logged
    assert q1 == q2
    # The rebuilt core keeps working: every live task still ends exactly once.
    for agent in list(fresh.agents):
        fresh.register({"id": agent, "concurrency": 4})
    for _ in range(200):
        for agent in list(fresh.agents):
            for d in fresh.take(agent, 4):
                fresh.complete(d.id, {"attempt": d.attempt})
    ends = [fresh.task_view(t) for t in fresh.tasks]
    assert all(v["state"] in ("completed", "failed", "rejected", "cancelled") for v in ends)
    assert all(v["completions"] <= 1 for v in ends)


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Any:
    pgserver = pytest.importorskip("pgserver", reason="pgserver (dev extra) not installed")
    pytest.importorskip("psycopg", reason="psycopg (dev extra) not installed")
    srv = pgserver.get_server(tmp_path_factory.mktemp("pg-live"), cleanup_mode="stop")
    try:
        yield srv.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        srv.cleanup()


def test_the_log_replays_from_postgresql_too(postgres_url: str) -> None:
    ck = VirtualClock()
    c = make(ck, tenant_weights={"x": 2.0})
    store = LiveStore(postgres_url)
    try:
        assert store.engine.dialect.name == "postgresql"
        epoch = store.epoch()
        assert store.epoch() == epoch  # set once, then kept
        _drive(c, ck, random.Random(7), 150)
        store.append(c.drain_rows())
        fresh = make(VirtualClock(ck.now()), tenant_weights={"x": 2.0})
        fresh.recover(store.rows(chunk=11))
    finally:
        store.close()
    assert {t: fresh.task_view(t) for t in fresh.tasks} == {t: c.task_view(t) for t in c.tasks}


def test_a_lease_whose_answer_was_lost_is_offered_again_same_attempt() -> None:
    c = make()
    c.register({"id": "a", "concurrency": 3})
    c.submit(tasks(3))
    got = c.take("a", 3)  # imagine this answer never reached the agent, except t0
    assert c.reconcile("a", [(got[0].id, got[0].attempt)]) == 2
    again = c.take("a", 3)
    assert sorted((d.id, d.attempt) for d in again) == sorted((d.id, d.attempt)
                                                               for d in got[1:])
    assert c.reconcile("a", [(d.id, d.attempt) for d in got]) == 0  # all held now
    out = c.complete_many([{"task": d.id, "attempt": d.attempt} for d in got])
    assert all(o["accepted"] for o in out)
    assert all(c.task_view(d.id)["completions"] == 1 for d in got)
    assert c.stats["reoffered"] == 2


def test_each_ack_of_a_batch_is_judged_on_its_own() -> None:
    # complete_many compared each task's late counter before and after the whole
    # batch: a current completion sent beside a stale ack of the same task was
    # answered "accepted": False although it completed the task.
    c = make()
    c.register({"id": "a"})
    c.submit(tasks(1))
    (d,) = c.take("a", 1)
    out = c.complete_many([{"task": d.id, "attempt": d.attempt},
                           {"task": d.id, "attempt": d.attempt + 5}])
    assert [o["accepted"] for o in out] == [True, False]
    assert c.task_view(d.id)["state"] == "completed"
    assert c.task_view(d.id)["completions"] == 1


@pytest.mark.parametrize("case", ["no agent", "no agent with the skill", "agent down"])
def test_a_hard_deadline_task_nobody_serves_fails_at_its_deadline(case: str) -> None:
    """Live tasks no agent could serve waited forever, hard deadline or not: a hard
    deadline was checked only when an agent reached the task. It now fails
    `deadline_expired` once its deadline passes while it waits."""
    ck = VirtualClock()
    c = make(ck)
    task: dict[str, Any] = {"id": "t", "deadline": 2.0, "hard_deadline": True}
    if case == "no agent with the skill":
        c.register({"id": "a"})
        task["skills"] = ["gpu"]
    elif case == "agent down":
        c.register({"id": "a"})
        ck.advance(6.0)
        c.expire()
    soft = {"id": "s", "deadline": 2.0, **({"skills": ["gpu"]} if "skill" in case else {})}
    c.submit([task, soft])
    for _ in range(6):
        ck.advance(1.0)
        c.tick()
        c.expire()
    v = c.task_view("t")
    assert v["state"] == "failed" and v["code"] == "deadline_expired", v
    assert "deadline" in v["reason"]
    # A soft deadline is a cost, not a limit: that task still waits (docs/live.md).
    assert c.task_view("s")["state"] == "queued"


def test_a_poison_task_that_failed_for_good_does_not_keep_its_agent_shut() -> None:
    """Three tasks that always fail on the only agent: each ended `retries_exhausted`
    after its 3 attempts, but their last failures kept re-opening the agent's breaker with
    the timeout doubling (455 s to end them; then 5 healthy tasks waited 484 s on a
    healthy agent). A failure that ends its task for good says nothing more about the
    agent: it no longer counts, so once the poison is gone the healthy tasks run."""
    ck = VirtualClock()
    c = make(ck, lease_s=1e9)
    c.register({"id": "a"})
    c.submit([{"id": f"p{i}"} for i in range(3)])

    def step() -> None:
        for d in c.take("a", 1):
            bad = {"outcome": "error", "error": "boom"} if d.id.startswith("p") else {}
            c.complete_many([{"task": d.id, "attempt": d.attempt, **bad}])
        ck.advance(1.0)
        c.tick()

    while any(c.task_view(f"p{i}")["state"] != "failed" for i in range(3)):
        step()
        assert ck.now() < 10_000
    assert {c.task_view(f"p{i}")["code"] for i in range(3)} == {"retries_exhausted"}
    assert all(c.task_view(f"p{i}")["attempts"] == 3 for i in range(3))
    assert c.agent_view("a")["breaker"] != "open"
    start = ck.now()
    c.submit([{"id": f"h{i}"} for i in range(5)])
    while any(c.task_view(f"h{i}")["state"] != "completed" for i in range(5)):
        step()
        assert ck.now() - start < 100, "healthy tasks wait on a breaker the poison opened"


def test_a_leaving_agent_returns_the_tasks_it_never_pulled_uncounted(tmp_path: Path) -> None:
    """Tasks the core had assigned to an agent that then left gracefully, before
    pulling them, stayed `assigned` on the departed agent until its lease expired and
    came back as a counted retry: with max_retries 0 they failed, never started."""
    ck = VirtualClock()
    c = make(ck, max_retries=0)
    c.register({"id": "a", "concurrency": 2})
    c.submit(tasks(2))
    assert {c.task_view(f"t{i}")["state"] for i in range(2)} == {"assigned"}
    c.leave("a")
    for i in range(2):
        v = c.task_view(f"t{i}")
        assert v["state"] == "queued", v
    c.register({"id": "b"})
    got = c.take("b", 5)
    c.complete_many([{"task": d.id, "attempt": d.attempt} for d in got])
    got = c.take("b", 5)
    c.complete_many([{"task": d.id, "attempt": d.attempt} for d in got])
    for i in range(2):
        v = c.task_view(f"t{i}")
        assert v["state"] == "completed" and v["agent"] == "b" and v["completions"] == 1, v
    ck.advance(60.0)
    c.expire()
    assert all(c.task_view(f"t{i}")["state"] == "completed" for i in range(2))
    store = LiveStore(f"sqlite:///{tmp_path / 'live.db'}")  # the log replays the same
    try:
        store.append(c.drain_rows())
        fresh = make(VirtualClock(ck.now()), max_retries=0)
        fresh.recover(store.rows(chunk=7))
    finally:
        store.close()
    for i in range(2):
        assert fresh.task_view(f"t{i}") == c.task_view(f"t{i}")
