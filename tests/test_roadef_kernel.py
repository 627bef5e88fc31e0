"""The compiled annealing kernel of the ROADEF solver: every move it keeps leaves a
feasible placement, and its incremental bookkeeping (usage, hard usage with the
transient rule, location/neighbourhood counts, moved counts and the cost
totals) equals a from-scratch rebuild and the independent evaluator."""

from __future__ import annotations

import numpy as np
import pytest

from allocator.roadef import kernel
from allocator.roadef.evaluate import evaluate, violations
from allocator.roadef.generate import generate_instance
from allocator.roadef.instance import RoadefInstance, read_instance
from allocator.roadef.solver import _Search
from allocator.roadef.state import RoadefState
from allocator.solvers.context import SolveContext
from tests.roadef_helpers import ROADEF, tiny

A = ROADEF / "A"
#: Without numba (an environment installed before it was a dependency) the kernel
#: runs as Python: correct but too slow for the long walks below.
compiled = pytest.mark.skipif(not kernel.HAVE_NUMBA, reason="numba is not installed")


def _instance(name: str) -> RoadefInstance:
    if name == "generated":
        return generate_instance(240, 24, 5, seed=3, locations=6, neighbourhoods=3)
    if name == "generated-600":
        return generate_instance(600, 40, 6, seed=5, locations=8, neighbourhoods=4)
    return read_instance(A / f"model_{name}.txt", A / f"assignment_{name}.txt")


def _same_as_rebuilt(st: RoadefState) -> None:
    fresh = RoadefState(st.inst, st.a.copy())
    for name in ("use", "hard", "mc", "loc_count", "nloc", "nb_count", "svc_moved"):
        assert np.array_equal(getattr(st, name), getattr(fresh, name)), name
    assert np.array_equal(st.hist[:len(fresh.hist)], fresh.hist)
    assert (st.mc_total, st.pm_total, st.mm_total, st.max_moved) == (
        fresh.mc_total, fresh.pm_total, fresh.mm_total, fresh.max_moved)


# a2_3: transient resources, spread and 577 dependencies; a1_4: balance costs and
# services over 50 neighbourhoods; generated: all of it on a small cluster
@compiled
@pytest.mark.parametrize("name", ["a2_3", "a1_4", "generated"])
@pytest.mark.parametrize("scan", [(1, 1), (50, 30)])
def test_annealing_keeps_every_rule_and_the_exact_cost(name: str,
                                                       scan: tuple[int, int]) -> None:
    inst = _instance(name)
    search = _Search(inst, SolveContext(time_limit=60, workers=1, seed=1), iterations=None)
    st = search.st
    an = kernel.Annealer(st)
    hot = 5 * search.anneal_scale()  # hot: many worsening moves are kept too
    start = st.total()
    an.run(30_000, hot, hot / 100, 0.5, seed=7, scan=scan[0], swap_scan=scan[1])
    assert an.stats[0] > 100 and an.stats[1] > 10  # shifts and swaps were kept
    assert violations(inst, st.a) == []
    assert st.breakdown() == evaluate(inst, st.a).as_dict()
    _same_as_rebuilt(st)
    # the best placement seen is feasible, its cost is exact, and not above the start
    assert violations(inst, an.best_a) == []
    assert evaluate(inst, an.best_a).total == int(an.best[0]) <= start
    # cold: a descent from there only improves
    an.run(20_000, 0.0, 0.0, 0.5, seed=8, scan=scan[0], swap_scan=scan[1])
    assert violations(inst, st.a) == []
    assert st.total() == evaluate(inst, st.a).total <= int(an.best[0])


