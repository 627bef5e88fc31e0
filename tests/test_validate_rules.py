"""The validator's exact verdicts: each rule's violation (kind, task, agent, message),
its boundary (float tolerance) and the cases where it must stay silent.

Complements test_validate.py (one violation of each kind is caught) with the
precise answers a user reads, so a rule that reports the wrong task, the
wrong agent, a wrong count or fires one tolerance too early is caught.
"""

from __future__ import annotations

import pytest

from allocator.validate import ABS_TOL, REL_TOL, Violation, validate
from models import Agent, AgentOverride, Assignment, Plan, Snapshot, SolveOptions, Task
from models.plan import Unassigned

A = Agent(id="a", capacity={"cpu": 4.0, "mem": 2.0}, skills=["py", "sql"], speed=2.0,
          concurrency=2)
B = Agent(id="b", capacity={"cpu": 1.0})


def plan(*asg: tuple[str, str, float, float], unassigned: tuple[str, ...] = ()) -> Plan:
    return Plan(status="feasible", solver="test",
                assignments=[Assignment(task=t, agent=a, start=s, end=e) for t, a, s, e in asg],
                unassigned=[Unassigned(task=t, code="solver_limit", reason="r")
                            for t in unassigned])


def kinds(snap: Snapshot, p: Plan) -> list[tuple[str, str | None, str | None]]:
    return [(v.kind, v.task, v.agent) for v in validate(snap, p)]


def test_violation_prints_kind_and_message() -> None:
    v = Violation("capacity", "too much", agent="a")
    assert str(v) == "[capacity] too much"
    assert (v.task, v.agent) == (None, "a")


def test_bookkeeping_rules() -> None:
    snap = Snapshot(agents=[A], tasks=[Task(id="x", work=2), Task(id="y", work=2),
                                       Task(id="z", work=2)])
    p = plan(("x", "a", 0, 1), ("x", "a", 1, 2), ("ghost", "a", 0, 1),
             unassigned=("x", "nobody"))
    got = validate(snap, p)
    assert [(v.kind, v.task) for v in got] == [
        ("assigned_and_unassigned", "x"), ("unknown_task", None), ("assigned_twice", "x"),
        ("missing_task", "y"), ("missing_task", "z"), ("unknown_task", None)]
    assert got[0].message == "task 'x' is both"
    assert got[1].message == "unassigned task 'nobody' not in snapshot"
    assert got[2].message == "task 'x' assigned 2 times"
    assert got[3].message == "task 'y' neither assigned nor reported"
    assert got[5].message == "assigned task 'ghost' not in snapshot"
    # Every task listed once: nothing to say.
    assert validate(snap, plan(("x", "a", 0, 1), unassigned=("y", "z"))) == []


def test_checks_go_on_after_an_unknown_task_or_agent() -> None:
    snap = Snapshot(agents=[A], tasks=[Task(id="x", skills=["gpu"]), Task(id="y", skills=["gpu"])])
    got = validate(snap, plan(("ghost", "a", 0, 1), ("x", "a", 0, 0.5), ("y", "nowhere", 0, 1),
                              ("y", "a", 0, 0.5)))
    assert [(v.kind, v.task) for v in got][-4:] == [
        ("unknown_task", None), ("skill", "x"), ("unknown_agent", "y"), ("skill", "y")]


def test_unknown_agent_skips_the_other_checks() -> None:
    snap = Snapshot(agents=[A], tasks=[Task(id="x", skills=["gpu"])])
    got = validate(snap, plan(("x", "nowhere", 0, 1)))
    assert [(v.kind, v.task, v.agent) for v in got] == [("unknown_agent", "x", "nowhere")]
    assert got[0].message == "task 'x' on unknown agent 'nowhere'"


