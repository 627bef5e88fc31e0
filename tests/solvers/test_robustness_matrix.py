"""Regressions from the solver-matrix robustness hunt (docs/benchmarks/robustness.md)."""

from __future__ import annotations

import numpy as np
import pytest

from allocator.engine import solve
from allocator.solvers import nsga2
from allocator.validate import validate
from models import Agent, PlanStatus, Snapshot, SolveOptions, Task, UnassignedReason, Weights


def test_nsga2_stops_mating_when_the_budget_runs_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """A genome space too small for 60 distinct children (1 agent, 3 tasks) made pymoo's
    infill loop mate and repair 100 rounds in one generation, past any budget (3.9 s of a
    0.5 s limit): the rounds now stop once the budget's clock passes the evolve point."""
    snap = Snapshot(agents=[Agent(id="a", capacity={"cpu": 9})],
                    tasks=[Task(id=f"t{j}", work=1 + j, demand={"cpu": 2}) for j in range(3)],
                    weights=Weights(cost=1, makespan=1))
    now = [0.0]
    rounds = [0]
    repair = nsga2.CapacityRepair._do

    def counted(self: nsga2.CapacityRepair, *args: object, **kwargs: object) -> object:
        rounds[0] += 1
        now[0] = 100.0  # this mating round spends the whole budget
        return repair(self, *args, **kwargs)

    monkeypatch.setattr(nsga2.CapacityRepair, "_do", counted)
    plan = solve(snap, solver="nsga2", time_limit=1.0, clock=lambda: now[0])
    assert rounds[0] <= 2
    assert validate(snap, plan) == []
    assert len(plan.assignments) + len(plan.unassigned) == 3


def test_balance_bound_is_a_number_when_a_task_of_work_0_has_no_agent() -> None:
    """0 work over 0 speed made the single-task makespan bound NaN: `balance` reported
    bound NaN with gap 0 (a claim of optimality) for a plan 2 above the optimum."""
    snap = Snapshot(agents=[Agent(id="a")],
                    tasks=[Task(id="t0", work=0, skills=["x"]), Task(id="t1", work=2)],
                    weights=Weights(cost=0, makespan=1))
    exact = solve(snap, solver="milp", time_limit=5)
    plan = solve(snap, solver="balance", time_limit=1)
    assert validate(snap, plan) == []
    assert plan.bound is not None and plan.gap is not None
    assert plan.bound <= exact.objective + 1e-9
    assert plan.gap == pytest.approx((plan.objective - plan.bound) / plan.objective)


@pytest.mark.parametrize("solver", ["greedy", "cpsat", "milp", "auto", "balance"])
def test_a_task_the_migration_cap_keeps_out_says_so(solver: str) -> None:
    """t0 may not stay on a0 (forbidden) and options.max_migrations = 0 forbids moving it:
    every backend left it out, as it must, but with `solver_limit` ("no better plan within
    its budget"), also in plans proven optimal; the reason now names the cap."""
    snap = Snapshot(agents=[Agent(id="a0"), Agent(id="a1")],
                    tasks=[Task(id="t0", current_agent="a0", forbidden_agents=["a0"]),
                           Task(id="t1", current_agent="a1")],
                    options=SolveOptions(max_migrations=0))
    plan = solve(snap, solver=solver, time_limit=5)
    assert validate(snap, plan) == []
    [left] = [u for u in plan.unassigned if u.task == "t0"]
    assert left.code == UnassignedReason.MIGRATION_LIMIT
    assert "max_migrations" in left.reason


def test_milp_keeps_a_plan_when_its_solution_overfills_a_capacity_by_1e_7() -> None:
    """HiGHS accepts rows within 1e-6: both tasks on a capacity 7e-8 short of
    their demand. The model check refused that and milp returned no plan at all (status
    error, every task `solver_limit`) although leaving one task out is optimal."""
    snap = Snapshot(agents=[Agent(id="a0", capacity={"cpu": 0.7 * (1 - 1e-7)})],
                    tasks=[Task(id="t0", demand={"cpu": 0.1 + 0.2}),
                           Task(id="t1", demand={"cpu": 0.4}, priority="critical")])
    exact = solve(snap, solver="cpsat", time_limit=5)
    plan = solve(snap, solver="milp", time_limit=2)
    assert validate(snap, plan) == []
    assert plan.objective == pytest.approx(exact.objective)
    assert [a.task for a in plan.assignments] == ["t1"]