def test_pure_python_fallback_keeps_the_rules() -> None:
    """Without numba the same functions run as Python (slowly, and the solver skips
    them); they keep the same invariants."""
    inst = _instance("generated")
    st = RoadefState(inst)
    an = kernel.Annealer(st)
    fn = getattr(kernel.anneal, "py_func", kernel.anneal)
    fn(an._enter(), 3000, 1e5, 1e3, 0.4, 0.2, 10, 10, 3, 3, 3, an.best_a, an.best, an.stats)
    an._leave()
    assert an.stats[0] + an.stats[1] > 0 and an.stats[3] > 0
    assert violations(inst, st.a) == []
    assert st.total() == evaluate(inst, st.a).total
    _same_as_rebuilt(st)


@compiled
def test_annealing_improves_a_set_a_instance_in_counted_mode() -> None:
    inst = _instance("a1_4")
    search = _Search(inst, SolveContext(time_limit=60, workers=1, seed=2), iterations=2)
    start = search.best_cost
    search.anneal(0.0)
    assert search.best_cost < start
    assert violations(inst, search.best) == []
    assert evaluate(inst, search.best).total == search.best_cost == search.st.total()


def test_state_built_from_a_moved_placement_has_the_exact_cost() -> None:
    """RoadefState(inst, assignment) weights the machine move cost (the solver rebuilds
    its state from the annealing's best placement)."""
    inst = _instance("a2_3")
    st = RoadefState(inst)
    an = kernel.Annealer(st)
    an.run(5000, 0.0, 0.0, 0.5, seed=1)
    assert (st.a != inst.initial).any()
    assert RoadefState(inst, st.a.copy()).breakdown() == evaluate(inst, st.a).as_dict()


@compiled
def test_a_search_takes_its_peers_better_placement() -> None:
    """The LNS thread goes on from the annealing's best when it is better (and only then)."""
    inst = _instance("a1_4")
    ann = _Search(inst, SolveContext(time_limit=60, workers=1, seed=4), iterations=1)
    ann.anneal(0.0)
    lns = _Search(inst, SolveContext(time_limit=60, workers=1, seed=5), iterations=1)
    lns.peer = ann
    assert lns.adopt_peer() and not lns.adopt_peer()
    assert lns.st.total() == lns.best_cost == ann.best_cost == evaluate(inst, lns.st.a).total
    assert violations(inst, lns.st.a) == []


@compiled
@pytest.mark.parametrize("name", ["a2_3", "a1_4", "generated"])
def test_ejection_chains_keep_every_rule_and_the_exact_cost(name: str) -> None:
    """Chains (p to m2, one process of m2 on to m3) under the transient rule, spread
    and dependencies: kept ones leave a feasible placement with the exact cost."""
    inst = _instance(name)
    search = _Search(inst, SolveContext(time_limit=60, workers=1, seed=1), iterations=None)
    st = search.st
    an = kernel.Annealer(st)
    hot = 5 * search.anneal_scale()
    an.run(30_000, hot, hot / 100, 0.2, seed=3, scan=5, swap_scan=10, p_chain=0.5,
           chain_scan=5, focus=3)
    assert an.stats[3] > 50  # chains were kept
    assert violations(inst, st.a) == []
    assert st.breakdown() == evaluate(inst, st.a).as_dict()
    _same_as_rebuilt(st)
    # the per-machine lists follow every move
    for m in range(inst.n_machines):
        assert sorted(an.mproc[m, :an.mcnt[m]].tolist()) == np.flatnonzero(st.a == m).tolist()
    assert violations(inst, an.best_a) == []
    assert evaluate(inst, an.best_a).total == int(an.best[0])


# The full descent with swaps on a2_2 took 40-80 s; a generated 600-process instance
# (a transient resource, 153 dependencies) keeps ~150 shifts and ~25 swaps in 2-4 s, and
# a2_2's transient rule is walked by the steepest-start tests below.
@compiled
@pytest.mark.parametrize("name", ["generated-600", "a1_4", "generated"])
def test_steepest_descent_is_feasible_exact_and_a_local_optimum(name: str) -> None:
    inst = _instance(name)
    st = RoadefState(inst)
    start = st.total()
    an = kernel.Annealer(st)
    an.descend()
    assert violations(inst, st.a) == []
    assert st.breakdown() == evaluate(inst, st.a).as_dict()
    _same_as_rebuilt(st)
    assert st.total() < start and int(an.best[0]) == st.total()
    # no single shift improves any more (the descent stopped at a local optimum)
    before = st.total()
    an.descend(max_moves=1, swaps=False)
    assert st.total() == before