@pytest.mark.parametrize("status", ["down", "draining"])
def test_agent_not_up(status: str) -> None:
    snap = Snapshot(agents=[A.model_copy(update={"status": status})], tasks=[Task(id="x")])
    got = validate(snap, plan(("x", "a", 0, 0.5)))
    assert [(v.kind, v.task, v.agent) for v in got] == [("agent_not_up", "x", "a")]
    assert got[0].message.startswith("'x' on 'a' which is ")


def test_skills_allowed_forbidden() -> None:
    tasks = [Task(id="s", skills=["py", "gpu", "rust"]), Task(id="ok", skills=["py", "sql"]),
             Task(id="al", allowed_agents=["b"]), Task(id="al-ok", allowed_agents=["a", "b"]),
             Task(id="fb", forbidden_agents=["a"]), Task(id="fb-ok", forbidden_agents=["b"]),
             Task(id="empty-allowed", allowed_agents=[])]
    snap = Snapshot(agents=[A, B], tasks=tasks)
    p = plan(*((t.id, "a", 0.0, 0.5) for t in tasks))
    got = [v for v in validate(snap, p) if v.kind != "overlap"]
    assert [(v.kind, v.task, v.agent) for v in got] == [
        ("skill", "s", "a"), ("not_allowed", "al", "a"), ("forbidden", "fb", "a"),
        ("not_allowed", "empty-allowed", "a")]
    assert got[0].message == "'s' needs ['gpu', 'rust'] which 'a' lacks"
    assert got[1].message == "'al' is not allowed on 'a'"
    assert got[2].message == "'fb' is forbidden on 'a'"


def test_capacity_sums_per_resource_with_overrides_and_tolerance() -> None:
    tasks = [Task(id="x", demand={"cpu": 3.0, "mem": 1.0}),
             Task(id="y", demand={"cpu": 1.5, "mem": 1.0},
                  overrides={"a": AgentOverride(demand={"cpu": 0.5}),
                             "b": AgentOverride(cost=1.0)})]
    snap = Snapshot(agents=[A, B], tasks=tasks)
    # x + y on a: cpu 3.5 <= 4 (y's override), mem 2 <= 2: fits exactly.
    assert validate(snap, plan(("x", "a", 0, 0.5), ("y", "a", 0, 0.5))) == []
    # y on b: its default cpu 1.5 > 1 (the b override has no demand), and b has no mem.
    got = validate(snap, plan(("y", "b", 0, 1), unassigned=("x",)))
    assert [v.message for v in got] == ["'b' holds 1.5 cpu > capacity 1",
                                        "'b' holds 1 mem > capacity 0"]
    # x on b: 3 > 1 cpu, 1 > 0 mem.
    got = validate(snap, plan(("x", "b", 0, 1), unassigned=("y",)))
    assert [(v.kind, v.agent) for v in got] == [("capacity", "b"), ("capacity", "b")]
    assert [v.message for v in got] == ["'b' holds 3 cpu > capacity 1",
                                        "'b' holds 1 mem > capacity 0"]
    assert got[0].task is None


@pytest.mark.parametrize(("cap", "fits"), [
    (10.0, True), (10.0 + 0.5 * (ABS_TOL + REL_TOL * 10), True), (10.0 * (1 - 3e-6), False),
    (9.99, False), (1e-7, True)])
def test_capacity_tolerance_is_tight(cap: float, fits: bool) -> None:
    need = 10.0 if cap > 1 else 1e-7 + 0.9 * ABS_TOL
    snap = Snapshot(agents=[Agent(id="a", capacity={"cpu": cap})],
                    tasks=[Task(id="x", demand={"cpu": need})])
    assert (validate(snap, plan(("x", "a", 0, 1))) == []) is fits


