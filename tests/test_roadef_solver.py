"""The ROADEF solver: incremental bookkeeping against the from-scratch evaluator,
the CP-SAT sub-model against the exact check, valid and improving results on
set A with short budgets, determinism, the generator, and `bench roadef`."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from allocator.cli import app
from allocator.roadef import kernel
from allocator.roadef import solver as solver_mod
from allocator.roadef.evaluate import evaluate, violations
from allocator.roadef.generate import generate_instance
from allocator.roadef.instance import (
    RoadefInstance,
    read_assignment,
    read_instance,
    write_assignment,
    write_model,
)
from allocator.roadef.solver import _Search, solve_roadef
from allocator.roadef.state import RoadefState
from allocator.solvers.context import SolveContext
from tests.roadef_helpers import ROADEF, tiny

A = ROADEF / "A"


def _set_a(name: str) -> RoadefInstance:
    return read_instance(A / f"model_{name}.txt", A / f"assignment_{name}.txt")


def _small_generated(seed: int = 1) -> RoadefInstance:
    return generate_instance(240, 24, 5, seed=seed, locations=6, neighbourhoods=3)


@pytest.mark.parametrize("which", ["a1_2", "a2_3", "generated"])
def test_incremental_state_matches_the_evaluator_on_random_moves(which: str) -> None:
    inst = _small_generated() if which == "generated" else _set_a(which)
    st = RoadefState(inst)
    rng = np.random.default_rng(7)
    accepted = rejected = 0
    for step in range(300):
        p = int(rng.integers(inst.n_processes))
        m = int(rng.integers(inst.n_machines))
        m0 = int(st.a[p])
        if m == m0:
            continue
        st.move(p, m)
        ok = st.rules_ok((p,), (m0, m))
        # the local check agrees with the full one (the state was feasible before)
        assert ok == (violations(inst, st.a) == []), (step, p, m)
        if ok:
            accepted += 1
        else:
            rejected += 1
            st.move(p, m0)
        if step % 10 == 0 or ok:
            assert st.breakdown() == evaluate(inst, st.a).as_dict()
    # swaps through the same path
    for _ in range(100):
        p, q = (int(x) for x in rng.integers(inst.n_processes, size=2))
        mp, mq = int(st.a[p]), int(st.a[q])
        if mp == mq:
            continue
        st.move(p, mq)
        st.move(q, mp)
        if st.rules_ok((p, q), (mp, mq)):
            assert violations(inst, st.a) == []
        else:
            st.move(q, mq)
            st.move(p, mp)
        assert st.total() == evaluate(inst, st.a).total
    assert accepted > 5 and rejected > 5  # both branches were exercised


@pytest.mark.serial
def test_lns_sub_models_pass_the_exact_check() -> None:
    """Every CP-SAT sub-solution (capacity, transient, conflict, spread, dependency,
    full cost) is accepted by the independent rules check and lowers the cost."""
    for inst in (_small_generated(2), _set_a("a1_4")):
        ctx = SolveContext(time_limit=60, workers=1, seed=3)
        search = _Search(inst, ctx, iterations=10)  # CP-SAT on deterministic time: load-proof
        start = search.st.total()
        for _ in range(10):
            search.lns_step(search.pick_machines(4), 0.2)
        assert search.stats["lns_rejected"] == 0
        assert search.stats["lns_improved"] > 0
        assert violations(inst, search.st.a) == []
        assert search.st.total() == evaluate(inst, search.st.a).total < start


def test_light_presolve_proves_the_same_optimum(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sub-models' light CP-SAT presolve (`SUB_PRESOLVE_LIGHT`) finds the optimum the
    default presolve proves: same proved cost change on plain steps and an evacuation."""
    from allocator.roadef import subproblem

    inst = _set_a("a2_2")
    st = RoadefState(inst, inst.initial.copy())
    search = _Search(inst, SolveContext(time_limit=60, workers=1, seed=5), iterations=1)
    steps = [(None, search.pick_machines(3)) for _ in range(3)]
    evac = search.evacuation()
    assert evac is not None
    steps.append(evac)
    deltas = []
    for freed, machines in steps:
        on = freed if freed is not None else np.flatnonzero(np.isin(st.a, machines))
        out = []
        for light in (True, False):
            monkeypatch.setattr(subproblem, "SUB_PRESOLVE_LIGHT", light)
            res = subproblem.solve_subproblem(st, on, machines, time_limit=20.0,
                                              deterministic=True, seed=1, linearization=2)
            assert res is not None
            out.append((res[1], res[2]))
        assert out[0] == out[1] and out[0][1]  # both proved optimal, same change
        deltas.append(out[0][0])
    assert min(deltas) < 0  # a step that changes the placement was compared