def test_cpsat_keeps_its_greedy_hint_when_it_finds_nothing_in_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A first solve at load 60 (0.5 s, cold CP-SAT) ended with no solution: cpsat then
    returned every task unassigned (status timeout, no objective) although the greedy
    plan it had built as its hint is feasible; only a warm start was kept before."""
    from ortools.sat.python import cp_model

    snap = Snapshot(agents=[Agent(id="a0", concurrency=2), Agent(id="a1", speed=0.5)],
                    tasks=[Task(id=f"t{j}", work=1 + j, release=j, deadline=j + 6,
                                hard_deadline=j % 2 == 0) for j in range(5)],
                    weights=Weights(cost=0, tardiness=1))
    monkeypatch.setattr(cp_model.CpSolver, "solve", lambda self, *a, **k: cp_model.UNKNOWN)
    plan = solve(snap, solver="cpsat", time_limit=0.5)
    assert validate(snap, plan) == []
    assert plan.objective is not None and plan.status.value == "feasible"
    assert len(plan.assignments) == 5
    assert plan.bound is not None and plan.bound <= plan.objective + 1e-9  # the LP's


def test_cpsat_imbalance_is_exact_on_agents_with_several_lanes() -> None:
    """Imbalance is busy time / concurrency; CP-SAT's load_max was an integer tick
    count with k * load_max >= load, so 1 tick on 3 lanes counted 1, not 1/3. cpsat
    claimed 'optimal' (bound 4.3) for a plan greedy beat (4.1)."""
    snap = Snapshot(agents=[Agent(id="a0", concurrency=3), Agent(id="a1"), Agent(id="a2")],
                    tasks=[Task(id="t0", work=1), Task(id="t1", work=0, release=4)],
                    weights=Weights(cost=0, makespan=1, imbalance=0.3))
    plan = solve(snap, solver="cpsat", time_limit=5)
    other = solve(snap, solver="greedy", time_limit=1)
    assert validate(snap, plan) == []
    assert plan.agent_of()["t0"] == "a0"
    assert plan.objective == pytest.approx(4 + 0.3 / 3)
    assert plan.objective <= other.objective + 1e-9
    assert plan.bound is not None and plan.bound <= plan.objective + 1e-9


@pytest.mark.parametrize("solver", ["cpsat", "milp"])
def test_a_task_already_past_its_deadline_is_planned_late(solver: str) -> None:
    """A snapshot taken at time 10 with a task due at 5 (soft, tardiness weighted): CP-SAT's
    lateness variable stopped at the horizon, so the model was infeasible and cpsat (and
    milp, which delegates) returned no plan; an overdue task left out also counted late."""
    snap = Snapshot(time=10, agents=[Agent(id="a")],
                    tasks=[Task(id="t0", work=2, deadline=5), Task(id="t1", work=1, deadline=30),
                           Task(id="t2", work=1, deadline=4, skills=["x"])],
                    weights=Weights(cost=0, tardiness=1))
    plan = solve(snap, solver=solver, time_limit=5)
    assert validate(snap, plan) == []
    assert plan.status.value == "optimal", plan.message
    assert plan.agent_of() == {"t0": "a", "t1": "a"}
    # t0 ends at 12: 7 late x 2 (a normal task's tardiness weight); t2 left out: 10000
    assert plan.objective == pytest.approx(14 + 10_000)
    assert plan.bound is not None and plan.bound <= plan.objective + 1e-6


@pytest.mark.parametrize(("override", "field"), [
    pytest.param({"seed": 2**40}, "seed", id="seed past int32 (ortools TypeError)"),
    pytest.param({"seed": -1}, "seed", id="negative seed"),
    pytest.param({"time_limit": float("inf")}, "time_limit", id="infinite time limit"),
    pytest.param({"time_limit": 1e6}, "time_limit", id="time limit past a day"),
])
def test_solve_overrides_are_checked_like_the_snapshot_options(
        override: dict[str, float], field: str) -> None:
    """`--seed 99999999999` reached CP-SAT and came back as ortools' TypeError; a seed
    or time limit given to solve() now meets SolveOptions' own rules, field named."""
    from allocator.errors import InvalidInputError

    snap = Snapshot(agents=[Agent(id="a")], tasks=[Task(id="t", deadline=3)],
                    weights=Weights(tardiness=1))
    with pytest.raises(InvalidInputError) as err:
        solve(snap, solver="cpsat", **override)  # type: ignore[arg-type]
    assert err.value.field == field


