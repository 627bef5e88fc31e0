"""The compiled two-machine solver (allocator/roadef/pair.py) against CP-SAT's optimum."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from allocator.roadef import pair, subproblem
from allocator.roadef.evaluate import evaluate
from allocator.roadef.generate import generate_instance
from allocator.roadef.instance import RoadefInstance
from allocator.roadef.state import RoadefState

pytestmark = pytest.mark.skipif(not pair.HAVE_NUMBA, reason="the pair solver needs numba")


def _instance(seed: int) -> RoadefInstance:
    """A generated instance without transient resources and balances (where waste steps
    run), with spreads at the locations each service covers (so they bite), the
    generator's dependencies, and move costs of every kind."""
    inst = generate_instance(processes=70, machines=7, resources=3, seed=seed,
                             locations=3, neighbourhoods=2)
    cover = np.zeros(inst.n_services, dtype=np.int64)
    for s in range(inst.n_services):
        cover[s] = len(set(inst.location[inst.initial[inst.service == s]].tolist()))
    return dataclasses.replace(inst, transient=np.zeros(inst.n_resources, dtype=bool),
                               balances=(), spread_min=cover, weight_service_move=1000)


def _moved(inst: RoadefInstance, seed: int) -> RoadefState:
    """A placement a few hundred random feasible shifts away from the initial one."""
    st = RoadefState(inst)
    rng = np.random.default_rng(seed)
    for _ in range(400):
        st.shift_ok(int(rng.integers(inst.n_processes)), int(rng.integers(inst.n_machines)))
    return st


def test_pair_solver_proves_cp_sats_optimum_on_every_pair() -> None:
    """Every pair of machines of generated placements: the branch and bound proves the
    cost change CP-SAT proves for the same sub-model, its placement passes every rule and
    its change is the evaluator's; and each rule shapes some of these sub-problems
    (two processes of one service, spread-restricted choices, dependency clauses, moved
    processes counted in the service-move maximum)."""
    seen = {"conflict": 0, "spread": 0, "dependency": 0, "service_move": 0, "gain": 0}
    for seed in range(3):
        inst = _instance(seed)
        st = _moved(inst, seed)
        static = pair.PairStatic(st)
        for a in range(inst.n_machines):
            for b in range(a + 1, inst.n_machines):
                ms = np.array([a, b])
                on = np.flatnonzero(np.isin(st.a, ms))
                if on.size == 0:
                    continue
                assert pair.pair_applies(st, ms, on)
                pp = pair.PairProblem(st, ms, static)
                assert pp.ok
                procs, new, delta, optimal = pp.solve(pair.PAIR_NODE_LIMIT)
                assert optimal and np.array_equal(procs, on)
                res = subproblem.solve_subproblem(st, on, ms, time_limit=50.0,
                                                  deterministic=True, seed=0)
                assert res is not None and res[2]
                assert delta == res[1], (seed, a, b)
                allowed, base_cnt = pp.args[4], pp.args[11]
                seen["conflict"] += any(q >= 0 for _, q in pp.items)
                seen["spread"] += int((~allowed).any())
                seen["dependency"] += len(pp.args[15]) > 0
                seen["service_move"] += int(base_cnt.max(initial=0) > 0)
                if delta < 0:
                    seen["gain"] += 1
                    before = evaluate(inst, st.a).total
                    old = st.a[procs].copy()
                    for p, m in zip(procs.tolist(), new.tolist(), strict=True):
                        st.move(p, m)
                    assert st.rules_ok(procs.tolist(), ms.tolist())
                    assert evaluate(inst, st.a).total - before == delta
                    for p, m in zip(procs.tolist(), old.tolist(), strict=True):
                        st.move(p, m)
    assert all(v > 0 for v in seen.values()), seen


def test_pair_solver_stops_at_its_node_limit_with_a_valid_choice() -> None:
    """With a budget of a few nodes the search stops unproved and returns a choice no
    worse than the current placement (the caller's exact check then decides)."""
    inst = _instance(0)
    st = _moved(inst, 0)
    ms = np.array([0, 1])
    pp = pair.PairProblem(st, ms, pair.PairStatic(st))
    procs, new, delta, optimal = pp.solve(3)
    assert not optimal and delta <= 0
    assert np.array_equal(procs, np.flatnonzero(np.isin(st.a, ms)))
    assert set(new.tolist()) <= {0, 1}


def test_a2_5_waste_steps_take_the_pair_solver_and_pass_the_exact_check() -> None:
    """a2_5's waste steps (two whole machines) are solved by the pair solver inside the
    search, improve the initial placement, and every result passes the state's exact
    check: the cost the state keeps is the evaluator's."""
    from allocator.roadef import solver
    from allocator.roadef.instance import read_instance
    from allocator.solvers.context import SolveContext
    from tests.roadef_helpers import ROADEF

    model = ROADEF / "A" / "model_a2_5.txt"
    inst = read_instance(model, model.with_name("assignment_a2_5.txt"), "a2_5")
    search = solver._Search(inst, SolveContext(time_limit=60, workers=1, seed=0),
                            iterations=None)
    assert search.waste_steps()
    start = search.st.total()
    for _ in range(30):
        machines, _key = search.waste_machines()
        search.lns_step(machines, 1.0, linearization=solver.WASTE_LINEARIZATION)
    assert search.stats["pair_calls"] > 0 and search.stats["lns_rejected"] == 0
    assert search.stats["lns_improved"] > 0
    assert search.st.total() == evaluate(inst, search.st.a).total < start