def test_evacuation_frees_a_receiver_held_by_a_newcomer() -> None:
    """A costly process whose only receiver (the one machine with transient room left by
    its initial placement) holds a newcomer: no shift fits, the evacuation sends the
    newcomer home and the process to the receiver. Resource 0 is transient."""
    inst = tiny(capacity=[[100], [100], [100], [100]],
                safety=[[0], [100], [50], [100]],
                requirement=[[50], [40], [30], [40], [90]],
                service=[0, 1, 2, 3, 4], initial=[0, 1, 2, 2, 3], transient=[True])
    st = RoadefState(inst, np.array([0, 1, 1, 2, 3]))  # process 2 moved to machine 1
    assert violations(inst, st.a) == []
    ctx = SolveContext(time_limit=60, workers=1, seed=0)
    search = _Search(inst, ctx, iterations=None)
    search.st = st
    before = st.total()
    assert not search.shift_screen(0)  # machine 1's transient room is taken
    evac = search.evacuation()
    assert evac is not None
    freed, machines = evac
    assert 0 in freed and 1 in machines
    improved, _ = search.lns_step(machines, 5.0, freed)
    assert improved
    assert st.a.tolist() == [1, 1, 2, 2, 3]
    assert violations(inst, st.a) == []
    assert st.total() == evaluate(inst, st.a).total == before - 30


def test_sub_model_sends_a_newcomer_home_to_a_machine_with_no_transient_room() -> None:
    """A newcomer's home already holds its transient requirement: coming home needs no
    transient room there. Machine 2 has none left (its capacity is its initial usage),
    and only the newcomer's return frees machine 1 for the costly process 0. The sub-model
    once asked for the room twice and could not send it home."""
    inst = tiny(capacity=[[100], [100], [70]], safety=[[0], [100], [70]],
                requirement=[[50], [40], [30], [40]], service=[0, 1, 2, 3],
                initial=[0, 1, 2, 2], transient=[True])
    st = RoadefState(inst, np.array([0, 1, 1, 2]))  # process 2 moved to machine 1
    assert violations(inst, st.a) == []
    before = st.total()
    search = _Search(inst, SolveContext(time_limit=60, workers=1, seed=0), iterations=None)
    search.st = st
    improved, optimal = search.lns_step(np.array([0, 1, 2]), 5.0, np.array([0, 2]))
    assert improved and optimal
    assert st.a.tolist() == [1, 1, 2, 2]
    assert violations(inst, st.a) == []
    assert st.total() == evaluate(inst, st.a).total < before - 40


def _chain_instance() -> tuple[RoadefInstance, np.ndarray]:
    """Process 0 (50 on r0, on the zero-safety machine 0) fits only machine 1's static
    room, held by the newcomer 1 (home 3, costly there on r1); machine 2 is the one
    other place for process 1 and looks cramped; machines 4-11 look roomy but their
    static room (25 on r0) holds neither. r0 is transient."""
    fillers = 8
    cap = [[100, 10], [100, 100], [100, 100], [60, 100]] + [[100, 1000]] * fillers
    saf = [[0, 0], [100, 100], [100, 100], [60, 0]] + [[100, 1000]] * fillers
    req = [[50, 0], [30, 80], [40, 0], [60, 20]] + [[75, 1]] * fillers
    initial = [0, 3, 1, 2] + [4 + i for i in range(fillers)]
    inst = tiny(capacity=cap, safety=saf, requirement=req, service=list(range(len(req))),
                initial=initial, transient=[True, False])
    a = np.array(initial)
    a[1] = 1  # the newcomer took machine 1's room
    return inst, a