def test_rebalance_with_hard_deadlines_keeps_the_cap_on_voluntary_moves() -> None:
    """--max-migrations 0 with hard deadlines (the CP-SAT scheduling fallback): the cap
    given to CP-SAT was 0 + the forced moves (tasks on a down agent); t1 there could go
    nowhere, so that allowance went to a voluntary move (t3 off a1)."""
    from allocator.rebalance import rebalance

    snap = Snapshot(
        agents=[Agent(id="a0", speed=4), Agent(id="a1"), Agent(id="a3", status="down")],
        tasks=[Task(id="t1", skills=["z"], current_agent="a3"),
               Task(id="t3", work=3, current_agent="a1"),
               Task(id="t4", work=1, current_agent="a1"),
               Task(id="t6", work=1, deadline=5, hard_deadline=True, current_agent="a0")],
        weights=Weights(cost=0, imbalance=1))
    res = rebalance(snap, max_migrations=0, time_limit=5, seed=0)
    assert validate(snap, res.plan) == []
    voluntary = [mg.task for mg in res.plan.migrations if mg.source != "a3"]
    assert voluntary == []
    free = rebalance(snap, max_migrations=1, time_limit=5, seed=0)
    assert [mg.task for mg in free.plan.migrations if mg.source != "a3"] != []  # it pays


def test_greedy_keeps_within_the_migration_cap_while_it_places() -> None:
    """greedy ignored options.max_migrations (41 moves on a cap of 1 at 20 x 200); the
    shared repair then sent 40 back home or out, and the tasks the moves had crowded out
    stayed out with room free ('solver_limit'). Here n1 fits a1 once m2 stays home."""
    snap = Snapshot(agents=[Agent(id="a0", capacity={"cpu": 2}, cost_rate=5),
                            Agent(id="a1", capacity={"cpu": 2})],
                    tasks=[Task(id="m1", demand={"cpu": 1}, current_agent="a0", priority="high"),
                           Task(id="m2", demand={"cpu": 1}, current_agent="a0", priority="high"),
                           Task(id="n1", demand={"cpu": 1}, allowed_agents=["a1"],
                                priority="low"),
                           Task(id="h", deadline=100, hard_deadline=True)],  # no ejection repair
                    weights=Weights(cost=1, makespan=0.1), options=SolveOptions(max_migrations=1))
    plan = solve(snap, solver="greedy", time_limit=1)
    assert validate(snap, plan) == []
    assert plan.unassigned == []
    assert len(plan.migrations) == 1
    assert "to keep the hard constraints" not in (plan.message or "")


def test_cpsat_is_never_worse_than_its_own_greedy_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    """At 20 x 200 with hard deadlines and 1 s, CP-SAT's incumbent was worse than the greedy
    hint it started from (98 tasks out against 97, 15 of them with room: solver_limit);
    cpsat returned it. A not-proven CP-SAT answer worse than the hint now yields the hint."""
    from allocator.solvers import cpsat

    snap = Snapshot(agents=[Agent(id="a0"), Agent(id="a1", speed=2)],
                    tasks=[Task(id=f"t{j}", work=1 + j, deadline=8, hard_deadline=j == 0)
                           for j in range(4)],
                    weights=Weights(cost=0, makespan=1))
    real = cpsat.solve_cpsat_arrays

    def worse(problem, **kw):  # type: ignore[no-untyped-def]
        res = real(problem, **kw)
        out = np.full(problem.n, -1, dtype=np.int64)  # a feasible, poor incumbent
        return res._replace(agent_of=out, order_key=None, status=PlanStatus.FEASIBLE)

    monkeypatch.setattr(cpsat, "solve_cpsat_arrays", worse)
    plan = solve(snap, solver="cpsat", time_limit=2)
    hint = solve(snap, solver="greedy", time_limit=1)
    assert validate(snap, plan) == []
    assert plan.objective is not None and plan.objective <= hint.objective + 1e-9