def test_schedule_rules() -> None:
    tasks = [Task(id="early", work=2, release=3), Task(id="now", work=2),
             Task(id="short", work=4), Task(id="late", work=2, deadline=5, hard_deadline=True),
             Task(id="soft", work=2, deadline=1)]
    snap = Snapshot(time=1.0, agents=[A.model_copy(update={"concurrency": 9})], tasks=tasks)
    p = plan(("early", "a", 2, 3), ("now", "a", 0.5, 1.5), ("short", "a", 1, 2.5),
             ("late", "a", 4.5, 5.5), ("soft", "a", 1, 2))
    got = validate(snap, p)
    assert [(v.kind, v.task, v.agent) for v in got] == [
        ("starts_early", "early", "a"), ("starts_early", "now", "a"),
        ("wrong_duration", "short", "a"), ("hard_deadline", "late", "a")]
    assert got[0].message == "'early' starts at 2.0 before 3.0"
    assert got[1].message == "'now' starts at 0.5 before 1.0"
    assert got[2].message == "'short' runs 1.5 on 'a', expected 2.0"
    assert got[3].message == "'late' ends 5.5 after deadline 5.0"
    ok = plan(("early", "a", 3, 4), ("now", "a", 1, 2), ("short", "a", 1, 3),
              ("late", "a", 4, 5), ("soft", "a", 9, 10))
    assert validate(snap, ok) == []


@pytest.mark.parametrize(("start", "end", "ok"), [
    (3.0, 4.0, True), (3.0 - 0.5e-6, 4.0 - 0.5e-6, True), (3.0 - 1e-5, 4.0 - 1e-5, False),
    (3.0, 4.0 + 0.5e-6, True), (3.0, 4.0 + 1e-5, False), (3.0, 4.0 - 1e-5, False),
    (4.0 + 1e-5, 5.0 + 1e-5, False)])
def test_time_tolerances(start: float, end: float, ok: bool) -> None:
    t = Task(id="x", work=2, release=3, deadline=5.0, hard_deadline=end > 4.5)
    snap = Snapshot(agents=[A], tasks=[t])
    assert (validate(snap, plan(("x", "a", start, end))) == []) is ok


def test_time_tolerance_boundaries_are_inclusive() -> None:
    # Starting exactly one ABS_TOL before the release is allowed (<=, not <).
    snap = Snapshot(agents=[A], tasks=[Task(id="x", work=0, release=ABS_TOL)])
    assert validate(snap, plan(("x", "a", 0.0, 0.0))) == []
    # A zero-work task may last exactly ABS_TOL (>, not >=) but not twice that.
    snap = Snapshot(agents=[A], tasks=[Task(id="x", work=0)])
    assert validate(snap, plan(("x", "a", 0.0, ABS_TOL))) == []
    assert [v.kind for v in validate(snap, plan(("x", "a", 0.0, 2 * ABS_TOL)))] == [
        "wrong_duration"]


@pytest.mark.parametrize(("off", "ok"), [(5e-4, True), (1.5e-3, False)])
def test_duration_tolerance_grows_with_the_duration(off: float, ok: bool) -> None:
    snap = Snapshot(agents=[A], tasks=[Task(id="x", work=2000)])  # 1000 at speed 2
    assert (validate(snap, plan(("x", "a", 0.0, 1000.0 + off))) == []) is ok


def test_hard_deadline_needs_both_flag_and_deadline() -> None:
    # The model refuses a hard deadline without a deadline; the validator must not crash
    # (or fire) on one built around the model.
    snap = Snapshot(agents=[A], tasks=[Task(id="x", work=2, deadline=0.5), Task(id="y", work=2)])
    object.__setattr__(snap.tasks[1], "hard_deadline", True)
    assert validate(snap, plan(("x", "a", 0, 1), ("y", "a", 50, 51))) == []


