"""SolveContext: every backend can be stopped, reports monotone progress, and the
returned plan is never worse than the best it reported."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
import time

import pytest

from allocator import solve, validate
from allocator.io import gap_to_snapshot
from allocator.io.gapgen import generate_gap
from allocator.solvers.context import Improvement
from models import Plan

STOPPABLE = ["auto", "milp", "cpsat"]


def _record() -> tuple[list[Improvement], list[Plan], object]:
    seen: list[Improvement] = []
    plans: list[Plan] = []

    def on_improve(imp: Improvement, to_plan) -> None:  # type: ignore[no-untyped-def]
        seen.append(imp)
        if len(plans) < 2:  # build a couple of plans (what the HTTP worker stores)
            plans.append(to_plan())

    return seen, plans, on_improve


@pytest.mark.parametrize("backend", STOPPABLE)
def test_a_stopped_solve_returns_its_best_plan_quickly(backend: str) -> None:
    inst = generate_gap("d", 20, 400, seed=5)  # not proven within seconds by any backend
    snap = gap_to_snapshot(inst, time_limit=60.0)
    seen, plans, on_improve = _record()
    stop = threading.Event()
    out: list[Plan] = []
    t = threading.Thread(target=lambda: out.append(
        solve(snap, solver=backend, stop=stop, on_improve=on_improve)))  # type: ignore[arg-type]
    t0 = time.perf_counter()
    t.start()
    while not seen and time.perf_counter() - t0 < 20:
        time.sleep(0.05)
    time.sleep(0.5)
    stop.set()
    t.join(timeout=15)
    assert not t.is_alive(), "the solve did not stop"
    plan = out[0]
    assert time.perf_counter() - t0 < 30  # far from the 60 s budget
    assert validate(snap, plan) == [] and plan.objective is not None
    assert seen, "no progress reported"
    # Progress is monotone, and the plan is at least as good as the best report.
    objs = [s.objective for s in seen]
    assert all(b < a for a, b in itertools.pairwise(objs))
    assert all(b.time_s >= a.time_s for a, b in itertools.pairwise(seen))
    assert plan.objective <= min(objs) + 1e-6 * abs(min(objs))
    for p in plans:  # plans built from reports carry the reported objective
        assert validate(snap, p) == []
        assert any(abs(p.objective - s.objective) <= 1e-6 * abs(s.objective) for s in seen)


def test_reported_objective_is_the_plan_objective_for_every_improvement() -> None:
    snap = gap_to_snapshot(generate_gap("e", 8, 60, seed=6), time_limit=1.0)
    seen: list[tuple[float, float]] = []
    plan = solve(snap, solver="auto",
                 on_improve=lambda imp, to_plan: seen.append((imp.objective,
                                                              to_plan().objective or 0.0)))
    assert seen and all(abs(a - b) <= 1e-6 * max(1.0, abs(a)) for a, b in seen)
    assert plan.objective is not None and plan.objective <= seen[-1][0] + 1e-6


def test_import_online_core_loads_no_solver_backend() -> None:
    code = ("import sys, allocator.online.core; "
            "bad = [m for m in ('ortools', 'pymoo', 'highspy') if m in sys.modules]; "
            "print(','.join(bad)); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, f"imported: {r.stdout.strip()} {r.stderr[-500:]}"