@compiled
def test_steepest_takes_the_biggest_gains_first_on_a2_2() -> None:
    """The reason for the steepest start: on a2_2 (transient resources nearly full)
    the best-first descent ends far below a descent in random order."""
    inst = _instance("a2_2")
    st = RoadefState(inst)
    kernel.Annealer(st).descend(swaps=False)
    random_order = RoadefState(inst)
    an = kernel.Annealer(random_order)
    an.run(40_000, 0.0, 0.0, 0.0, seed=1, scan=inst.n_machines)
    assert st.total() < 0.95 * random_order.total()


@compiled
def test_restore_returns_to_a_placement_exactly() -> None:
    inst = _instance("a2_3")
    st = RoadefState(inst)
    an = kernel.Annealer(st)
    an.descend(swaps=False)
    saved = st.a.copy()
    saved_cost = st.total()
    hot = 1e9
    an.run(5000, hot, hot, 0.5, seed=2, scan=3, swap_scan=3)
    assert not np.array_equal(st.a, saved)
    an.restore(saved)
    assert np.array_equal(st.a, saved) and st.total() == saved_cost
    _same_as_rebuilt(st)


@compiled
def test_steepest_start_only_on_instances_with_a_transient_resource() -> None:
    """a1_4 (a transient resource) starts from the steepest descent; a2_1 (none)
    keeps its initial placement for the numpy descent."""
    for name, used in (("a1_4", True), ("a2_1", False)):
        inst = _instance(name)
        search = _Search(inst, SolveContext(time_limit=60, workers=1, seed=0), iterations=1)
        start = search.best_cost
        search.steepest_start()
        assert ("steepest_moves" in search.stats) is used
        assert (search.best_cost < start) is used
        assert search.st.total() == evaluate(inst, search.st.a).total
        assert violations(inst, search.st.a) == []


def _eject_args(st: RoadefState, depth: int) -> tuple[np.ndarray, ...]:
    R, M = st.inst.n_resources, st.inst.n_machines
    return (np.empty(depth + 1 + (R + 1) * M, dtype=np.int64),
            np.empty(depth + 1, dtype=np.int64), np.empty(R, dtype=np.int64),
            np.empty(R, dtype=np.int64))


@pytest.mark.parametrize("m2_capacity", [10, 5])
def test_an_ejection_makes_room_in_one_move(m2_capacity: int) -> None:
    """p (6 units on a machine with no safety capacity) fits on no other machine; p to
    m1 and q (5) on from m1 to m2 empties the costly machine: one ejection does both
    (6 -> 3: two moved processes and the service-move max). When m2 has no room, q can
    only go to p's costly machine (6 -> 8): the walk at temperature 0 undoes it."""
    inst = tiny(capacity=[[10], [10], [m2_capacity]], safety=[[0], [10], [10]],
                requirement=[[6], [5], [5]], service=[0, 1, 2], initial=[0, 1, 2],
                machine_move_cost=np.zeros((3, 3), dtype=np.int64).tolist())
    st = RoadefState(inst)
    assert st.total() == 6
    an = kernel.Annealer(st)
    fn = getattr(kernel._eject, "py_func", kernel._eject)
    kept = fn(an._enter(), 0, 1, 4, 0.0, *_eject_args(st, 4))
    an._leave()
    if m2_capacity == 10:
        assert kept and st.a.tolist() == [1, 2, 2] and st.total() == 3
    else:
        assert not kept and st.a.tolist() == [0, 1, 2] and st.total() == 6
    assert violations(inst, st.a) == []
    assert st.breakdown() == evaluate(inst, st.a).as_dict()
    _same_as_rebuilt(st)
    assert sorted(an.mproc[1, :an.mcnt[1]].tolist()) == np.flatnonzero(st.a == 1).tolist()


