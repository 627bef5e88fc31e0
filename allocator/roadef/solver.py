"""Machine reassignment solver: local search plus CP-SAT large neighbourhood search.

It starts from the initial placement, feasible by the challenge's rules; one
that breaks a hard rule (an operator's snapshot: a capacity lowered, an
anti-affinity added) is first repaired by allocator/roadef/repair.py within a
share of the budget, or refused with an InfeasibleError naming the rules still
broken (at once when none can be mended, e.g. a transient resource over
capacity on an initial machine). Move costs stay measured against the initial
placement. From there every incumbent it keeps is feasible:

* steepest start (allocator/roadef/kernel.py, set-A sizes with numba, instances
  with a transient resource): the
  best improving shift over every (process, machine) pair, one at a time,
  until none improves. On instances whose transient room is nearly gone
  (a2_2, a2_3) the biggest gains must get that room first: this ends far
  below a descent in any other order, in under a second.
* local search (`RoadefState`): for one process, the cost change of shifting
  it to *every* machine is one vectorised expression over the [M, R] usage
  (load, balance, process/machine move costs, the service-move max); the
  capacity (with the transient rule) and conflict screens are vectorised
  too, and the best few candidates are applied and checked against the
  spread and dependency rules in O(service size). Swaps screen all partners
  of a process the same way and check the two shifts together.
* LNS: free the processes of a few machines (a costly machine plus partners
  from its neighbourhood or the whole cluster), fix everything else, and
  solve the exact sub-model with CP-SAT: capacity with the transient rule,
  conflict, spread and dependency constraints against the fixed processes,
  and the full cost of the freed part (load and balance of those machines,
  process and machine move costs, the service-move max as a variable above
  every affected service's count and the rest's maximum). The current
  placement is the hint, so a sub-solve never returns worse; an improving
  one is applied shift by shift and re-checked (`rules_ok`), and its cost
  change must equal the model's.

* simulated annealing (allocator/roadef/kernel.py, compiled with numba when
  it is installed): random shifts and swaps with the Metropolis rule, millions
  of moves per second, every kept move checked against every rule. It runs in
  a second thread on its own copy of the state; with a transient resource a
  share of its moves are ejection chains (p to m2, one process of m2 on to a
  third machine to make room). The kernel releases the GIL, so it takes the
  second core while this thread runs the descent and the LNS; the better of
  the two placements is returned.
* where the annealing thread sleeps through its first walk (a2_2, a2_3) and
  the machine has a spare core: a second LNS with another seed in a child
  process over that window, the better of the two kept
  (allocator/roadef/portfolio.py).

Time is a SolveContext budget; with `iterations` set the search is bounded
by counts and CP-SAT by deterministic time, so a seed gives one result on a
loaded machine too. Memory: the state is O(P R + M R + S (L + N)), plus the
instance's M x M move-cost matrix.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from allocator.roadef.evaluate import CostBreakdown, evaluate, violations
from allocator.roadef.instance import RoadefInstance
from allocator.roadef.repair import repair
from allocator.roadef.state import RoadefState
from allocator.solvers.context import Improvement, SolveContext

log = logging.getLogger(__name__)

#: Candidate targets tried per process after the vectorised screen (the rest
#: are worse; trying more only pays when the spread/dependency checks reject).
TRY_SHIFTS = 4
#: Above this many machines a shift is screened against a random sample of this size.
SHIFT_ALL_MACHINES = 500
#: Partners of a swap screened at once (all processes on set A; a sample on set B).
SWAP_SAMPLE = 2000
#: Freed processes per LNS sub-problem, and the range of machines freed.
LNS_MAX_FREE = 40
#: Without a transient resource: the machines of a plain LNS step, every process of
#: them freed (0: the adaptive 2-6 machines with LNS_MAX_FREE processes). a2_5, from a
#: 396 million annealing placement, 30 steps of 0.5-1 s: 3 whole machines (about 60
#: processes) gained 12-14 million, 40 of the processes of 2-6 machines 0.3 million,
#: 4-5 whole machines nothing (CP-SAT ran out of time).
LNS_WHOLE_MACHINES_NO_TR = 3
LNS_WHOLE_MAX_FREE = 80
LNS_WHOLE_MIN_PER_MACHINE = 15
LNS_MIN_MACHINES, LNS_MAX_MACHINES = 2, 6
#: Share of the whole-machine steps whose machines are drawn by their waste
#: (`_Search.pick_waste`) instead of their cost, on instances without balance
#: objectives, and the machines of such a step.
LNS_WASTE_SHARE = 1.0
LNS_WASTE_MACHINES = 2
#: CP-SAT's linearization_level on waste steps (None: its default, 1). Why 2: the
#: sub-model's cost is the load above safety of 2-3 whole machines, and the full LP
#: relaxation bounds it well. a2_5, the same 80 two-machine waste models from a 385 M
#: placement: 22.4 ms of CPU per solve against 33.0, 79 proved optimal against 76, the
#: same gain; 30 three-machine models at 0.3 s: 40.5 M gained against 21.8 M.
WASTE_LINEARIZATION: int | None = 2
#: Two-machine steps that free every process of both machines, on instances with waste
#: steps (a2_5), are solved by the compiled branch and bound of `pair.py` instead of CP-SAT
#: (`_Search.solve_pair`). Not on a2_1 (no transient resource or balance either, but
#: 2-machine plain steps of 20 processes): not measured better there (20 s pairs).
PAIR_SOLVER = True
#: ... and once the waste draws find only settled pairs, every pair of machines in turn
#: (`_Search.next_pair`), on instances with at most this many machines.
PAIR_SWEEP = True
PAIR_SWEEP_MAX_MACHINES = 200
#: ... with a three-machine step after this many sweep steps (about the CPU of one):
#: a pair-optimal placement can still need three machines to move on (a2_5 seed 5: stuck
#: at 364 M from 20 s with the sweep alone, where main's three-machine steps went on).
PAIR_SWEEP_PER_TRIPLE = 100
#: Draws of a waste step before it takes a set already settled (`waste_machines`).
WASTE_DRAWS = 8
#: CP-SAT time per sub-problem (s), and deterministic time when counting.
LNS_SUB_TIME = 0.3
#: The initial machines of a plain step's freed newcomers are targets too (with a
#: transient resource: going home gives back the room a newcomer takes). Off: not
#: better on a2_2 (one 40 s run each) and the steps get larger; evacuations add them.
LNS_HOMES = False
EVAC_HOMES = True
#: Share of the LNS steps that are evacuations (a costly process to a machine whose
#: initial placement leaves it transient room, with that machine's processes freed and
#: their homes plus the roomiest machines as targets), and the roomy machines added.
EVAC_SHARE = 0.3
EVAC_ROOMY_MIN, EVAC_ROOMY_MAX = 6, 10
#: Freed processes and CP-SAT time (s) of an evacuation (larger than a plain step:
#: the cascade needs the roomy machines' processes free too).
EVAC_MAX_FREE = 100
#: Receivers added for the largest newcomers of the receiver (how many per machine,
#: and how many levels), and the roomy machines added then. a2_2 / a2_3, evacuations
#: alone from the steepest start, 40 s of CPU: one newcomer per level 845.7 / 1345.9
#: million, two 871.9 / 1380.1, no chain 911.2 / 1355.7 (seed 0 / seed 1); on a2_2,
#: three levels 869.0 and a newcomer drawn by its size instead of the largest 869.3.
EVAC_CHAIN = 1
EVAC_DEPTH = 2
EVAC_CHAIN_ROOMY = (2, 4)
EVAC_SUB_TIME = 1.0
#: CP-SAT's linearization_level on evacuations (None: its default, 1). Why 2: an
#: evacuation's cost is the load above safety of 20-30 machines, and the full LP
#: relaxation bounds it (as on waste steps). The same 25 evacuations drawn from a2_2's
#: steepest start, 1.0 deterministic time each: the same 418 million gained in 11.0 s
#: of CPU against 19.7 s, 25 proved optimal against 20; from a 890 M placement 47.1
#: against 33.2 million in 9.0 against 11.0 s; 20 drawn from the steepest start of
#: a2_3 / a1_4 / a1_2: 112 / 70 / 160 million against 94 / 37 / 100.
EVAC_LINEARIZATION: int | None = 2
#: Other processes an evacuation frees with p, on instances with machines that have no
#: safety capacity at all (set A: a2_2, a2_3): the costliest ones to move off their
#: machines for which the receiver is a receiver too (`_Search.co_claimants`).
EVAC_CO = 2
#: Share of the evacuations that free them.
EVAC_CO_SHARE = 1.0
#: Receivers held for stranded processes (`_Search.reservations`), on instances with a
#: transient resource and machines without safety capacity (a2_2, a2_3): while a large
#: process sits on such a machine and has at most RESERVE_MAX_RECEIVERS receivers, no
#: smaller process may newly arrive on one of them if the two cannot share its static
#: transient room. Why: a2_3's bad runs end with process 223 (89 million) on machine 34,
#: the only receiver of process 438 (112 million on zero-safety machine 93); undoing it
#: takes a cascade of four or more moves that no step finds. Held-out seeds 86-109 (40 CPU
#: s, main and this at the same time): a2_3 mean 5.66 -> 4.76 %, runs above 5 % 12 -> 5 of
#: 24, 438 left on 93 7 -> 2 (docs/benchmarks/roadef.md, slot z).
RESERVE = True
#: Why one: with two (a2_2's 407 and 892 held, and 638 and 15 at a 1 % share) a2_2 was worse
#: in 5 of 6 tuning pairs (+7.9 million a pair); its stranded processes lose their receivers
#: to larger ones, which this rule lets through.
RESERVE_MAX_RECEIVERS = 1
#: ... and a load cost on its machine of at least this share of the cost when the LNS starts.
RESERVE_MIN_SHARE = 0.03
#: Whether the LNS also refuses the annealing's placements that take a reserved receiver
#: (unless the takers can go back). Off: the annealing does not hold the reservation, and
#: refusing its placements left the LNS behind (a2_3 held-out seed 72: 46 refusals, the
#: annealing's own placement returned at 12.94 % against main's 5.84 %).
RESERVE_PEER = False
#: Adaptive share: seconds of each kind before it adapts, and its bounds.
EVAC_WARMUP = 3.0
EVAC_MIN, EVAC_MAX = 0.1, 0.8
#: Home steps (`_Search.home_step`): the share of the plain LNS steps is the move
#: costs' share of the cost, at most HOME_MAX; the machines of one step (a moved
#: process's machine and home, then the homes of their newcomers and the machines of
#: their moved-away processes) and the processes freed (the moved ones first).
HOME_MAX = 0.7
HOME_MIN_MACHINES, HOME_MAX_MACHINES = 3, 4
HOME_MAX_FREE = 100
#: Simulated annealing (allocator/roadef/kernel.py, when numba is installed):
#: share of the budget, start and end temperature as multiples of the median
#: cost increase of a random shift, share of swaps among the moves tried, moves
#: per LNS iteration in deterministic mode, and shifts sampled for the scale.
ANNEAL_SHARE = 0.95
ANNEAL_T0, ANNEAL_T1 = 5.0, 5e-3
#: The first annealing's share of the annealing budget, the re-annealings' share
#: each, and their start temperature relative to the first.
ANNEAL_FIRST, ANNEAL_CYCLE, ANNEAL_REHEAT = 0.5, 0.25, 0.3
#: Skip the first annealing (the thread sleeps through it) where the LNS leads it by far:
#: instances with a transient resource and machines without safety capacity (a2_2,
#: a2_3). Why: `_Search.first_walk_idle`.
ANNEAL_FIRST_IDLE = True
#: ... and while it sleeps, when the machine shows a spare core, a second LNS runs in a
#: child process (allocator/roadef/portfolio.py) with another seed; the annealing thread
#: wakes up with the child's best when it beats the LNS thread's, and both go on from
#: the better one. Why: portfolio.py.
PORTFOLIO = True
#: The temperature never exceeds this multiple of the best cost per process.
ANNEAL_CAP = 5.0
ANNEAL_P_SWAP = 0.5
ANNEAL_SCAN = 1
ANNEAL_SWAP_SCAN = 20
#: Share of ejection chains among the moves tried (p to a machine, one of its
#: processes on to a third) on instances with a transient resource, and the third
#: machines tried per evicted process. Chains make room on machines whose
#: transient room is gone (a2_2, a2_3, a1_4: better in paired runs); without
#: transient resources they only slow the walk (a2_5: worse), so they are off.
ANNEAL_P_CHAIN = 0.3
ANNEAL_CHAIN_SCAN = 8
#: Share of ejections (kernel `_eject`: a process from a costly machine moves to a
#: random machine and up to ANNEAL_EJECT_DEPTH of that machine's processes leave, each
#: to its best machine, until it fits), and the swap partners screened, without a
#: transient resource (a2_5: 391.7 / 367.9 million at 20 / 60 s of CPU against 396.5
#: / 384.0 without ejections, and 400.5 with 20 partners; docs/benchmarks/roadef.md).
ANNEAL_P_EJECT = 0.1
#: ... and with a transient resource (next to the chains, which make room there), where
#: no machine lacks safety capacity: a1_2 / a1_4 at 20 s, held-out seeds 10, 11, 30, 31,
#: better in 8 of 8 pairs (a1_4 mean 7.8 -> 3.8 %). With zero-safety machines (a2_2,
#: a2_3) they stay off: a2_3 lost 0.7 points (4 of 12 better); they take the one
#: receiver of a stranded process there (docs/benchmarks/roadef.md, slot z).
ANNEAL_P_EJECT_TR = 0.1
ANNEAL_EJECT_DEPTH = 4
ANNEAL_SWAP_SCAN_NO_TR = 3
#: Moves start from the costliest of this many random machines (0: any process).
ANNEAL_FOCUS = 0
ANNEAL_MOVES_PER_ITERATION = 20_000
ANNEAL_SAMPLE = 4000
#: CPU governor of the two threads (`_Governor`, instances with waste steps): every
#: GOVERN_WINDOW seconds of wall time the process's CPU per wall second is measured;
#: below GOVERN_SOLO_BELOW cores the LNS thread runs alone (the annealing sleeps), and
#: both run again once the lone thread gets
#: more than GOVERN_RESUME_ABOVE of a core (after GOVERN_HOLD seconds, doubled each time
#: sharing fails again, at most GOVERN_HOLD_MAX). Why: `_Governor`.
GOVERN = True
GOVERN_WINDOW = 2.0
GOVERN_SOLO_BELOW = 1.25
#: ... and above this many: below it both threads run. Why: on a2_5 both did better at
#: half a core (10.1 % against 11.2 % for the LNS alone, mean of seeds 2 / 3 / 9, worse in
#: 2 of 3) and at a third or less (16.7 % against 20.4 %, 20 s of CPU, seed 0; 20.8 %
#: against 28.1 %, three solves at once at load 11, 0.15 of a core each), the LNS alone
#: at 2/3 of a core (5 seeds of 5) and at one core.
GOVERN_SOLO_MIN = 0.55
GOVERN_RESUME_ABOVE = 0.95
GOVERN_HOLD, GOVERN_HOLD_MAX = 4.0, 32.0
#: Start with the compiled steepest descent (set-A sizes, numba installed).
STEEPEST_FIRST = 1
STEEPEST_SHARED = 0
#: After an improving LNS step (and every 200 stale steps): the compiled steepest shift
#: descent over every process (`kernel.steepest`, set-A sizes with numba) instead of the
#: numpy shift screens over the step's machines. Why: those screens cost about 0.4 ms a
#: process (a2_5, profile of 40 s: 11 of the LNS thread's 40 s), a full compiled pass
#: over 1,000 processes x 50 machines about as much as one screen.
COMPILED_POLISH = True
#: ... also on instances with a transient resource.
POLISH_TRANSIENT = True


@dataclass
class RoadefResult:
    """The best placement found, its cost split, and how the search got there."""

    assignment: np.ndarray
    cost: CostBreakdown
    initial_cost: int
    moved: int
    time_s: float
    history: list[tuple[float, int, str]] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def objective(self) -> int:
        return self.cost.total


class _Search:
    def __init__(self, inst: RoadefInstance, ctx: SolveContext,
                 iterations: int | None, start: np.ndarray | None = None) -> None:
        self.inst = inst
        self.ctx = ctx
        #: from `start` (a repaired placement) or the initial one; move costs are
        #: measured against the initial placement either way
        self.st = RoadefState(inst, start)
        self.rng = np.random.default_rng(ctx.seed)
        self.iterations = iterations
        self.stats: dict[str, int] = {"shifts": 0, "swaps": 0, "lns_improved": 0, "lns_calls": 0,
                                      "lns_rejected": 0}
        self.history: list[tuple[float, int, str]] = []
        self.best = self.st.a.copy()
        self.best_cost = self.st.total()
        #: (cost, placement) in one attribute: what a peer search on another thread reads
        self.incumbent: tuple[int, np.ndarray] = (self.best_cost, self.best)
        self.peer: _Search | None = None
        self.last_report = -1.0
        # machine-independent constants of the shift screen
        tr = inst.transient
        self.nontr = (~tr).astype(np.int64)
        self.any_tr = bool(tr.any())
        #: machines with no safety capacity on any resource (every unit costs there)
        self._zs_machines = (inst.safety == 0).all(axis=1)
        self.zero_safety = bool(self._zs_machines.any())
        self._static_room: np.ndarray | None = None
        #: (process, its receivers, [P, receivers] who may not arrive there): see RESERVE
        self._reserve: list[tuple[int, np.ndarray, np.ndarray]] = []
        #: the last peer placement refused for taking a reserved receiver (counted once)
        self._refused: np.ndarray | None = None
        #: processes that no other machine's capacity and static room holds
        self._stuck: set[int] = set()
        #: waste steps solved to optimality without a gain: (machines, their processes)
        self._settled: set[tuple[tuple[int, ...], bytes]] = set()
        #: every pair of machines in a shuffled order, the next one, and the cost at
        #: which a whole cycle was settled (`next_pair`)
        self._pairs: np.ndarray | None = None
        self._pair_pos = 0
        self._pairs_dry = -1
        #: pair-sweep steps since the last three-machine waste step
        self._swept = 0
        #: what every pair sub-problem of the instance shares (`pair.PairStatic`)
        self._pair_static: Any = None
        #: the compiled kernel over `self.st` (rebuilt when the state is replaced)
        self._kernel: Any = None
        #: shared by both threads of a timed solve (None: both always run)
        self.governor: _Governor | None = None
        #: the child-process LNS of the first walk's window (`PORTFOLIO`), or None
        self.portfolio: Any = None

    # -- budget -------------------------------------------------------------

    def time_left(self) -> float:
        return self.ctx.remaining()

    def gate(self, role: str) -> None:
        if self.governor is not None:
            self.governor.gate(role)

    # -- incumbents ---------------------------------------------------------

    def note(self, source: str, force: bool = False) -> None:
        cost = self.st.total()
        if cost < self.best_cost:
            self.best_cost = cost
            self.best = self.st.a.copy()
            self.incumbent = (cost, self.best)
            t = self.ctx.elapsed()
            self.history.append((round(t, 3), cost, source))
            if self.ctx.on_improve is not None and (force or t - self.last_report > 0.5):
                self.last_report = t
                self.ctx.improve(self.best, source=source, objective=float(cost))

    # -- local search -------------------------------------------------------

    def shift_screen(self, p: int, targets: np.ndarray | None = None) -> bool:
        """Try the best improving shifts of p (to `targets`, default every machine)."""
        st = self.st
        m0 = int(st.a[p])
        r = st.req[p]
        i0 = int(st.init[p])
        s = int(st.svc[p])
        tgt = np.arange(st.inst.n_machines) if targets is None else targets
        # cost of removing p from m0
        u0 = st.use[m0] - r
        c0 = int(st.machine_costs(u0[None, :], np.array([m0]))[0])
        d_remove = c0 - int(st.mc[m0])
        if targets is None:
            delta = st.machine_costs(st.use + r) - st.mc + d_remove
            hard, cap = st.hard, st.cap
        else:
            delta = st.machine_costs(st.use[tgt] + r, tgt) - st.mc[tgt] + d_remove
            hard, cap = st.hard[tgt], st.cap[tgt]
        home = tgt == i0
        # process and machine move costs, and the service-move max
        pm = int(st.pmc[p])
        if m0 != i0:
            delta += np.where(home, -pm + st.w_sm * (st.service_move_after(s, -1)
                                                     - st.max_moved), 0)
        else:
            delta += np.where(home, 0, pm + st.w_sm * (st.service_move_after(s, +1)
                                                      - st.max_moved))
        if st.w_mm:
            delta += st.w_mm * (st.mmc[i0, tgt].astype(np.int64) - int(st.mmc[i0, m0]))
        # capacity (hard usage; coming home adds nothing on transient resources)
        ok = (hard + r <= cap).all(axis=1)
        if self.any_tr and home.any():
            ok[home] = bool((st.hard[i0] + r * self.nontr <= st.cap[i0]).all())
        ok[tgt == m0] = False
        sib = st.siblings(s)
        if len(sib) > 1:
            ok[np.isin(tgt, st.a[sib])] = False
        cand = np.flatnonzero(ok & (delta < 0))
        if cand.size == 0:
            return False
        if cand.size > TRY_SHIFTS:
            part = np.argpartition(delta[cand], TRY_SHIFTS)[:TRY_SHIFTS]
            cand = cand[part]
        cand = cand[np.argsort(delta[cand], kind="stable")]
        before = st.total()
        for m in tgt[cand].tolist():
            if st.shift_ok(p, m):
                after = st.total()
                if after < before:
                    self.stats["shifts"] += 1
                    return True
                st.move(p, m0)
        return False

    def targets(self) -> np.ndarray | None:
        """Machines a shift is screened against: all of them, or a fresh sample on
        large clusters (the screen is O(targets x R) per process)."""
        M = self.inst.n_machines
        if M <= SHIFT_ALL_MACHINES:
            return None
        return np.sort(self.rng.choice(M, SHIFT_ALL_MACHINES, replace=False))

    def swap_screen(self, p: int, partners: np.ndarray) -> bool:
        """Try the best improving swaps of p with one of `partners`."""
        st = self.st
        m1 = int(st.a[p])
        s = int(st.svc[p])
        q = partners[(st.a[partners] != m1) & (st.svc[partners] != s)]
        if q.size == 0:
            return False
        mq = st.a[q]
        rp = st.req[p]
        rq = st.req[q]
        use1 = st.use[m1] - rp + rq  # [k, R]
        use2 = st.use[mq] + rp - rq
        ok = (use1 <= st.cap[m1]).all(axis=1) & (use2 <= st.cap[mq]).all(axis=1)
        if not ok.any():
            return False
        q, mq, use1, use2 = q[ok], mq[ok], use1[ok], use2[ok]
        rows1 = np.full(q.size, m1)
        delta = (st.machine_costs(use1, rows1) - int(st.mc[m1])
                 + st.machine_costs(use2, mq) - st.mc[mq])
        i0 = int(st.init[p])
        iq = st.init[q]
        pm_p = int(st.pmc[p])
        delta += pm_p * ((mq != i0).astype(np.int64) - int(m1 != i0))
        delta += st.pmc[q] * ((iq != m1).astype(np.int64) - (iq != mq))
        if st.w_mm:
            delta += st.w_mm * (st.mmc[i0, mq].astype(np.int64) - int(st.mmc[i0, m1])
                                + st.mmc[iq, m1].astype(np.int64) - st.mmc[iq, mq])
        if st.w_sm:
            # the service-move max, ignoring decreases (a screen that never promises
            # more than the exact change below delivers)
            sq = st.svc[q]
            cp = int(st.svc_moved[s]) + (mq != i0).astype(np.int64) - int(m1 != i0)
            cq = st.svc_moved[sq] + (iq != m1) - (iq != mq)
            delta += st.w_sm * (np.maximum(st.max_moved, np.maximum(cp, cq)) - st.max_moved)
        good = np.flatnonzero(delta < 0)
        if good.size == 0:
            return False
        if good.size > TRY_SHIFTS:
            good = good[np.argpartition(delta[good], TRY_SHIFTS)[:TRY_SHIFTS]]
        good = good[np.argsort(delta[good], kind="stable")]
        before = st.total()
        for k in good.tolist():
            qq, m2 = int(q[k]), int(mq[k])
            st.move(p, m2)
            st.move(qq, m1)
            if st.total() < before and st.rules_ok((p, qq), (m1, m2)):
                self.stats["swaps"] += 1
                return True
            st.move(qq, m2)
            st.move(p, m1)
        return False

    def local_search(self, procs: np.ndarray | None = None, swaps: bool = True,
                     max_rounds: int = 50) -> None:
        """Shift (and swap) descent over `procs` (default: all) until no move improves."""
        P = self.inst.n_processes
        for _ in range(max_rounds):
            order = (self.rng.permutation(P) if procs is None
                     else self.rng.permutation(procs))
            # processes on the costliest machines first (stable: random among equals)
            order = order[np.argsort(-self.st.mc[self.st.a[order]], kind="stable")]
            improved = 0
            for i, p in enumerate(order.tolist()):
                if i % 64 == 0:
                    if self.time_left() <= 0:
                        return
                    self.gate("lns")
                if self.shift_screen(p, self.targets()):
                    improved += 1
            if swaps:
                sample = (np.arange(P) if P <= SWAP_SAMPLE
                          else self.rng.choice(P, SWAP_SAMPLE, replace=False))
                for i, p in enumerate(order.tolist()):
                    if i % 32 == 0:
                        if self.time_left() <= 0:
                            return
                        self.gate("lns")
                    if self.swap_screen(p, sample):
                        improved += 1
            self.note("local search")
            if not improved:
                return

    def polish(self, procs: np.ndarray | None) -> None:
        """Improving shifts after the placement changed: the compiled steepest descent
        over every process when it runs here (`COMPILED_POLISH`), else the numpy
        descent over `procs` (default: all, one round)."""
        from allocator.roadef.kernel import HAVE_NUMBA, LIST_CELLS, Annealer

        P, M = self.inst.n_processes, self.inst.n_machines
        if (not COMPILED_POLISH or not HAVE_NUMBA or P * M > LIST_CELLS or M < 2
                or (self.any_tr and not POLISH_TRANSIENT)):
            self.local_search(procs, swaps=False, max_rounds=2 if procs is not None else 1)
            return
        if self._kernel is None or self._kernel.st is not self.st:
            self._kernel = Annealer(self.st)
        before = int(self._kernel.stats[0])
        a0 = self.st.a.copy() if self._reserve else None
        cost0 = self.st.total()
        self._kernel.descend(swaps=False)
        self.stats["shifts"] += int(self._kernel.stats[0]) - before
        if a0 is not None:
            self.keep_reserve(a0, cost0)

    def keep_reserve(self, a0: np.ndarray, cost0: int) -> None:
        """Undo the shifts since placement `a0` (of cost `cost0`) that took a reserved
        receiver (`RESERVE`): those processes go back, or the whole placement does when
        one cannot or the cost ends above `cost0`."""
        st = self.st
        bad = self.breaks_reserve(a0, st.a)
        if bad.size == 0:
            return
        self.count("reserve_undone")
        if all(st.shift_ok(q, int(a0[q])) for q in bad.tolist()) and st.total() <= cost0:
            return
        self.st = RoadefState(self.inst, a0)

    # -- LNS ----------------------------------------------------------------

    def pick_machines(self, k: int) -> np.ndarray:
        """A costly machine (roulette on load + balance cost) and k-1 partners."""
        st = self.st
        M = self.inst.n_machines
        w = st.mc.astype(float)
        if w.sum() > 0 and self.rng.random() < 0.8:
            first = int(self.rng.choice(M, p=w / w.sum()))
        else:
            first = int(self.rng.integers(M))
        same_hood = self.rng.random() < 0.5
        pool = np.flatnonzero(st.nb == st.nb[first]) if same_hood else np.arange(M)
        pool = pool[pool != first]
        if pool.size == 0:
            return np.array([first])
        take = min(k - 1, pool.size)
        u = self.rng.random()
        if u < 0.4 and pool.size > take:
            # partners with room below safety where the first machine is over it
            over = np.maximum(0, st.use[first] - st.saf[first]) > 0
            if not over.any():
                over = np.ones_like(over)
            room = np.maximum(0, st.saf[pool] - st.use[pool])[:, over] / np.maximum(
                1, st.saf[pool][:, over])
            score = room.sum(axis=1) + 0.1 * self.rng.random(pool.size)
            others = pool[np.argsort(-score, kind="stable")[:take]]
        elif u < 0.6 and pool.size > take:
            cheap = pool[np.argsort(st.mc[pool] + self.rng.random(pool.size), kind="stable")]
            others = cheap[:take]
        else:
            others = self.rng.choice(pool, take, replace=False)
        return np.concatenate([[first], others]).astype(np.int64)

    def waste(self) -> tuple[np.ndarray, np.ndarray]:
        """Per machine and resource, the load cost above the aggregate bound
        ([M, R], load weight times units), and the sign of each resource (+1: the
        total usage exceeds the total safety, so a machine's room below safety is the
        waste; -1: it does not, so a machine's load above safety is). Load only."""
        st = self.st
        over_total = st.use.sum(axis=0) > st.saf.sum(axis=0)
        d = st.use - st.saf
        w = np.where(over_total, np.maximum(0, -d), np.maximum(0, d)) * st.lw
        return w, np.where(over_total, 1, -1)

    def pick_waste(self, k: int) -> np.ndarray:
        """A machine drawn by its waste (the cost above the aggregate lower bound:
        room below safety in a resource whose total usage is above the total safety,
        load above safety in one whose total is below) and k-1 partners that can take
        it away: load where the first machine has room in the first kind, room where
        it is over in the second. Why: a2_5 at 355 M (60 s) is 307 M of aggregate bound
        plus 48 M of waste, 35 M of it resource 4 (total usage 2 % below total safety,
        3.5 M units above safety on eight machines); the cost roulette of
        `pick_machines` draws machines for their unavoidable overload (resource 3: 15 M
        units of floor) as often."""
        st = self.st
        M = self.inst.n_machines
        w, sign = self.waste()
        wm = w.sum(axis=1).astype(float)
        if wm.sum() <= 0:
            return self.pick_machines(k)
        first = int(self.rng.choice(M, p=wm / wm.sum()))
        # what the partners must offer, per resource (weight of first's waste there)
        need = w[first].astype(float)
        d = st.use - st.saf  # > 0: over safety
        # first has room in an over-total resource: partners over safety there;
        # first is over in an under-total one: partners with room there
        offer = np.where(sign > 0, np.maximum(0, d), np.maximum(0, -d)).astype(float)
        score = offer @ (need / max(1.0, need.sum())) if need.sum() > 0 else np.zeros(M)
        score[first] = -1.0
        pool = np.flatnonzero(score > 0)
        if pool.size < k - 1:
            return self.pick_machines(k)
        p = score[pool] / score[pool].sum()
        others = self.rng.choice(pool, k - 1, replace=False, p=p)
        return np.concatenate([[first], others]).astype(np.int64)

    def waste_machines(self) -> tuple[np.ndarray, tuple[tuple[int, ...], bytes] | None]:
        """The machines of a waste step (`pick_waste`) and the step's key: redrawn (up
        to WASTE_DRAWS times) while the draw is a set that was solved to optimality
        without a gain and holds the same processes since, then one machine more.
        Why: a2_5's waste sits on a few machines, so the roulette draws the same pairs
        again and again (a 2-machine sub-model is solved to optimality in a few
        hundredths of a second); once the pairs it draws are settled, only larger
        sets can gain."""
        machines = np.zeros(0, dtype=np.int64)
        for k in (LNS_WASTE_MACHINES, LNS_WASTE_MACHINES + 1):
            if k > 2:
                self._swept = 0  # a three-machine step: then the sweep's turn again
            for _ in range(WASTE_DRAWS):
                machines = self.pick_waste(k)
                key = self.step_key(machines)
                if key not in self._settled:
                    return machines, key
                self.stats["waste_skipped"] = self.stats.get("waste_skipped", 0) + 1
            if k == 2 and self.pair_sweep() and self._swept < PAIR_SWEEP_PER_TRIPLE:
                found = self.next_pair()
                if found is not None:
                    self._swept += 1
                    return found
        return machines, None

    def step_key(self, machines: np.ndarray) -> tuple[tuple[int, ...], bytes]:
        """The machines of a step and which of their processes sit where (`_settled`)."""
        a = self.st.a
        ms = np.sort(machines)
        on = np.flatnonzero(np.isin(a, ms))
        return tuple(ms.tolist()), (on * len(ms) + np.searchsorted(ms, a[on])).tobytes()

    def pair_sweep(self) -> bool:
        """Whether settled waste draws fall back to every pair of machines in turn
        (`next_pair`): where the compiled pair solver runs and the pairs are few."""
        from allocator.roadef.pair import HAVE_NUMBA as pair_compiled

        return (PAIR_SOLVER and PAIR_SWEEP and pair_compiled and not self.any_tr
                and not self.st.bal and self.inst.n_machines <= PAIR_SWEEP_MAX_MACHINES)

    def next_pair(self) -> tuple[np.ndarray, tuple[tuple[int, ...], bytes]] | None:
        """The next pair of machines, in a shuffled cycle of all pairs, that is not
        settled; None after a whole cycle of settled pairs (until the cost changes).
        Why: the waste roulette draws few of the pairs, and once those are settled the
        others still gain. a2_5 after 30 s (seed 4): every pair once from the final
        placement, 1.9 s of CPU, gained 7.3 M (259 of 1,225 pairs improved)."""
        total = self.st.total()
        if self._pairs_dry == total:
            return None
        if self._pairs is None:
            M = self.inst.n_machines
            ii, jj = np.triu_indices(M, 1)
            self._pairs = np.stack([ii, jj], axis=1).astype(np.int64)[
                self.rng.permutation(ii.size)]
        n = len(self._pairs)
        for _ in range(n):
            machines = self._pairs[self._pair_pos]
            self._pair_pos = (self._pair_pos + 1) % n
            key = self.step_key(machines)
            if key not in self._settled:
                self.stats["pair_sweep"] = self.stats.get("pair_sweep", 0) + 1
                return machines.copy(), key
        self._pairs_dry = total
        return None

    def home_step(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The freed processes and machines of a home step, or None (nothing moved).

        Why: once the load is gone the cost is the moves (a2_1: one unit per moved
        process, 10 for the service-move max; 350-400 at 60 s, where the plain steps'
        random machines rarely hold a moved process's home, so a step can send a process
        home only by luck). A step frees a moved process (drawn by its move cost), its
        machine and its home, then grows the set along the same links: the homes of the
        newcomers of the set's machines and the machines of the processes that left
        them. Every process on the set is free (the moved ones first when capped)."""
        st = self.st
        a, init = st.a, st.init
        moved = np.flatnonzero(a != init)
        if moved.size == 0:
            return None
        w = st.pmc[moved].astype(float) + 1.0
        if st.w_mm:
            w += st.w_mm * st.mmc[init[moved], a[moved]]
        p = int(self.rng.choice(moved, p=w / w.sum()))
        k = int(self.rng.integers(HOME_MIN_MACHINES, HOME_MAX_MACHINES + 1))
        chosen = [int(a[p]), int(init[p])]
        frontier = list(chosen)
        while len(chosen) < k and frontier:
            m = frontier.pop(0)
            linked = np.concatenate([init[(a == m) & (init != m)], a[(init == m) & (a != m)]])
            linked = np.unique(linked)
            linked = linked[~np.isin(linked, chosen)]
            for mm in self.rng.permutation(linked)[:k - len(chosen)].tolist():
                chosen.append(int(mm))
                frontier.append(int(mm))
        if len(chosen) < k:
            pool = np.setdiff1d(np.arange(self.inst.n_machines), chosen)
            extra = self.rng.choice(pool, min(k - len(chosen), pool.size), replace=False)
            chosen.extend(int(m) for m in extra)
        machines = np.unique(np.asarray(chosen, dtype=np.int64))
        on = np.flatnonzero(np.isin(a, machines))
        if on.size > HOME_MAX_FREE:
            away = on[a[on] != init[on]]
            rest = on[a[on] == init[on]]
            keep = max(0, HOME_MAX_FREE - away.size)
            on = np.concatenate([away[:HOME_MAX_FREE],
                                 self.rng.choice(rest, min(keep, rest.size), replace=False)])
        return np.unique(on).astype(np.int64), machines

    def home_share(self) -> float:
        """The share of home steps: the move costs' share of the cost (at most HOME_MAX)."""
        total = self.st.total()
        if total <= 0:
            return 0.0
        return min(HOME_MAX, (total - self.st.mc_total) / total)

    def receivers(self, p: int) -> np.ndarray:
        """The machines whose capacity (and, on transient resources, capacity minus
        initial usage) holds p, other than p's home, its machine and its siblings'."""
        st = self.st
        r = st.req[p]
        ok = (st.cap >= r).all(axis=1)
        tr = self.inst.transient
        if tr.any():
            ok &= (self.static_room()[:, tr] >= r[tr]).all(axis=1)
        ok[int(st.init[p])] = False  # its home holds it anyway (not a receiver)
        if not ok.any():
            self._stuck.add(p)
        ok[int(st.a[p])] = False
        ok[st.a[st.siblings(int(st.svc[p]))]] = False
        return np.flatnonzero(ok)

    def allowed_receivers(self, p: int) -> np.ndarray:
        """`receivers(p)` less those reserved for another process (`RESERVE`)."""
        recv = self.receivers(p)
        if self._reserve and recv.size:
            no = self.forbidden(np.array([p], dtype=np.int64)).get(p)
            if no:
                recv = recv[~np.isin(recv, list(no))]
        return recv

    def evacuation(self, p: int | None = None, m: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray] | None:
        """The freed processes and machines of an evacuation sub-problem, or None.

        Why: on a transient resource a machine can only ever take newcomers up to its
        capacity minus its *initial* usage (what left it stays held there), so a large
        process on a costly machine (a2_2, a2_3: machines with no safety capacity, where
        every unit costs) has few possible receivers, and those are full of newcomers
        placed earlier for smaller gains. Moving it is a cascade no shift, swap or chain
        makes: the receiver's processes go to other machines, whose processes make room
        in turn. The sub-problem frees the process, a receiver and a few of the machines
        with the most room left (all their processes): a2_2, one such step from a 60 s
        placement, -41 million (4 %) in 1 s of CP-SAT, where freeing the receiver alone
        with 4 roomy targets found nothing."""
        st = self.st
        P, M = self.inst.n_processes, self.inst.n_machines
        if M < 3:
            return None
        a = st.a
        # gain of taking each process off its machine (load + balance only)
        left = st.use[a] - st.req
        gain = st.mc[a] - st.machine_costs(left, a)
        w = np.maximum(gain, 0).astype(float)
        if w.sum() <= 0:
            return None
        if p is None:
            # processes no machine's static room holds never move (a2_2: 158 million of
            # load on two such processes would take most draws)
            w[list(self._stuck)] = 0.0
            for _ in range(8):
                if w.sum() <= 0:
                    return None
                p = int(self.rng.choice(P, p=w / w.sum()))
                recv = self.allowed_receivers(p)
                if recv.size:
                    break
                w[p] = 0.0
            else:
                return None
        else:
            recv = self.allowed_receivers(p)
            if recv.size == 0:
                return None
        m0 = int(a[p])
        if m is None:
            m = int(self.rng.choice(recv))
        # roomy: transient room left plus room under safety, relative to capacity (the
        # machines where most of the receiver's processes fit now did worse: a2_2, from
        # the steepest start, 40 s of evacuations alone, 3 seeds)
        rel = ((st.cap - st.hard) / np.maximum(1, st.cap)).sum(axis=1) + (
            np.maximum(0, st.saf - st.use) / np.maximum(1, st.cap)).sum(axis=1)
        chain = self.chain(m, {m0, m}) if EVAC_CHAIN else []
        rel[[m, m0, *chain]] = -np.inf
        lo, hi = (EVAC_CHAIN_ROOMY if chain else (EVAC_ROOMY_MIN, EVAC_ROOMY_MAX))
        k = int(self.rng.integers(lo, hi + 1))
        top = np.argsort(-rel, kind="stable")[:2 * k]
        top = top[np.isfinite(rel[top])]
        roomy = self.rng.choice(top, min(k, top.size), replace=False)
        machines = np.unique(np.concatenate([[m0, m], chain, roomy])).astype(np.int64)
        # every process of the receiver and the roomy machines, and p (not the rest of
        # its machine: taking p off is the point)
        on = np.flatnonzero(np.isin(a, machines[machines != m0]))
        if on.size > EVAC_MAX_FREE - 1:
            on_m = on[a[on] == m]
            rest = on[a[on] != m]
            keep = max(0, EVAC_MAX_FREE - 1 - on_m.size)
            on = np.concatenate([on_m, self.rng.choice(rest, min(keep, rest.size),
                                                       replace=False)])
        with_co = EVAC_CO > 0 and self.zero_safety and (
            EVAC_CO_SHARE >= 1.0 or self.rng.random() < EVAC_CO_SHARE)
        co = self.co_claimants(p, m, gain, on) if with_co else []
        if co:
            self.stats["evac_co"] = self.stats.get("evac_co", 0) + len(co)
            machines = np.unique(np.concatenate([machines, a[co]])).astype(np.int64)
        freed = np.unique(np.concatenate([[p], on, co])).astype(np.int64)
        return freed, (self.with_homes(freed, machines) if EVAC_HOMES else machines)

    def co_claimants(self, p: int, m: int, gain: np.ndarray,
                     freed: np.ndarray) -> list[int]:
        """Up to EVAC_CO processes other than p and `freed`, with the most to gain
        from leaving their machine and m among their receivers (freed alone: the rest
        of their machines stays fixed).

        Why: a receiver's transient room can take two large processes or one, and
        which ones is decided by the order of single evacuations. a2_2: in the best
        60 s placements (805, 819, 857 M) processes 768 and 892 (67 and 48 million on
        zero-safety machine 72) both moved to machine 58; in the twelve placements above
        890 M both stayed on 72."""
        st = self.st
        cand = np.flatnonzero(gain > 0)
        cand = cand[(cand != p) & ~np.isin(cand, freed)]
        if self._stuck:
            cand = cand[~np.isin(cand, list(self._stuck))]
        cand = cand[np.argsort(-gain[cand], kind="stable")]
        out: list[int] = []
        for q in cand[:8 * EVAC_CO].tolist():
            if m in self.receivers(q) and int(st.svc[q]) != int(st.svc[p]):
                out.append(q)
                if len(out) == EVAC_CO:
                    break
        return out

    def chain(self, m: int, taken: set[int]) -> list[int]:
        """Receivers for the largest newcomers of `m` (EVAC_CHAIN of them), and for
        those receivers' largest newcomers in turn (EVAC_DEPTH levels): where the
        processes that hold m's transient room can go. Why: the receivers of a large
        process are held by other large newcomers with receivers of their own. a2_2 from
        a 60 s placement: process 768 (67 million on a zero-safety machine) to machine
        52 is held by process 407 there; with 52 and a receiver of 407 (61) freed, -37
        million in 0.2 s; with 52 and 6 roomy machines, nothing."""
        st = self.st
        value = st.req @ st.lw
        out: list[int] = []
        level = [m]
        for _ in range(EVAC_DEPTH):
            nxt: list[int] = []
            for mm in level:
                on = np.flatnonzero((st.a == mm) & (st.init != mm))
                if on.size == 0:
                    continue
                big = on[np.argsort(-value[on], kind="stable")[:EVAC_CHAIN]]
                for q in big.tolist():
                    recv = [r for r in self.receivers(q).tolist()
                            if r not in taken and r != int(st.init[q])]
                    if recv:
                        r = int(self.rng.choice(recv))
                        taken.add(r)
                        out.append(r)
                        nxt.append(r)
            level = nxt
        return out

    def with_homes(self, freed: np.ndarray, machines: np.ndarray) -> np.ndarray:
        """`machines` plus the initial machines of the freed processes that moved away
        (their processes stay fixed). Why: a newcomer going home gives back the transient
        room it takes, and its home needs none for it; a receiver's room is mostly held
        by newcomers. a2_2 from a 60 s placement, one evacuation step (process 407 to
        machine 61, 6 roomy machines): no gain without the homes, -47.8 million with
        them (0.2 s of CP-SAT)."""
        st = self.st
        away = freed[st.a[freed] != st.init[freed]]
        if away.size == 0:
            return machines
        return np.unique(np.concatenate([machines, st.init[away]])).astype(np.int64)

    def evac_share(self, rates: np.ndarray) -> float:
        """The share of evacuation steps: EVAC_SHARE until both kinds of step have run
        EVAC_WARMUP seconds, then in proportion to each kind's gain per second, kept
        within [EVAC_MIN, EVAC_MAX]. Why: an evacuation costs about three plain steps
        (1 s of CP-SAT on up to 100 processes); where the plain steps gain more per
        second (a1_2, lower by 0.4-1.4 % at 60 s with a fixed 30 %) they get the time.
        In counted mode (`iterations`) the share stays fixed (seconds are not
        deterministic)."""
        if self.iterations is not None or (rates[:, 1] < EVAC_WARMUP).any():
            return EVAC_SHARE
        speed = np.maximum(rates[:, 0], 0.0) / rates[:, 1]
        if speed.sum() <= 0:
            return EVAC_SHARE
        return float(min(EVAC_MAX, max(EVAC_MIN, speed[0] / speed.sum())))

    def whole_machines(self) -> bool:
        """Plain LNS steps free every process of LNS_WHOLE_MACHINES_NO_TR machines:
        instances without a transient resource and with at least
        LNS_WHOLE_MIN_PER_MACHINE processes per machine. Why the second: with fewer,
        3 machines are too few targets (a2_1, 10 per machine, counted mode: 1.03
        million against 430 with the 40-process steps of 2-6 machines)."""
        inst = self.inst
        return (LNS_WHOLE_MACHINES_NO_TR > 0 and not inst.transient.any()
                and inst.n_processes >= LNS_WHOLE_MIN_PER_MACHINE * inst.n_machines)

    def waste_steps(self) -> bool:
        """Whole-machine steps draw machines by waste (`pick_waste`): where the plain
        steps free whole machines and the cost has no balance term (the waste is
        measured against the aggregate bound of the load cost alone)."""
        return self.whole_machines() and not self.st.bal

    def static_room(self) -> np.ndarray:
        """int64[M,R]: capacity minus initial usage (the transient room newcomers share)."""
        if self._static_room is None:
            u0 = np.zeros_like(self.st.use)
            np.add.at(u0, self.inst.initial, self.st.req)
            self._static_room = self.st.cap - u0
        return self._static_room

    def reservations(self) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """The stranded processes whose receivers are held for them (`RESERVE`): each
        with its receivers and, per receiver, the smaller processes that cannot share
        that receiver's static transient room with it (they may not arrive there while
        the process stays on a zero-safety machine)."""
        st = self.st
        if not (RESERVE and self.any_tr and self.zero_safety):
            return []
        tr = self.inst.transient
        room = self.static_room()
        value = st.req @ st.lw
        thr = RESERVE_MIN_SHARE * st.total()
        out: list[tuple[int, np.ndarray, np.ndarray]] = []
        for p in np.flatnonzero(self._zs_machines[st.a] & (value >= thr)).tolist():
            r = st.req[p]
            ok = (st.cap >= r).all(axis=1) & (room[:, tr] >= r[tr]).all(axis=1)
            ok[int(st.init[p])] = False
            recv = np.flatnonzero(ok)
            if recv.size == 0 or recv.size > RESERVE_MAX_RECEIVERS:
                continue
            excl = ((st.req[:, None, tr] + r[tr]) > room[recv][:, tr][None, :, :]).any(axis=2)
            excl &= (value < value[p])[:, None]
            excl &= st.init[:, None] != recv[None, :]
            excl[p] = False
            out.append((p, recv, excl))
        return out

    def forbidden(self, procs: np.ndarray) -> dict[int, set[int]]:
        """The reserved receivers each of `procs` may not move to now (`RESERVE`)."""
        st = self.st
        out: dict[int, set[int]] = {}
        for p, recv, excl in self._reserve:
            if not self._zs_machines[st.a[p]]:
                continue
            for k, m in enumerate(recv.tolist()):
                for q in procs[excl[procs, k] & (st.a[procs] != m)].tolist():
                    out.setdefault(q, set()).add(m)
        return out

    def forbid_for(self, on: np.ndarray) -> dict[int, set[int]] | None:
        """`forbidden(on)` for a sub-model (None: nothing reserved), counted."""
        if not self._reserve:
            return None
        no = self.forbidden(on)
        if no:
            self.count("reserve_forbid_steps")
        return no

    def breaks_reserve(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        """The processes that arrive, from `before` to `after`, on a receiver reserved
        for a process still on its zero-safety machine (empty: none)."""
        bad: list[np.ndarray] = []
        for p, recv, excl in self._reserve:
            if not self._zs_machines[before[p]] or after[p] != before[p]:
                continue
            for k, m in enumerate(recv.tolist()):
                q = np.flatnonzero(excl[:, k] & (after == m) & (before != m))
                if q.size:
                    bad.append(q)
        return np.unique(np.concatenate(bad)) if bad else np.zeros(0, dtype=np.int64)

    def count(self, key: str, n: int = 1) -> None:
        self.stats[key] = self.stats.get(key, 0) + n

    def lns_step(self, machines: np.ndarray, sub_time: float,
                 freed: np.ndarray | None = None,
                 linearization: int | None = None) -> tuple[bool, bool]:
        """One sub-problem over `machines` (freeing their processes, or `freed`);
        returns (improved, solved to optimality)."""
        from allocator.roadef.subproblem import solve_subproblem

        st = self.st
        on = freed if freed is not None else np.flatnonzero(np.isin(st.a, machines))
        if on.size == 0:
            return False, True
        cap = LNS_WHOLE_MAX_FREE if self.whole_machines() else LNS_MAX_FREE
        if freed is None and on.size > cap:
            on = np.sort(self.rng.choice(on, cap, replace=False))
        if freed is None and LNS_HOMES and self.any_tr:
            machines = self.with_homes(on, machines)
        self.stats["lns_calls"] += 1
        seed = int(self.rng.integers(1 << 30))
        res = self.solve_pair(on, machines) if PAIR_SOLVER and self.waste_steps() else None
        if res is None:
            res = solve_subproblem(st, on, machines, time_limit=sub_time,
                                   deterministic=self.iterations is not None,
                                   seed=seed, ctx=self.ctx, linearization=linearization,
                                   forbid=self.forbid_for(on))
        if res is None:
            return False, False
        new_machine, delta, optimal = res
        if delta >= 0:
            return False, optimal
        before = st.total()
        old = st.a[on].copy()
        a_before = st.a.copy() if self._reserve else None
        changed = np.flatnonzero(new_machine != old)
        # leave first, then arrive: intermediate states may break rules; the end is checked
        for i in changed.tolist():
            st.move(int(on[i]), int(new_machine[i]))
        # the model's objective bounds the change (its slack variables need not be
        # tight when CP-SAT stops early); the state's change is the exact one
        real = st.total() - before
        if a_before is not None and self.breaks_reserve(a_before, st.a).size:
            self.count("reserve_refused_lns")
        elif st.rules_ok(on.tolist(), machines.tolist()) and real <= delta:
            if real < 0:
                self.stats["lns_improved"] += 1
                return True, optimal
        else:
            log.warning("roadef LNS: sub-model solution rejected by the exact check "
                        "(model change %d, exact change %d)", delta, real)
            self.stats["lns_rejected"] += 1
        for i in changed.tolist():
            st.move(int(on[i]), int(old[i]))
        return False, optimal

    def solve_pair(self, on: np.ndarray, machines: np.ndarray
                   ) -> tuple[np.ndarray, int, bool] | None:
        """The sub-problem of every process of two machines by the compiled branch and
        bound (`pair.PairProblem`), or None where it does not model it (CP-SAT then).
        Why: a2_5's waste steps; the same 1,421 recorded two-machine models of a 40 s
        solve: 1.2 s of CPU for the compiled solver (2.1 s building its arrays) against
        34.0 s for CP-SAT, the same optimum wherever both proved one (1,407)."""
        from allocator.roadef.pair import PAIR_NODE_LIMIT, PairProblem, PairStatic, pair_applies

        if not pair_applies(self.st, machines, on):
            return None
        if self._pair_static is None:
            self._pair_static = PairStatic(self.st)
        pp = PairProblem(self.st, machines, self._pair_static)
        if not pp.ok:
            return None
        procs, new, delta, optimal = pp.solve(PAIR_NODE_LIMIT)
        if not np.array_equal(procs, on):
            return None
        self.stats["pair_calls"] = self.stats.get("pair_calls", 0) + 1
        return new, delta, optimal

    # -- simulated annealing (compiled kernel) ---------------------------------

    def anneal_scale(self) -> float:
        """The starting temperature: a multiple of the median cost increase of random
        feasible shifts from the current placement (instances differ by orders of
        magnitude in their costs; the acceptance rate is what the schedule sets)."""
        st = self.st
        P, M = self.inst.n_processes, self.inst.n_machines
        rng = np.random.default_rng(int(self.rng.integers(1 << 30)))
        ps = rng.integers(P, size=ANNEAL_SAMPLE)
        ms = rng.integers(M, size=ANNEAL_SAMPLE)
        m0 = st.a[ps]
        keep = ms != m0
        ps, ms, m0 = ps[keep], ms[keep], m0[keep]
        r = st.req[ps]
        fits = (st.hard[ms] + r <= st.cap[ms]).all(axis=1)
        ps, ms, m0, r = ps[fits], ms[fits], m0[fits], r[fits]
        if ps.size == 0:
            return 1.0
        d = (st.machine_costs(st.use[m0] - r, m0) - st.mc[m0]
             + st.machine_costs(st.use[ms] + r, ms) - st.mc[ms])
        up = d[d > 0]
        return float(np.median(up)) if up.size else 1.0

    def anneal(self, budget: float, heat: float = 1.0) -> None:
        """Simulated annealing over shifts and swaps for `budget` seconds (or a move
        count in deterministic mode), temperature falling geometrically from
        ANNEAL_T0 to ANNEAL_T1 times `anneal_scale()`; ends on the best placement."""
        from allocator.roadef.kernel import Annealer

        st = self.st
        scale = self.anneal_scale()
        t0, t1 = heat * ANNEAL_T0 * scale, heat * ANNEAL_T1 * scale
        P = self.inst.n_processes

        def temp(frac: float) -> float:
            # geometric, but never above ANNEAL_CAP times the best cost per process:
            # a cost that falls by orders of magnitude (a2_1: 391 million to a few
            # hundred) would stay random under temperatures taken from the first moves
            return float(min(t0 * (t1 / t0) ** frac, ANNEAL_CAP * int(an.best[0]) / P))

        an = Annealer(st)
        seed = int(self.rng.integers(1 << 30))
        any_tr = bool(self.inst.transient.any())
        p_chain = ANNEAL_P_CHAIN if any_tr else 0.0
        # ejections where whole-machine LNS steps run too (a2_1, 10 processes per
        # machine: 364 at 60 s with them against 324 without)
        dense = self.inst.n_processes >= LNS_WHOLE_MIN_PER_MACHINE * self.inst.n_machines
        p_eject = ((0.0 if self.zero_safety else ANNEAL_P_EJECT_TR) if any_tr
                   else (ANNEAL_P_EJECT if dense else 0.0))
        swap_scan = (ANNEAL_SWAP_SCAN if any_tr or not dense else ANNEAL_SWAP_SCAN_NO_TR)
        if self.iterations is not None:
            total = ANNEAL_MOVES_PER_ITERATION * max(1, self.iterations)
            chunks = 20
            for c in range(chunks):
                a0, a1 = c / chunks, (c + 1) / chunks
                an.run(total // chunks, temp(a0), temp(a1),
                       ANNEAL_P_SWAP, seed + c, ANNEAL_SCAN, swap_scan,
                       p_chain, ANNEAL_CHAIN_SCAN, ANNEAL_FOCUS, p_eject, ANNEAL_EJECT_DEPTH)
        else:
            start = self.ctx.elapsed()
            n = 20_000  # first chunk: also measures the speed
            c = 0
            while True:
                # no budget left (a short limit spent by the start): nothing to anneal
                done = (self.ctx.elapsed() - start) / budget if budget > 0 else 1.0
                if done >= 1.0 or self.time_left() <= 0.05:
                    break
                self.gate("anneal")
                tick = time.perf_counter()
                # the chunk's end temperature, from the speed of the last chunk
                a0 = done
                a1 = min(1.0, done + 0.02)
                an.run(n, temp(a0), temp(a1), ANNEAL_P_SWAP, seed + c,
                       ANNEAL_SCAN, swap_scan, p_chain, ANNEAL_CHAIN_SCAN,
                       ANNEAL_FOCUS, p_eject, ANNEAL_EJECT_DEPTH)
                c += 1
                took = max(1e-4, time.perf_counter() - tick)
                n = max(10_000, int(n * min(4.0, 0.02 * budget / took)))
                if an.best[0] < self.best_cost:
                    self.best_cost = int(an.best[0])
                    self.best = an.best_a.copy()
                    self.incumbent = (self.best_cost, self.best)
                    t = self.ctx.elapsed()
                    self.history.append((round(t, 3), self.best_cost, "anneal"))
                    if self.ctx.on_improve is not None and t - self.last_report > 0.5:
                        self.last_report = t
                        self.ctx.improve(self.best, source="anneal",
                                         objective=float(self.best_cost))
        for i, key in enumerate(("anneal_shifts", "anneal_swaps", "anneal_tried",
                                    "anneal_chains", "anneal_ejects", "anneal_ejects_tried")):
            self.stats[key] = self.stats.get(key, 0) + int(an.stats[i])
        if an.best[0] < self.best_cost:
            self.best_cost = int(an.best[0])
            self.best = an.best_a.copy()
            self.incumbent = (self.best_cost, self.best)
            self.history.append((round(self.ctx.elapsed(), 3), self.best_cost, "anneal"))
        # go on from the best placement (the state itself ends wherever the walk was)
        self.st = RoadefState(self.inst, self.best)

    def steepest_start(self) -> None:
        """The compiled steepest descent (`kernel.steepest`) from the current placement,
        when numba is there, the (process x machine) table is small (set A) and a
        resource is transient."""
        from allocator.roadef.kernel import HAVE_NUMBA, LIST_CELLS, Annealer

        P, M = self.inst.n_processes, self.inst.n_machines
        if not HAVE_NUMBA or P * M > LIST_CELLS or M < 2 or not self.inst.transient.any():
            # without transient resources the room a move takes is given back when
            # the process moves on: the numpy descent in order of machine cost and
            # the annealing did as well or better there (a2_1, a2_5)
            return
        an = Annealer(self.st)
        an.descend(swaps=False)  # the swap screen is O(P^2) a step: the descent does them
        self.stats["steepest_moves"] = int(an.stats[0] + an.stats[1])
        self.note("steepest", force=True)

    def adopt(self, cost: int, placement: np.ndarray, source: str) -> None:
        """Go on from `placement` (feasible, of cost `cost`) as this search's best."""
        self.st = RoadefState(self.inst, placement.copy())
        self.best_cost = cost
        self.best = self.st.a.copy()
        self.incumbent = (cost, self.best)
        self.history.append((round(self.ctx.elapsed(), 3), cost, source))

    def adopt_peer(self) -> bool:
        """Go on from the other search's best placement when it beats this state."""
        if self.peer is None:
            return False
        cost, placement = self.peer.incumbent
        if cost >= self.st.total():
            return False
        bad = (self.breaks_reserve(self.st.a, placement) if self._reserve and RESERVE_PEER
               else np.zeros(0, dtype=np.int64))
        if bad.size:
            # the peer's placement takes a reserved receiver (`RESERVE`): adopted only
            # when the processes that took it can go back (to this placement's machine,
            # else home) and it still beats this state
            if placement is self._refused:
                return False
            self._refused = placement
            here = self.st.a
            st = RoadefState(self.inst, placement.copy())
            for q in bad.tolist():
                if not (st.shift_ok(q, int(here[q])) or st.shift_ok(q, int(st.init[q]))):
                    break
            else:
                if st.total() < self.st.total() and not self.breaks_reserve(here, st.a).size:
                    self.st = st
                    self.count("reserve_repaired_peer")
                    self.note("exchange")
                    return True
            self.count("reserve_refused_peer")
            return False
        self.st = RoadefState(self.inst, placement.copy())
        self.note("exchange")
        return True

    def first_walk_idle(self) -> bool:
        """Whether the annealing thread skips its first walk (`ANNEAL_FIRST_IDLE`).

        Why: on instances with a transient resource and zero-safety machines (a2_2,
        a2_3) the first walk from the initial placement ends far above the LNS thread's
        best (a2_2: 1,078.9 against 826.9 million, a2_3: 1,437.0 against 1,382.7) and no
        run used it; only the re-annealings from the LNS's best gain there. Under load
        (three solves on two cores) its CPU is taken from the LNS threads of every solve
        on the machine; asleep, it gives that CPU back."""
        return ANNEAL_FIRST_IDLE and self.any_tr and self.zero_safety

    def take_portfolio(self) -> None:
        """Go on from the child-process LNS's best (`PORTFOLIO`) when it beats this
        search's; the LNS thread then adopts it too when it beats its own state."""
        child, self.portfolio = self.portfolio, None
        if child is None:
            return
        got = child.result()
        self.stats["anneal_portfolio_cost"] = -1 if got is None else got[0]
        self.stats["anneal_portfolio_stopped"] = int(child.stopped)
        if self.peer is not None:
            self.stats["anneal_portfolio_lns_cost"] = int(self.peer.incumbent[0])
        if got is None or got[0] >= self.best_cost:
            return
        cost, placement = got
        if placement.shape != self.st.a.shape or violations(self.inst, placement, limit=1) or (
                evaluate(self.inst, placement).total != cost):
            log.warning("roadef portfolio: the child's placement failed the check; dropped")
            return
        self.adopt(cost, placement, "portfolio")

    def anneal_cycles(self, budget: float) -> None:
        """A long annealing, then shorter re-annealings from the better of this
        search's and the peer's best placement (the LNS thread's, when it leads)."""
        start = self.ctx.elapsed()
        if self.first_walk_idle():
            # sleep through the first walk's time: the re-annealings start as before
            until = start + budget * ANNEAL_FIRST
            while self.ctx.elapsed() < until and self.time_left() > 0.1:
                if self.ctx.stop.wait(min(0.1, max(0.0, until - self.ctx.elapsed()))):
                    return
            self.take_portfolio()
        else:
            self.anneal(budget * ANNEAL_FIRST)
        while True:
            left = budget - (self.ctx.elapsed() - start)
            if left <= 0.1 or self.time_left() <= 0.1:
                break
            self.adopt_peer()
            self.anneal(min(left, budget * ANNEAL_CYCLE), heat=ANNEAL_REHEAT)

    def run(self) -> None:
        self.gate("lns")
        self.adopt_peer()
        # shifts are cheap and take most of the easy gain; swaps and the LNS follow
        self.local_search(swaps=False)
        self.local_search(max_rounds=1)
        self.note("local search", force=True)
        self._reserve = self.reservations()
        self.stats["reserved"] = len(self._reserve)
        k = LNS_MIN_MACHINES + 1
        it = 0
        stale = 0
        M = self.inst.n_machines
        # [evacuation, plain step] x [cost gained, seconds spent]
        rates = np.zeros((2, 2))
        while self.time_left() > 0.05 and (self.iterations is None or it < self.iterations):
            it += 1
            self.gate("lns")
            child = self.peer.portfolio if self.peer is not None else None
            if child is not None:
                child.watch()
            if self.adopt_peer():
                stale = 0
            kk = min(max(LNS_MIN_MACHINES, k + int(self.rng.integers(-1, 2))), M,
                     LNS_MAX_MACHINES)
            if self.whole_machines():
                kk = min(M, LNS_WHOLE_MACHINES_NO_TR)
            sub = min(LNS_SUB_TIME, max(0.05, self.time_left()))
            share = self.evac_share(rates)
            evac = (self.evacuation() if self.any_tr and self.rng.random() < share
                    else None)
            home = None
            if evac is None and HOME_MAX > 0 and self.rng.random() < self.home_share():
                home = self.home_step()
            before, tick = self.st.total(), self.ctx.clock()
            if evac is not None:
                freed, machines = evac
                improved, _ = self.lns_step(
                    machines, min(EVAC_SUB_TIME, max(0.05, self.time_left())), freed,
                    linearization=EVAC_LINEARIZATION)
                optimal = True
                self.stats["evac_calls"] = self.stats.get("evac_calls", 0) + 1
                self.stats["evac_improved"] = self.stats.get("evac_improved", 0) + improved
            elif home is not None:
                freed, machines = home
                improved, optimal = self.lns_step(machines, sub, freed)
                self.stats["home_calls"] = self.stats.get("home_calls", 0) + 1
                self.stats["home_improved"] = self.stats.get("home_improved", 0) + improved
            elif self.waste_steps() and self.rng.random() < LNS_WASTE_SHARE:
                machines, key = self.waste_machines()
                improved, optimal = self.lns_step(machines, sub,
                                                  linearization=WASTE_LINEARIZATION)
                if optimal and not improved and key is not None:
                    self._settled.add(key)
                self.stats["waste_calls"] = self.stats.get("waste_calls", 0) + 1
                self.stats["waste_improved"] = self.stats.get("waste_improved", 0) + improved
            else:
                machines = self.pick_machines(kk)
                improved, optimal = self.lns_step(machines, sub)
            if improved:
                stale = 0
                self.polish(np.flatnonzero(np.isin(self.st.a, machines)))
                self.note("lns")
            else:
                stale += 1
            kind = 0 if evac is not None else 1
            rates[kind, 0] += before - self.st.total()
            rates[kind, 1] += self.ctx.clock() - tick
            # grow the neighbourhood while sub-problems are solved to optimality
            if optimal and stale > 20:
                k = min(k + 1, LNS_MAX_MACHINES)
                stale = 0
            elif not optimal:
                k = max(LNS_MIN_MACHINES, k - 1)
            if stale and stale % 200 == 0:
                self.polish(None)
                self.note("local search")
        if self.any_tr:
            self.stats["evac_share_pct"] = round(100 * self.evac_share(rates))
        self.note("final", force=True)


class _Governor:
    """Runs the LNS thread alone while the process gets between GOVERN_SOLO_MIN and
    GOVERN_SOLO_BELOW cores, on instances where the LNS's waste steps run; both threads
    otherwise.

    Why: the annealing and the LNS thread each want a core; when three solves share
    two cores (2/3 of a core per process) each thread gets 1/3. On a2_5 (the waste
    steps) the LNS alone then ended 5.1 / 5.3 / 6.7 % above the best known against
    10.2 / 12.2 / 8.1 % for both threads (seeds 0 / 1 / 7, 40 s of process CPU over a
    60 s budget; docs/benchmarks/roadef.md, slot f). Elsewhere no one thread was better
    across seeds (a1_4, a2_4: better with one seed, worse with another), and a2_1 needs
    both (-4.0 % with the annealing alone against -36.5 %): the governor is off there.

    Wall time and process CPU are read from the system clocks, not the context's (a
    share of the machine is what is measured); counted mode never runs it.
    """

    #: the clocks it measures by (a benchmark harness may put a simulated machine here)
    wall_clock: Callable[[], float] = staticmethod(time.perf_counter)
    cpu_clock: Callable[[], float] = staticmethod(time.process_time)

    def __init__(self, ctx: SolveContext, solo_role: str) -> None:
        self.ctx = ctx
        self.solo_role = solo_role
        #: the role that runs alone, or None (both run)
        self.solo: str | None = None
        self.finished: set[str] = set()
        self.hold = GOVERN_HOLD
        self.solo_since = 0.0
        self.resumed_at = -1.0
        self.switches = 0
        self.solo_s = 0.0
        self.low = 0
        self._lock = threading.Lock()
        self._wall = self.wall_clock()
        self._cpu = self.cpu_clock()

    def update(self) -> None:
        """Measure the process's CPU share over the last window and decide."""
        with self._lock:
            now = self.wall_clock()
            if now - self._wall < GOVERN_WINDOW:
                return
            cpu = self.cpu_clock()
            share = (cpu - self._cpu) / (now - self._wall)
            self._wall, self._cpu = now, cpu
            # two low windows in a row (the first can be a thread's start-up alone)
            self.low = self.low + 1 if GOVERN_SOLO_MIN <= share < GOVERN_SOLO_BELOW else 0
            if self.solo is not None and share < GOVERN_SOLO_MIN:
                # starved even alone: both threads again (see GOVERN_SOLO_MIN)
                self.solo_s += now - self.solo_since
                self.solo, self.resumed_at = None, now
                self.switches += 1
            elif self.solo is None:
                if self.low >= 2 and not self.finished:
                    if self.resumed_at >= 0 and now - self.resumed_at < 2.5 * GOVERN_WINDOW:
                        # sharing failed right after a resume: wait longer next time
                        self.hold = min(GOVERN_HOLD_MAX, 2 * self.hold)
                    self.solo, self.solo_since = self.solo_role, now
                    self.switches += 1
            elif (share > GOVERN_RESUME_ABOVE and now - self.solo_since >= self.hold):
                self.solo_s += now - self.solo_since
                self.solo, self.resumed_at = None, now
                self.switches += 1

    def gate(self, role: str) -> None:
        """Called by a thread between steps: returns at once unless the other role runs
        alone, else sleeps until both run again or the budget is spent."""
        self.update()
        while self.solo is not None and self.solo != role:
            if self.ctx.remaining() <= 0.1 or self.ctx.stop.wait(0.05):
                return
            self.update()

    def done(self, role: str) -> None:
        """A thread ended (the annealing's budget is spent): the other runs on."""
        with self._lock:
            self.finished.add(role)
            if self.solo == role:
                self.solo_s += self.wall_clock() - self.solo_since
                self.solo = None

    def stats(self) -> dict[str, int]:
        solo_s = self.solo_s
        if self.solo is not None:
            solo_s += self.wall_clock() - self.solo_since
        return {"govern_switches": self.switches, "govern_solo_s": round(solo_s)}


def _solo_role(search: _Search) -> str | None:
    """The thread that runs alone under `_Governor` (see there), or None: both always run."""
    return "lns" if search.waste_steps() else None


def _annealer(inst: RoadefInstance, ctx: SolveContext, iterations: int | None,
              seed: int, start: np.ndarray | None = None) -> _Search | None:
    """A second search that anneals with the compiled kernel, or None (no numba,
    annealing switched off, or an instance too small to move anything)."""
    from allocator.roadef.kernel import HAVE_NUMBA

    if not HAVE_NUMBA or ANNEAL_SHARE <= 0 or inst.n_machines < 2 or inst.n_processes < 2:
        return None
    # same clock, start and stop signal; no callback (it would run on another thread)
    ann_ctx = SolveContext(time_limit=ctx.time_limit, workers=1, clock=ctx.clock,
                           seed=seed + 1, stop=ctx.stop, deterministic=ctx.deterministic)
    ann_ctx.started = ctx.started
    return _Search(inst, ann_ctx, iterations, start)


def _start_portfolio(inst: RoadefInstance, search: _Search, window: float,
                     seed: int) -> Any:
    """The child-process LNS over the next `window` seconds from `search`'s placement,
    or None when the machine shows no spare core or the window is too short."""
    from allocator.roadef import portfolio
    from allocator.roadef.kernel import LIST_CELLS

    if window < portfolio.MIN_CHILD_SECONDS + 3.0 or (
            inst.n_processes * inst.n_machines > LIST_CELLS):
        # beyond set-A sizes the first descent takes the whole window: no second one
        return None
    idle = portfolio.idle_cores()
    search.stats["portfolio_idle_cores_x10"] = round(10 * idle)
    if idle < portfolio.MIN_IDLE_CORES:
        return None
    try:
        return portfolio.ChildLns(inst, search.st.a.copy(), seed + 7919,
                                  time.time() + window - 0.5)
    except Exception:  # OSError and the like: the solve goes on without it
        log.exception("roadef portfolio: the child process did not start")
        return None


def _anneal_safely(search: _Search, budget: float) -> None:
    try:
        search.anneal_cycles(budget)
    except Exception:  # the other search's result stands
        log.exception("roadef: the annealing thread failed")
    finally:
        if search.governor is not None:
            search.governor.done("anneal")


def solve_roadef(inst: RoadefInstance, *, time_limit: float, seed: int = 0,
                 on_improve: Callable[[Improvement], Any] | None = None,
                 stop: threading.Event | None = None, iterations: int | None = None,
                 ctx: SolveContext | None = None) -> RoadefResult:
    """Improve the initial placement of `inst` within `time_limit` seconds.

    An initial placement that breaks a hard rule is repaired first
    (allocator/roadef/repair.py, within a share of the budget) and the search
    goes on from the repaired one; `initial_cost` stays the initial placement's
    cost, and move costs stay measured against it. The returned assignment
    passed the independent evaluator's rule check; should the search's
    bookkeeping ever disagree with it (a bug), the best placement that did pass
    is returned instead (at worst the start: the initial or repaired one).
    `iterations` bounds the LNS by a count (deterministic for a seed).

    Raises
    ------
    InfeasibleError
        The initial placement breaks a rule and no placement can mend it (found
        up front, e.g. a transient resource over capacity on an initial machine)
        or the repair did not within its share; the message names the first
        three rules still broken.
    """
    t0 = time.perf_counter()
    if ctx is None:
        ctx = SolveContext(time_limit=time_limit, workers=1, seed=seed,
                           on_improve=on_improve, stop=stop or threading.Event(),
                           deterministic=iterations is not None)
    start: np.ndarray | None = None
    repair_stats: dict[str, int] = {}
    if violations(inst, inst.initial, limit=1):
        try:
            start, repair_stats = repair(inst, ctx)
        except BaseException:
            ctx.close()
            raise
    search = _Search(inst, ctx, iterations, start)
    search.stats.update(repair_stats)
    start_cost = search.best_cost
    initial_cost = start_cost if start is None else evaluate(inst, inst.initial).total
    if start is not None:
        search.history.append((round(ctx.elapsed(), 3), start_cost, "repair"))
    if STEEPEST_FIRST:
        search.steepest_start()
    annealing = _annealer(inst, ctx, iterations, seed, start)
    if annealing is not None and search.best_cost < start_cost and STEEPEST_SHARED:
        annealing.adopt(search.best_cost, search.best, "steepest")
    try:
        if annealing is None:
            search.run()
        elif iterations is not None:
            # counted mode: one after the other, so a seed gives one result
            annealing.anneal(0.0)
            search.peer = annealing  # the descent and the LNS start from its best
            search.run()
        else:
            # the compiled annealing releases the GIL: it runs on the second core
            # while this thread runs the shift/swap descent and the CP-SAT LNS
            budget = ctx.remaining() * ANNEAL_SHARE
            search.peer, annealing.peer = annealing, search
            if PORTFOLIO and annealing.first_walk_idle():
                annealing.portfolio = _start_portfolio(inst, search, budget * ANNEAL_FIRST,
                                                       seed)
            role = _solo_role(search)
            if GOVERN and role is not None:
                search.governor = annealing.governor = _Governor(ctx, role)
            worker = threading.Thread(target=_anneal_safely, args=(annealing, budget),
                                      name="roadef-anneal", daemon=True)
            worker.start()
            try:
                search.run()
            finally:
                if annealing.portfolio is not None:
                    annealing.portfolio.close()
                if search.governor is not None:
                    search.governor.done("lns")
                    search.stats.update(search.governor.stats())
                # a cold numba cache compiles for a few seconds inside the first
                # chunk: a thread still busy then is left behind (it touches only
                # its own state and stops at its next time check)
                worker.join(timeout=ctx.remaining() + 1.0)
            if worker.is_alive():
                # its incumbent is a finished copy, swapped in as one tuple: keep it (a
                # loaded machine can stretch its last chunk past the join; the walk's
                # best so far used to be dropped with the thread)
                log.warning("roadef: the annealing thread overran its budget; its best so "
                            "far is kept")
                ann_cost, ann_best = annealing.incumbent
                if ann_cost < search.best_cost:
                    search.best_cost, search.best = ann_cost, ann_best
                    search.history.append((round(ctx.elapsed(), 3), ann_cost, "anneal"))
                annealing = None
    finally:
        ctx.close()
    if annealing is not None:
        for k, v in annealing.stats.items():
            if k.startswith("anneal"):
                search.stats[k] = v
        if annealing.best_cost < search.best_cost:
            search.best_cost, search.best = annealing.best_cost, annealing.best
        # one incumbent history: the entries that beat everything before them
        merged: list[tuple[float, int, str]] = []
        for entry in sorted(search.history + annealing.history):
            if not merged or entry[1] < merged[-1][1]:
                merged.append(entry)
        search.history = merged
    best = search.best
    if violations(inst, best, limit=1):
        log.error("roadef: the search's best placement breaks a rule; returning the %s one",
                  "initial" if start is None else "repaired")
        best = (inst.initial if start is None else start).copy()
    cost = evaluate(inst, best)
    return RoadefResult(assignment=best, cost=cost, initial_cost=initial_cost,
                        moved=int((best != inst.initial).sum()),
                        time_s=time.perf_counter() - t0, history=search.history,
                        stats=search.stats)