def test_migration_cap_counts_only_moved_placed_tasks() -> None:
    tasks = [Task(id=f"m{k}", current_agent="b") for k in range(7)]
    tasks += [Task(id="stay", current_agent="a"), Task(id="new"),
              Task(id="home-left", current_agent="b")]
    agents = [A.model_copy(update={"concurrency": 20}), B]
    p = plan(*((f"m{k}", "a", 0.0, 0.5) for k in range(7)), ("stay", "a", 0, 0.5),
             ("new", "a", 0, 0.5), unassigned=("home-left",))
    for cap, bad in ((7, False), (8, False), (6, True), (0, True)):
        snap = Snapshot(agents=agents, tasks=tasks, options=SolveOptions(max_migrations=cap))
        got = validate(snap, p)
        assert [v.kind for v in got] == (["max_migrations"] if bad else []), cap
    snap = Snapshot(agents=agents, tasks=tasks, options=SolveOptions(max_migrations=6))
    assert validate(snap, p)[0].message == (
        "7 tasks leave their current agent (options.max_migrations = 6): "
        "m0, m1, m2, m3, m4 ...")
    five = plan(*((f"m{k}", "a", 0.0, 0.5) for k in range(5)),
                unassigned=("m5", "m6", "stay", "new", "home-left"))
    snap = Snapshot(agents=agents, tasks=tasks, options=SolveOptions(max_migrations=4))
    assert validate(snap, five)[0].message.endswith(": m0, m1, m2, m3, m4")
    six = plan(*((f"m{k}", "a", 0.0, 0.5) for k in range(6)),
               unassigned=("m6", "stay", "new", "home-left"))
    snap = Snapshot(agents=agents, tasks=tasks, options=SolveOptions(max_migrations=5))
    assert validate(snap, six)[0].message.endswith(": m0, m1, m2, m3, m4 ...")
    assert validate(Snapshot(agents=agents, tasks=tasks), p) == []  # no cap


def test_concurrency_overlap_sweep() -> None:
    one = Agent(id="one", concurrency=1)
    two = Agent(id="two", concurrency=2)
    tasks = [Task(id=f"t{k}", work=2) for k in range(4)]
    snap = Snapshot(agents=[one, two], tasks=tasks)
    # Back to back on one lane, three overlapping on two lanes.
    got = validate(snap, plan(("t0", "one", 0, 2), ("t1", "one", 2, 4),
                              ("t2", "two", 0, 2), ("t3", "two", 0, 2)))
    assert got == []
    got = validate(snap, plan(("t0", "one", 0, 2), ("t1", "one", 1.5, 3.5),
                              ("t2", "two", 0, 2), ("t3", "two", 1, 3)))
    assert [(v.kind, v.task, v.agent) for v in got] == [("overlap", "t1", "one")]
    assert got[0].message == "'one' runs 2 tasks at time 1.5 (concurrency 1)"
    tasks3 = [*tasks, Task(id="t4", work=2)]
    snap3 = Snapshot(agents=[one, two], tasks=tasks3)
    got = validate(snap3, plan(("t0", "one", 0, 2), ("t1", "one", 4, 6), ("t2", "two", 0, 2),
                               ("t3", "two", 0.5, 2.5), ("t4", "two", 1, 3)))
    assert [(v.kind, v.task, v.agent) for v in got] == [("overlap", "t4", "two")]
    assert "runs 3 tasks at time 1 (concurrency 2)" in got[0].message
    # An overlap after an earlier task ended (the sweep's count comes back to exactly 0).
    got = validate(snap, plan(("t0", "one", 0, 2), ("t1", "one", 2, 4), ("t2", "one", 3, 5),
                              ("t3", "two", 0, 2)))
    assert [(v.kind, v.task) for v in got] == [("overlap", "t2")]
    # Ends sort before starts at the same instant, whatever the task ids.
    tiny = Snapshot(agents=[one], tasks=[Task(id="z", work=ABS_TOL), Task(id="a", work=1)])
    assert validate(tiny, plan(("z", "one", 0.0, ABS_TOL), ("a", "one", 0.0, 1.0))) == []
    # Reported once per agent, even when several instants overlap.
    got = validate(snap, plan(("t0", "one", 0, 2), ("t1", "one", 0, 2), ("t2", "one", 0, 2),
                              ("t3", "one", 0, 2)))
    assert [v.kind for v in got] == ["overlap"]