@pytest.mark.parametrize("chain", [True, False])
def test_evacuation_chain_frees_the_receiver_of_a_receivers_newcomer(
        chain: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The receiver's newcomer has one other receiver (machine 2), among no roomy
    machines: only the chain puts it in the sub-problem, and only then does the costly
    process move (without it the newcomer's home costs more than the process saves)."""
    monkeypatch.setattr(solver_mod, "EVAC_CHAIN", 2 if chain else 0)
    monkeypatch.setattr(solver_mod, "EVAC_ROOMY_MIN", 2)
    monkeypatch.setattr(solver_mod, "EVAC_ROOMY_MAX", 4)
    inst, a = _chain_instance()
    st = RoadefState(inst, a)
    assert violations(inst, st.a) == []
    before = st.total()
    search = _Search(inst, SolveContext(time_limit=60, workers=1, seed=0), iterations=None)
    search.st = st
    evac = search.evacuation()
    assert evac is not None
    freed, machines = evac
    assert 0 in freed and 1 in machines and (2 in machines) == chain
    improved, _ = search.lns_step(machines, 5.0, freed)
    assert improved == chain
    assert violations(inst, st.a) == []
    if chain:
        assert st.a[:3].tolist() == [1, 2, 1]
        assert st.total() == evaluate(inst, st.a).total == before - 48
    else:
        assert st.total() == before


def _reserve_instance(zero_safety: bool = True) -> RoadefInstance:
    """Process 0 (60 on r0, transient) sits on machine 0 (no safety capacity when
    `zero_safety`); machine 1 is its only receiver (static room 70). Process 1 (50,
    costly on machine 2) gains by moving to machine 1 too, but the two cannot share
    machine 1's room; process 2 lives on machine 1."""
    return tiny(capacity=[[100], [100], [100]],
                safety=[[0 if zero_safety else 10], [100], [20]],
                requirement=[[60], [50], [30]], service=[0, 1, 2], initial=[0, 2, 1],
                transient=[True])


@pytest.mark.parametrize("zero_safety", [True, False])
def test_reserved_receiver_is_kept_for_the_larger_stranded_process(
        zero_safety: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """RESERVE bites: the smaller process may not take the stranded one's only receiver
    (in the sub-model, after a descent, from the peer); where the machine has safety
    capacity nothing is reserved and it moves, priced as the evaluator prices it."""
    inst = _reserve_instance(zero_safety)
    search = _Search(inst, SolveContext(time_limit=60, workers=1, seed=0), iterations=None)
    st = search.st
    search._reserve = search.reservations()
    before = st.total()
    improved, optimal = search.lns_step(np.array([1, 2]), 5.0, np.array([1]))
    assert optimal and violations(inst, st.a) == []
    assert st.total() == evaluate(inst, st.a).total
    if not zero_safety:
        assert search._reserve == []
        assert improved and st.a.tolist() == [0, 1, 1]
        assert st.total() - before == -30 + 3  # load 30 off machine 2, three move costs
        return
    [(p, recv, excl)] = search._reserve
    assert p == 0 and recv.tolist() == [1] and excl[:, 0].tolist() == [False, True, False]
    assert not improved and st.a.tolist() == [0, 2, 1]
    # a descent that takes the room is undone
    a0, cost0 = st.a.copy(), st.total()
    st.move(1, 1)
    assert search.breaks_reserve(a0, st.a).tolist() == [1]
    search.keep_reserve(a0, cost0)
    assert search.st.a.tolist() == [0, 2, 1] and search.stats["reserve_undone"] == 1
    # a peer's cheaper placement that takes it is not adopted
    peer = _Search(inst, SolveContext(time_limit=60, workers=1, seed=1), iterations=None)
    peer.st.move(1, 1)
    peer.incumbent = (peer.st.total(), peer.st.a.copy())
    assert peer.st.total() < search.st.total()
    search.peer = peer
    monkeypatch.setattr(solver_mod, "RESERVE_PEER", True)
    assert not search.adopt_peer() and search.stats["reserve_refused_peer"] == 1
    # the process itself may go: its move is the point of the reservation
    improved, _ = search.lns_step(np.array([0, 1]), 5.0, np.array([0]))
    assert improved and search.st.a.tolist() == [1, 2, 1]
    assert search.st.total() == evaluate(inst, search.st.a).total == before - 60 + 3
    # off its zero-safety machine, nothing is held for it any more
    assert search.forbidden(np.arange(3)) == {}


def test_a2_3_reserves_the_one_receiver_of_its_largest_stranded_process() -> None:
    """a2_3 after the steepest start: process 438 (112 million on zero-safety machine
    93) has one receiver, 34 (a2_2 has no such process); a counted solve with the
    reservation is the same for a seed and valid."""
    inst = _set_a("a2_3")
    ctx = SolveContext(time_limit=60, workers=1, seed=0, deterministic=True)
    search = _Search(inst, ctx, iterations=1)
    search.steepest_start()
    res = search.reservations()
    assert [(p, recv.tolist()) for p, recv, _ in res] == [(438, [34])]
    # a2_2's stranded processes have two receivers or more: nothing is held there
    other = _Search(_set_a("a2_2"), ctx, iterations=1)
    other.steepest_start()
    assert other.zero_safety and other.reservations() == []
    one = solve_roadef(inst, time_limit=600, seed=3, iterations=3)
    two = solve_roadef(inst, time_limit=600, seed=3, iterations=3)
    assert one.stats["reserved"] == 1
    assert np.array_equal(one.assignment, two.assignment)
    assert violations(inst, one.assignment) == []


def test_home_step_sends_a_cycle_of_moved_processes_home() -> None:
    """Three processes moved round a cycle (0 to machine 1, 1 to 2, 2 to 0) on machines
    that each hold one process, with ten full machines beside them: no shift sends one
    home (its home is full) and the load is nil, so the cost is the moves. A home step
    frees a moved process's machine and home and follows the links to the third
    machine; its sub-model sends all three home."""
    fillers = 10
    M = 3 + fillers
    inst = tiny(capacity=[[10]] * M, requirement=[[10]] * M, service=list(range(M)),
                initial=list(range(M)))
    a = np.arange(M)
    a[:3] = [1, 2, 0]
    st = RoadefState(inst, a)
    assert violations(inst, st.a) == []
    search = _Search(inst, SolveContext(time_limit=60, workers=1, seed=0), iterations=None)
    search.st = st
    assert search.home_share() == solver_mod.HOME_MAX  # all of the cost is moves
    step = search.home_step()
    assert step is not None
    freed, machines = step
    assert {0, 1, 2} <= set(freed.tolist()) and {0, 1, 2} <= set(machines.tolist())
    improved, optimal = search.lns_step(machines, 5.0, freed)
    assert improved and optimal
    assert st.a.tolist() == list(range(M)) and st.total() == evaluate(inst, st.a).total == 0
    assert search.home_step() is None and search.home_share() == 0.0


def test_evacuation_share_follows_the_gain_per_second() -> None:
    """Fixed share until both kinds ran the warm-up; then the kind that gains more per
    second gets more steps, within the bounds; fixed in counted mode."""
    inst = _small_generated(3)
    search = _Search(inst, SolveContext(time_limit=60, workers=1, seed=0), iterations=None)
    warm = solver_mod.EVAC_WARMUP
    assert search.evac_share(np.array([[100.0, warm], [1.0, 0.5]])) == solver_mod.EVAC_SHARE
    # plain steps gain 10x more per second: the floor
    assert search.evac_share(np.array([[10.0, warm], [100.0, warm]])) == solver_mod.EVAC_MIN
    # evacuations gain 3x more: 0.75
    assert search.evac_share(np.array([[300.0, warm], [100.0, warm]])) == pytest.approx(0.75)
    assert search.evac_share(np.array([[1e9, warm], [0.0, warm]])) == solver_mod.EVAC_MAX
    counted = _Search(inst, SolveContext(time_limit=60, workers=1, seed=0), iterations=3)
    assert counted.evac_share(np.array([[0.0, warm], [1e9, warm]])) == solver_mod.EVAC_SHARE


def test_evacuations_on_a2_2_pass_the_exact_check() -> None:
    """Evacuation sub-models (up to 100 freed processes) from the steepest start, solved
    as the search solves them (CP-SAT's full LP relaxation): every sub-solution
    accepted by the rules check, and some lower the cost."""
    inst = _set_a("a2_2")
    ctx = SolveContext(time_limit=60, workers=1, seed=1, deterministic=True)
    search = _Search(inst, ctx, iterations=1)  # CP-SAT on deterministic time
    search.steepest_start()
    start = search.st.total()
    improved = 0
    for _ in range(8):
        evac = search.evacuation()
        assert evac is not None
        freed, machines = evac
        improved += search.lns_step(machines, 1.0, freed,
                                    linearization=solver_mod.EVAC_LINEARIZATION)[0]
    assert search.stats["lns_rejected"] == 0
    assert improved > 0
    assert violations(inst, search.st.a) == []
    assert search.st.total() == evaluate(inst, search.st.a).total < start


def test_evacuation_frees_the_other_claimants_of_its_receiver() -> None:
    """a2_2 from the steepest start, process 892 (zero-safety machine 72) to machine 58:
    the step also frees the costliest other processes that have 58 among their
    receivers (alone, with their machines as targets), and its sub-model passes the
    exact check."""
    inst = _set_a("a2_2")
    ctx = SolveContext(time_limit=60, workers=1, seed=0, deterministic=True)
    search = _Search(inst, ctx, iterations=1)  # CP-SAT on deterministic time
    search.steepest_start()
    st = search.st
    assert int(st.a[892]) == 72
    gain = st.mc[st.a] - st.machine_costs(st.use[st.a] - st.req, st.a)
    co = search.co_claimants(892, 58, gain, np.array([892]))
    assert len(co) == solver_mod.EVAC_CO
    for q in co:
        assert 58 in search.receivers(q) and gain[q] > 0 and q != 892
    rest = np.flatnonzero((gain > 0) & (st.svc != st.svc[892]))
    rest = [q for q in rest.tolist() if q not in co and q != 892
            and 58 in search.receivers(q)]
    assert all(gain[q] <= min(gain[co]) for q in rest)  # the costliest ones
    evac = search.evacuation(892, 58)
    assert evac is not None
    freed, machines = evac
    assert set(co) <= set(freed.tolist()) and set(st.a[co].tolist()) <= set(machines.tolist())
    search.lns_step(machines, 1.0, freed)
    assert search.stats["lns_rejected"] == 0
    assert violations(inst, st.a) == []
    assert st.total() == evaluate(inst, st.a).total
    # only where some machine has no safety capacity (a1_2's evacuations stay as they were)
    assert search.zero_safety and not _Search(_set_a("a1_2"), ctx, iterations=1).zero_safety


@pytest.mark.parametrize("name", ["a1_2", "a2_3"])
def test_solver_is_valid_and_not_worse_with_a_short_budget(name: str) -> None:
    inst = _set_a(name)
    t0 = time.perf_counter()
    res = solve_roadef(inst, time_limit=1.5, seed=0)
    assert time.perf_counter() - t0 < 6  # imports + the last sub-solve
    assert violations(inst, res.assignment) == []
    assert res.objective == evaluate(inst, res.assignment).total
    assert res.objective < res.initial_cost
    assert res.moved == int((res.assignment != inst.initial).sum())
    costs = [c for _, c, _ in res.history]
    assert costs == sorted(costs, reverse=True)


def test_same_seed_same_result_when_bounded_by_counts() -> None:
    inst = _small_generated(4)
    one = solve_roadef(inst, time_limit=60, seed=5, iterations=4)
    two = solve_roadef(inst, time_limit=60, seed=5, iterations=4)
    assert np.array_equal(one.assignment, two.assignment)
    assert one.objective == two.objective


@pytest.mark.serial
def test_stop_event_returns_a_valid_placement_quickly() -> None:
    inst = _set_a("a2_2")
    stop = threading.Event()
    stop.set()
    t0 = time.perf_counter()
    res = solve_roadef(inst, time_limit=30, stop=stop)
    assert time.perf_counter() - t0 < 5
    assert violations(inst, res.assignment) == []


@pytest.mark.skipif(not kernel.HAVE_NUMBA, reason="the annealing thread needs numba")
def test_an_annealing_thread_that_overruns_still_gives_its_best(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A thread still busy at the join (a chunk stretched by load) is left behind,
    but its incumbent, a finished copy, is kept: it used to be dropped."""
    inst = _set_a("a2_1")  # no transient resource: no steepest start in the main thread
    st = RoadefState(inst)
    kernel.Annealer(st).run(20_000, 0.0, 0.0, 0.5, seed=1)  # a cold descent: feasible, better
    better = (st.total(), st.a.copy())
    assert better[0] < evaluate(inst, inst.initial).total and violations(inst, better[1]) == []

    def busy(search: _Search, budget: float) -> None:
        search.incumbent = better
        time.sleep(search.ctx.remaining() + 2.0)  # past the join's grace second

    monkeypatch.setattr(solver_mod, "_anneal_safely", busy)
    monkeypatch.setattr(_Search, "run", lambda self: None)  # the main thread finds nothing
    res = solve_roadef(inst, time_limit=0.3, seed=0)
    assert res.objective == better[0]
    assert np.array_equal(res.assignment, better[1])


class _Clocks:
    """Wall and process-CPU clocks a test advances by hand."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0

    def tick(self, wall: float, cores: float) -> None:
        self.wall += wall
        self.cpu += wall * cores


def _governor(clocks: _Clocks, role: str = "anneal") -> solver_mod._Governor:
    gov = solver_mod._Governor(SolveContext(time_limit=60, workers=1), role)
    gov.wall_clock = lambda: clocks.wall  # type: ignore[method-assign]
    gov.cpu_clock = lambda: clocks.cpu  # type: ignore[method-assign]
    gov._wall, gov._cpu = 0.0, 0.0
    return gov


def test_governor_runs_one_thread_below_a_core_and_both_above() -> None:
    """Two threads on two free cores both run; at 2/3 of a core for the process (three
    solves on two cores) the lone role runs and the other waits; once the lone thread
    gets a whole core again both run; a role that finished releases the other."""
    clocks = _Clocks()
    gov = _governor(clocks)
    w = solver_mod.GOVERN_WINDOW
    for _ in range(5):  # idle: the process gets two cores
        clocks.tick(w, 1.95)
        gov.update()
    assert gov.solo is None
    clocks.tick(w, 0.67)
    gov.update()
    assert gov.solo is None  # one low window may be a thread starting up
    clocks.tick(w, 0.67)
    gov.update()
    assert gov.solo == "anneal"
    gov.gate("anneal")  # the lone role never waits
    for _ in range(5):  # alone it gets the same 2/3 of a core: stays alone
        clocks.tick(w, 0.67)
        gov.update()
    assert gov.solo == "anneal"
    clocks.tick(w, 1.0)  # a core is free again
    gov.update()
    assert gov.solo is None
    gov.done("anneal")
    for _ in range(3):
        clocks.tick(w, 0.5)
        gov.update()
    assert gov.solo is None  # the annealing ended: the LNS thread is never held
    assert gov.stats()["govern_switches"] == 2


def test_governor_waits_longer_after_sharing_fails_again() -> None:
    clocks = _Clocks()
    gov = _governor(clocks, "lns")
    w = solver_mod.GOVERN_WINDOW
    hold = gov.hold
    for cores in (0.6, 0.6, 1.0, 1.0, 1.0):  # alone, then a free core for one window...
        clocks.tick(max(w, hold), cores)
        gov.update()
    assert gov.solo == "lns"  # ...but shared again it got under a core: alone again
    assert gov.hold == 2 * hold


def test_governor_keeps_both_threads_when_starved_even_alone() -> None:
    """Under GOVERN_SOLO_MIN of a core (a third or less) both threads did better."""
    clocks = _Clocks()
    gov = _governor(clocks, "lns")
    w = solver_mod.GOVERN_WINDOW
    for _ in range(4):
        clocks.tick(w, 0.3)
        gov.update()
    assert gov.solo is None
    for cores in (0.67, 0.67):
        clocks.tick(w, cores)
        gov.update()
    assert gov.solo == "lns"
    clocks.tick(w, 0.3)  # alone it gets a third of a core: both again
    gov.update()
    assert gov.solo is None


def test_governor_runs_only_where_the_lns_makes_waste_steps() -> None:
    ctx = SolveContext(time_limit=60, workers=1)
    roles = {n: solver_mod._solo_role(_Search(_set_a(n), ctx, iterations=None))
             for n in ("a2_5", "a2_4", "a2_1", "a1_4")}
    assert roles == {"a2_5": "lns", "a2_4": None, "a2_1": None, "a1_4": None}


def test_annealing_sleeps_through_its_first_walk_where_the_lns_leads(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """a2_2 (transient resource, zero-safety machines): the annealing thread's first call
    is a re-annealing from the LNS's better placement, at the first walk's end; a1_4 (no
    zero-safety machine) and a2_5 (no transient resource) anneal from the start."""
    ctx = SolveContext(time_limit=60, workers=1)
    skip = {n: _Search(_set_a(n), ctx, iterations=None).first_walk_idle()
            for n in ("a2_2", "a2_3", "a1_4", "a2_5")}
    assert skip == {"a2_2": True, "a2_3": True, "a1_4": False, "a2_5": False}
    inst = _set_a("a2_2")
    ctx = SolveContext(time_limit=60, workers=1)
    lns, ann = _Search(inst, ctx, iterations=None), _Search(inst, ctx, iterations=None)
    lns.steepest_start()
    ann.peer = lns
    calls: list[tuple[float, float, int]] = []

    def anneal(self: _Search, budget: float, heat: float = 1.0) -> None:
        calls.append((self.ctx.elapsed(), heat, self.st.total()))
        time.sleep(budget)

    monkeypatch.setattr(_Search, "anneal", anneal)
    start = ctx.elapsed()
    ann.anneal_cycles(0.8)
    first_at, heat, cost = calls[0]
    assert first_at - start >= 0.8 * solver_mod.ANNEAL_FIRST - 0.02
    assert heat == solver_mod.ANNEAL_REHEAT
    assert cost == lns.best_cost < evaluate(inst, inst.initial).total


@pytest.mark.skipif(not kernel.HAVE_NUMBA, reason="the annealing thread needs numba")
def test_a_solve_at_two_thirds_of_a_core_runs_the_lns_alone_and_stays_valid(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Clocks that say the process gets 2/3 of a core (three solves on two cores): the
    annealing sleeps, and the plan is valid and improves."""
    monkeypatch.setattr(solver_mod, "GOVERN_WINDOW", 0.5)
    monkeypatch.setattr(solver_mod._Governor, "cpu_clock",
                        staticmethod(lambda: 0.67 * time.perf_counter()))
    inst = _set_a("a2_5")
    res = solve_roadef(inst, time_limit=2.5, seed=0)
    assert res.stats["govern_switches"] >= 1 and res.stats["govern_solo_s"] > 0
    assert violations(inst, res.assignment) == []
    assert res.objective == evaluate(inst, res.assignment).total < res.initial_cost


def test_generator_small_size_is_valid_and_seeded(tmp_path: Path) -> None:
    inst = _small_generated(9)
    assert violations(inst, inst.initial) == []
    assert inst.transient.any() and inst.balances and inst.spread_min.max() > 0
    assert any(inst.dependencies)
    assert evaluate(inst, inst.initial).load > 0  # something to improve
    again = _small_generated(9)
    assert np.array_equal(inst.requirement, again.requirement)
    assert not np.array_equal(inst.requirement, _small_generated(10).requirement)
    # write -> read round trip of model and assignment
    write_model(tmp_path / "model_g.txt", inst)
    write_assignment(tmp_path / "assignment_g.txt", inst.initial)
    back = read_instance(tmp_path / "model_g.txt", tmp_path / "assignment_g.txt")
    for field in ("transient", "load_weight", "neighbourhood", "location", "capacity", "safety",
                  "machine_move_cost", "spread_min", "service", "requirement",
                  "process_move_cost", "initial"):
        assert np.array_equal(getattr(back, field), getattr(inst, field)), field
    assert back.dependencies == inst.dependencies and back.balances == inst.balances
    assert evaluate(back, back.initial) == evaluate(inst, inst.initial)


@pytest.mark.parametrize("resources", [2, 3])
def test_generator_with_fewer_than_four_resources(resources: int) -> None:
    """`gen roadef --resources 2` raised IndexError: the second balance objective named
    resources 2 and 3."""
    inst = generate_instance(processes=60, machines=6, resources=resources, seed=1)
    assert all(max(b.r1, b.r2) < resources for b in inst.balances) and inst.balances
    assert violations(inst, inst.initial) == []
    assert evaluate(inst, inst.initial).total > 0


def test_bench_roadef_cli_json_and_solution_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["bench", "roadef", str(A / "model_a1_1.txt"),
                                 "--time-limit", "1", "--json", "--out", str(out)])
    assert r.exit_code == 0, r.output
    row = json.loads(r.output.strip().splitlines()[-1])
    for key in ("instance", "original_cost", "objective", "lower_bound", "best_known",
                "gap_to_best_pct", "moved", "time_s", "valid"):
        assert key in row
    assert row["instance"] == "a1_1" and row["valid"] is True
    assert row["original_cost"] == 49_528_750 and row["best_known"] == 44_306_501
    assert row["lower_bound"] == 44_306_390
    inst = _set_a("a1_1")
    sol = read_assignment(out / "solution_a1_1.txt", inst.n_processes, inst.n_machines)
    assert evaluate(inst, sol).total == row["objective"] < row["original_cost"]


def test_bench_roadef_cli_bad_input_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "model_bad.txt"
    bad.write_text("2\n0 x\n")
    r = CliRunner().invoke(app, ["bench", "roadef", str(bad), "--time-limit", "1"])
    assert r.exit_code == 2
    assert "model_bad.txt, line 2: not an integer: 'x'" in r.output
    r = CliRunner().invoke(app, ["bench", "roadef", str(tmp_path / "x.txt")])
    assert r.exit_code == 2 and "model_<instance>.txt" in r.output


def test_plain_lns_steps_free_whole_machines_without_a_transient_resource(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """a2_5 (no transient resource): a plain step frees every process of its 3 machines
    (about 60, above the 40 of the other instances), and the sub-solutions pass the
    exact check and lower the cost; a2_2 (transient) keeps the 40-process steps."""
    from allocator.roadef import subproblem

    freed_sizes: list[tuple[int, int]] = []
    real = subproblem.solve_subproblem

    def spy(st: RoadefState, freed: np.ndarray, machines: np.ndarray, **kw: object) -> object:
        freed_sizes.append((len(freed), int(np.isin(st.a, machines).sum())))
        return real(st, freed, machines, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(subproblem, "solve_subproblem", spy)
    assert not _Search(_set_a("a2_2"), SolveContext(time_limit=60, workers=1),
                       iterations=1).whole_machines()
    inst = _set_a("a2_5")
    ctx = SolveContext(time_limit=60, workers=1, seed=2, deterministic=True)
    search = _Search(inst, ctx, iterations=1)  # CP-SAT on deterministic time
    assert search.whole_machines()
    start = search.st.total()
    for _ in range(3):
        search.lns_step(search.pick_machines(solver_mod.LNS_WHOLE_MACHINES_NO_TR), 1.0)
    assert all(n == on for n, on in freed_sizes) and max(n for n, _ in freed_sizes) > 40
    assert search.stats["lns_rejected"] == 0 and search.stats["lns_improved"] > 0
    assert violations(inst, search.st.a) == []
    assert search.st.total() == evaluate(inst, search.st.a).total < start


def test_waste_step_pairs_an_overloaded_machine_with_the_one_that_has_room() -> None:
    """Resource 0's total usage is above the total safety (its overload is a floor no
    placement avoids), resource 1's below it. Machine 0 is the only one over safety on
    resource 1 (waste 2) and machine 1 the only one with room there; machines 1 and 3
    are over on resource 0 alone (floor). A waste step draws machines 0 and 1 whatever
    the seed (the cost roulette would also draw 1 and 3), and its sub-model brings the
    cost down to the aggregate bound. Once a pair is settled the draws take three."""
    inst = tiny(capacity=[[20, 20]] * 4, safety=[[10, 10]] * 4,
                requirement=[[5, 8], [5, 4], [5, 2], [6, 4], [10, 10], [11, 10]],
                service=list(range(6)), initial=[0, 0, 1, 1, 2, 3], weights=(0, 0, 0))
    for seed in range(5):
        search = _Search(inst, SolveContext(time_limit=60, workers=1, seed=seed),
                         iterations=None)
        w, sign = search.waste()
        assert sign.tolist() == [1, -1]
        assert w.sum(axis=1).tolist() == [2, 0, 0, 0]
        assert search.st.total() == 4  # waste 2 plus the floor of resource 0 (2)
        machines = search.pick_waste(2)
        assert machines.tolist() == [0, 1]
        # once the pair is settled (solved without a gain, same processes) the draws
        # take the other pairs in turn (`next_pair`, with the compiled pair solver),
        # then three machines
        first, key = search.waste_machines()
        assert sorted(first.tolist()) == [0, 1] and key is not None
        search._settled.add(key)
        others = set()
        while True:
            again, key3 = search.waste_machines()
            if len(again) == 3:
                break
            assert key3 is not None and key3 not in search._settled
            others.add(tuple(sorted(again.tolist())))
            search._settled.add(key3)
        assert len(again) == 3 and key3 is not None and key3 != key
        if search.pair_sweep():
            assert len(others) == 5  # every other pair of the four machines once
        assert search.stats["waste_skipped"] == solver_mod.WASTE_DRAWS * (1 + len(others))
        search._settled.clear()
        improved, optimal = search.lns_step(
            machines, 5.0, linearization=solver_mod.WASTE_LINEARIZATION)
        assert improved and optimal
        assert search.st.total() == evaluate(inst, search.st.a).total == 2
        assert search.waste()[0].sum() == 0


WARM_SCRIPT = r"""
from pathlib import Path
from allocator.roadef import kernel, pair
from allocator.roadef.bench import warm_up
from allocator.roadef.instance import read_instance
from allocator.roadef.solver import solve_roadef

def signatures():
    return {n: len(f.signatures) for mod in (kernel, pair) for n in dir(mod)
            if hasattr(f := getattr(mod, n), "signatures")}

warm_up()
before = signatures()
for name in ("a2_5", "a2_2"):  # no transient resource / a transient one
    model = Path(%r) / "A" / f"model_{name}.txt"
    inst = read_instance(model, model.with_name(f"assignment_{name}.txt"), name)
    solve_roadef(inst, time_limit=600.0, seed=0, iterations=2)
print(before["anneal"], before["steepest"], before["branch_and_bound"], signatures() == before)
"""


@pytest.mark.skipif(not kernel.HAVE_NUMBA, reason="the kernels need numba")
def test_bench_warm_up_compiles_every_kernel_the_timed_solves_use() -> None:
    """`allocator bench roadef` warms the kernels before its first timed instance (a cold
    numba cache compiled them for 5-14 s inside that instance's budget): in a fresh
    process, solving set-A instances after `warm_up` compiles no new kernel signature."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", WARM_SCRIPT % str(ROADEF)],
                         capture_output=True, text=True, timeout=600, check=True)
    assert out.stdout.split() == ["1", "1", "1", "True"], out.stdout + out.stderr[-2000:]