def _ends_at_its_deadline(fast_speed: float) -> Snapshot:
    """`due` fits only first on `slow` (2 / 0.5 = 4 = its hard deadline), before `urgent`."""
    return Snapshot(
        agents=[Agent(id="slow", speed=0.5), Agent(id="fast", speed=fast_speed, concurrency=4)],
        tasks=[Task(id="due", work=2, priority="high", deadline=4.0, hard_deadline=True,
                    forbidden_agents=["fast"]),
               Task(id="urgent", work=0.5, priority="critical", forbidden_agents=["fast"]),
               Task(id="big", work=5.0, priority="critical")],
        weights=Weights(makespan=1))


@pytest.mark.parametrize("fast_speed", [3.0, 1.3], ids=["thirds", "lossy ticks"])
@pytest.mark.parametrize("solver", ["cpsat", "milp", "auto"])
def test_a_task_that_ends_exactly_at_its_hard_deadline_is_placed(solver: str,
                                                                fast_speed: float) -> None:
    """Durations in thirds (speed 3) have no power-of-ten scale: the lossy tick rounded
    `due`'s duration up and floored its deadline, so the scheduling model ruled it out
    and every exact backend left it out ("deadline_conflict", 100,000 in penalties) with
    the model "optimal". Thirds now scale exactly (optimal), and a lossy tick rounds a
    deadline as it rounds durations."""
    snap = _ends_at_its_deadline(fast_speed)
    plan = solve(snap, solver=solver, time_limit=5)
    assert validate(snap, plan) == []
    assert plan.unassigned == []
    assert {a.task: (a.start, a.end) for a in plan.assignments if a.agent == "slow"} == {
        "due": (0.0, 4.0), "urgent": (4.0, 5.0)}
    if fast_speed == 3.0:
        assert plan.status == PlanStatus.OPTIMAL


def test_greedy_runs_a_task_due_now_ahead_of_critical_work_with_slack() -> None:
    """The greedy places critical tasks first and appends each task to a queue: `due`
    (high, hard deadline 4, 4 units long on `slow`, its only agent) came after `urgent`
    and was left out ("deadline_conflict", a 100,000 penalty) though running it first
    breaks nothing. It now runs ahead of `urgent`, which has no deadline."""
    snap = _ends_at_its_deadline(3.0)
    plan = solve(snap, solver="greedy", time_limit=5)
    assert validate(snap, plan) == []
    assert plan.unassigned == []
    assert {a.task: (a.start, a.end) for a in plan.assignments if a.agent == "slow"} == {
        "due": (0.0, 4.0), "urgent": (4.0, 5.0)}


def test_greedy_never_runs_a_task_early_at_the_cost_of_another_hard_deadline() -> None:
    """Where running `due` first would make `urgent` miss its own hard deadline (1), the
    critical one keeps its place and `due` is left out with the reason that says so."""
    base = _ends_at_its_deadline(3.0)
    snap = base.model_copy(update={"tasks": [
        t.model_copy(update={"deadline": 1.0, "hard_deadline": True}) if t.id == "urgent" else t
        for t in base.tasks]})
    plan = solve(snap, solver="greedy", time_limit=5)
    assert validate(snap, plan) == []
    assert [(u.task, u.code) for u in plan.unassigned] == [
        ("due", UnassignedReason.DEADLINE_CONFLICT)]