# a2_5: no transient resource, load only (the pruned scan); a1_4: balance costs and a
# transient resource; generated: spread, dependencies and all of it on a small cluster
@compiled
@pytest.mark.parametrize("name", ["a2_5", "a1_4", "generated"])
def test_ejections_keep_every_rule_and_the_exact_cost(name: str) -> None:
    inst = _instance(name)
    search = _Search(inst, SolveContext(time_limit=60, workers=1, seed=1), iterations=None)
    st = search.st
    an = kernel.Annealer(st)
    hot = 5 * search.anneal_scale()
    start = st.total()
    an.run(20_000, hot, hot / 100, 0.5, seed=5, scan=1, swap_scan=3, p_eject=0.3,
           eject_depth=4)
    assert an.stats[4] > 20 and an.stats[5] > an.stats[4]  # ejections tried and kept
    assert violations(inst, st.a) == []
    assert st.breakdown() == evaluate(inst, st.a).as_dict()
    _same_as_rebuilt(st)
    for m in range(inst.n_machines):
        assert sorted(an.mproc[m, :an.mcnt[m]].tolist()) == np.flatnonzero(st.a == m).tolist()
    assert violations(inst, an.best_a) == []
    assert evaluate(inst, an.best_a).total == int(an.best[0]) <= start


@compiled
def test_polish_after_lns_steps_is_exact_and_follows_a_replaced_state() -> None:
    """The compiled polish that follows an improving LNS step works on the search's
    current state (rebuilt when the state is replaced), keeps every rule and the exact
    cost, and leaves no improving shift."""
    inst = _instance("a2_5")
    search = _Search(inst, SolveContext(time_limit=60, workers=1, seed=6), iterations=1)
    for _ in range(3):
        search.lns_step(search.pick_machines(3), 0.2)
        search.polish(None)
        st = search.st
        assert violations(inst, st.a) == []
        assert st.breakdown() == evaluate(inst, st.a).as_dict()
        before = st.total()
        kernel.Annealer(st).descend(max_moves=1, swaps=False)
        assert st.total() == before
        # a replaced state (as after taking the peer's placement) is the one polished
        search.adopt(st.total(), st.a.copy(), "test")
    assert search._kernel is not None and search._kernel.st is not search.st


@compiled
@pytest.mark.parametrize("name", ["a2_3", "a1_4"])
def test_bounded_swap_price_is_the_full_price_below_its_limit(name: str) -> None:
    # the annealing's swap screen prices partners only up to the best so far: a partner
    # below the limit must get its exact change (else the walk chooses other swaps),
    # one at or above it must be refused (a2_3: transient rule; a1_4: balance costs)
    inst = _instance(name)
    st = RoadefState(inst)
    an = kernel.Annealer(st)
    S = an._enter()
    R = inst.n_resources
    u0, u1 = np.empty(R, dtype=np.int64), np.empty(R, dtype=np.int64)
    rng = np.random.default_rng(0)
    big = 1 << 62
    priced = 0
    for _ in range(3000):
        p, q = (int(x) for x in rng.integers(inst.n_processes, size=2))
        m1, m2 = int(st.a[p]), int(st.a[q])
        if m1 == m2:
            continue
        full = int(kernel._swap_load_delta(S, p, q, m1, m2, u0, u1))
        assert int(kernel._swap_delta_below(S, p, q, m1, m2, u0, u1, big)) == full
        if full >= big:
            continue
        priced += 1
        for limit in (full + 1, full, full - 1, full - abs(full) // 2 - 1):
            got = int(kernel._swap_delta_below(S, p, q, m1, m2, u0, u1, limit))
            assert got == (full if full < limit else big), (p, q, limit)
    assert priced > 100
