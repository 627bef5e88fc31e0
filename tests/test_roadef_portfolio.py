"""The child-process LNS of the annealing's sleeping window (allocator/roadef/portfolio.py):
its result is a feasible placement whose cost is the evaluator's, the solve takes it only
where the machine shows a spare core, and a run without it is unchanged."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from allocator.roadef import portfolio, solver
from allocator.roadef.bench import warm_up
from allocator.roadef.evaluate import evaluate, violations
from allocator.roadef.generate import generate_instance
from allocator.roadef.instance import RoadefInstance


@pytest.fixture(scope="module", autouse=True)
def _compiled() -> None:
    warm_up()  # the child loads the kernels from numba's cache instead of compiling them


def _zero_safety(seed: int = 0) -> RoadefInstance:
    """A generated instance with a transient resource and machine 0 without safety
    capacity: where the annealing thread sleeps through its first walk."""
    inst = generate_instance(processes=120, machines=12, resources=4, seed=seed, name="zs")
    safety = inst.safety.copy()
    safety[0] = 0
    assert inst.transient.any()
    return dataclasses.replace(inst, safety=safety)


def test_the_child_returns_a_feasible_placement_at_the_evaluators_cost() -> None:
    inst = _zero_safety()
    child = portfolio.ChildLns(inst, None, seed=3, deadline=time.time() + 3.0)
    got = child.result(grace=20.0)
    assert got is not None
    cost, placement = got
    assert placement.shape == inst.initial.shape
    assert violations(inst, placement) == []
    assert cost == evaluate(inst, placement).total < evaluate(inst, inst.initial).total
    assert child.proc.poll() is not None  # the child has ended


def test_idle_cores_is_a_share_of_the_machine() -> None:
    idle = portfolio.idle_cores(0.05)
    assert 0.0 <= idle <= (len(portfolio.os.sched_getaffinity(0)) + 0.01)


@pytest.mark.parametrize("spare", [True, False])
def test_the_solve_runs_the_child_only_with_a_spare_core(
        spare: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    inst = _zero_safety(1)
    monkeypatch.setattr(portfolio, "idle_cores", lambda seconds=0.2: 2.0 if spare else 0.5)
    monkeypatch.setattr(portfolio, "MIN_CHILD_SECONDS", 0.0)
    monkeypatch.setattr(portfolio, "RESULT_GRACE", 60.0)  # a loaded CI machine starts it late
    monkeypatch.setattr(portfolio, "MIN_SHARE", 0.0)  # nor does its load stop it (`watch`)
    res = solver.solve_roadef(inst, time_limit=7.0, seed=0)
    assert violations(inst, res.assignment) == []
    assert res.cost.total == evaluate(inst, res.assignment).total
    if spare:
        assert res.stats["anneal_portfolio_cost"] > 0  # the child's best came back
    else:
        assert "anneal_portfolio_cost" not in res.stats
    assert "portfolio_idle_cores_x10" in res.stats


def test_no_child_where_the_annealing_does_not_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    inst = generate_instance(processes=120, machines=12, resources=4, seed=2, name="safe")
    assert not (inst.safety == 0).all(axis=1).any()
    monkeypatch.setattr(portfolio, "idle_cores", lambda seconds=0.2: 2.0)
    started: list[object] = []
    monkeypatch.setattr(portfolio, "ChildLns", lambda *a, **k: started.append(a))
    res = solver.solve_roadef(inst, time_limit=2.0, seed=0)
    assert started == [] and violations(inst, res.assignment) == []
    assert np.array_equal(res.assignment.shape, inst.initial.shape)


@pytest.mark.parametrize(("share", "stopped"), [(0.95, False), (0.5, True)])
def test_the_child_stops_when_the_solve_loses_its_core(
        share: float, stopped: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """`watch`, called from the LNS thread: a thread that got less than MIN_SHARE of a core
    over the window (another solve took the core) stops the child; one that kept its core
    keeps it. The thread's clocks are injected: the real ones depend on the machine's load."""
    clock = {"wall": 100.0, "cpu": 10.0}
    monkeypatch.setattr(portfolio, "_wall", lambda: clock["wall"])
    monkeypatch.setattr(portfolio, "_thread_cpu", lambda: clock["cpu"])
    child = portfolio.ChildLns(_zero_safety(), None, seed=3, deadline=time.time() + 30.0)
    try:
        child.watch()
        clock["wall"] += 1.0  # within the window: nothing measured yet
        child.watch()
        assert not child.stopped
        clock["wall"] += portfolio.WATCH_SECONDS
        clock["cpu"] += share * (1.0 + portfolio.WATCH_SECONDS)
        child.watch()
        assert child.stopped is stopped
        if stopped:
            assert child.result(grace=5.0) is None  # terminated: nothing comes back
            assert child.proc.poll() is not None
        else:
            assert child.proc.poll() is None  # still searching
    finally:
        child.close()


def test_no_child_beyond_set_a_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond the steepest start's size (processes x machines above kernel.LIST_CELLS) the
    first descent takes the whole window: no child there; within it, one starts."""
    inst = _zero_safety()
    monkeypatch.setattr(portfolio, "idle_cores", lambda seconds=0.2: 2.0)
    search = solver._Search(inst, solver.SolveContext(time_limit=30.0, workers=1), None)
    child = solver._start_portfolio(inst, search, 20.0, 0)
    assert child is not None
    child.close()
    cells = inst.n_processes * inst.n_machines
    monkeypatch.setattr("allocator.roadef.kernel.LIST_CELLS", cells - 1)
    assert solver._start_portfolio(inst, search, 20.0, 0) is None