#: A generated snapshot (coordinator's hunt, seed 25): 4 agents, 26 tasks, hard deadlines,
#: skills, a migration cap of 1.
_SEED25 = (
    '{"agents":[{"id":"g0","capacity":{"cpu":8.0},"speed":0.5,"concurrency":2,"cost_rate":1.0},'
    '{"id":"g1","capacity":{"cpu":1.0},"speed":3.0,"skills":["a","b"],"cost_rate":0.5},{"id":"g'
    '2","capacity":{"cpu":16.0},"speed":2.0,"skills":["a","b"],"cost_rate":3.0},{"id":"g3","cap'
    'acity":{"cpu":2.0},"speed":3.0,"concurrency":4}],"tasks":[{"id":"t0","work":5.0,"priority"'
    ':"critical"},{"id":"t1","work":3.0,"demand":{"cpu":2.0},"release":3.0,"deadline":18.0,"har'
    'd_deadline":true},{"id":"t2","work":2.0,"priority":"high","release":1.0,"deadline":5.0,"ha'
    'rd_deadline":true,"current_agent":"g2"},{"id":"t3","work":2.0,"priority":"high","deadline"'
    ':4.0},{"id":"t4","work":3.0,"demand":{"cpu":2.0},"deadline":8.0,"hard_deadline":true,"curr'
    'ent_agent":"g1"},{"id":"t5","work":5.0,"priority":"critical","skills":["a"]},{"id":"t6","w'
    'ork":0.5,"demand":{"cpu":3.0},"deadline":4.0,"hard_deadline":true},{"id":"t7","work":5.0,"'
    'priority":"high","deadline":8.0},{"id":"t8","work":2.0,"priority":"high","deadline":30.0,"'
    'hard_deadline":true},{"id":"t9","work":2.0,"demand":{"cpu":1.0},"priority":"critical","rel'
    'ease":1.0},{"id":"t10","demand":{"cpu":0.0},"priority":"high","release":3.0,"deadline":11.'
    '0,"hard_deadline":true,"current_agent":"g2"},{"id":"t11","work":0.5,"priority":"low","dead'
    'line":2.0,"hard_deadline":true,"current_agent":"g3"},{"id":"t12","work":0.5,"forbidden_age'
    'nts":["g0"],"current_agent":"g2"},{"id":"t13","work":0.5,"priority":"critical","release":5'
    '.0},{"id":"t14","demand":{"cpu":3.0},"priority":"critical","release":1.0},{"id":"t15","pri'
    'ority":"low","skills":["a"]},{"id":"t16","deadline":4.0,"hard_deadline":true},{"id":"t17",'
    '"demand":{"cpu":1.0},"priority":"low","release":1.0,"deadline":9.0},{"id":"t18","work":0.5'
    ',"priority":"critical","release":1.0,"deadline":5.0,"hard_deadline":true,"current_agent":"'
    'g1"},{"id":"t19","work":2.0,"demand":{"cpu":0.0},"priority":"low","current_agent":"g1"},{"'
    'id":"t20","work":2.0,"priority":"critical","deadline":2.0,"hard_deadline":true,"forbidden_'
    'agents":["g3"]},{"id":"t21","work":2.0,"priority":"low","deadline":30.0,"hard_deadline":tr'
    'ue,"forbidden_agents":["g1"]},{"id":"t22","work":3.0,"current_agent":"g1"},{"id":"t23","wo'
    'rk":0.5,"deadline":8.0,"hard_deadline":true},{"id":"t24","work":0.5,"priority":"critical",'
    '"release":1.0,"skills":["a"],"forbidden_agents":["g1"]},{"id":"t25","work":0.5,"demand":{"'
    'cpu":1.0},"priority":"critical","release":3.0,"deadline":18.0,"hard_deadline":true}],"weig'
    'hts":{"cost":0.0},"options":{"seed":25,"max_migrations":1}}'
)


def test_balance_places_a_left_out_task_that_fits_once_the_plan_is_whole() -> None:
    """balance's LPT and critical-agent search know capacity, not hard deadlines under the
    plan's order: t20 (critical, 2 units due at 2) was left out ("deadline_conflict",
    1,000,000 in penalties) though running it first on the fast agent breaks nothing. Its
    plan now ends with the fill pass the greedy uses (every rule re-checked)."""
    snap = Snapshot.model_validate_json("".join(_SEED25))
    plan = solve(snap, solver="balance", time_limit=2)
    assert validate(snap, plan) == []
    assert "t20" not in {u.task for u in plan.unassigned}
    assert plan.objective < 1_000_000
