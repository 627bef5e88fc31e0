"""Repair an initial placement that breaks a hard rule, before the search improves it.

The challenge's instances start feasible; a cluster operator's current
placement often does not (a machine's capacity lowered, a zone lost, an
anti-affinity added after the fact). `repair` returns a placement that breaks
no rule of allocator/roadef/evaluate.py, from which the normal search goes on.
Move costs stay measured against the instance's initial placement, and a
transient resource stays held on a moved process's initial machine, as the
challenge defines them.

* `impossible(inst)`: what no placement can fix, found up front in O(P R + M R)
  without spending the budget: a transient resource over capacity on a machine
  with the initial placement alone (that usage stays held wherever its
  processes go), a service with more processes than machines, a spreadMin
  above the locations or the service's processes, a dependency on a service
  without processes, a process that fits no machine, a resource whose total
  requirement exceeds the cluster's capacity.
* a min-violation local search: the violation measure is the capacity
  overflow (each unit as a share of the machine's capacity) plus the number of
  conflicting pairs, missing locations and missing (service, dependency,
  neighbourhood) triples. Each step takes the processes a broken rule
  implicates, computes the measure's change for moving each of them to every
  machine at once (vectorised over the machines), and applies the best move
  that lowers it: one that breaks nothing new, cheapest first (the challenge's
  cost change), else the largest decrease. With no lowering move it takes the
  least bad move not undone within `TABU_TENURE` steps.
* a CP-SAT fallback (allocator/roadef/subproblem.py, whose exact sub-model
  takes the infeasible current placement as a mere hint): the implicated
  processes freed on their machines plus the roomiest others.

Bounded by `REPAIR_SHARE` of the budget and, in deterministic mode, by step
counts and CP-SAT's deterministic time, so a seed gives one placement.
`InfeasibleError` names the first rules still broken when none of it works.
"""

from __future__ import annotations

import logging

import numpy as np

from allocator.errors import InfeasibleError
from allocator.roadef.evaluate import usage, violations
from allocator.roadef.instance import RoadefInstance
from allocator.roadef.state import RoadefState
from allocator.solvers.context import SolveContext

log = logging.getLogger(__name__)

#: Share of the remaining budget the repair may take (the search gets the rest).
REPAIR_SHARE = 0.5
#: Local-search steps without a new lowest violation measure before CP-SAT is tried,
#: and steps in all (per process: an all-on-one-machine a1_1 needs about 80 moves).
STALL_STEPS = 50
MAX_STEPS_PER_PROCESS = 20
#: Steps a process may not return to the machine it left by a non-improving move.
TABU_TENURE = 7
#: Lowering moves applied per step (each re-chosen after the ones before it). Why more
#: than one: 1,000 processes all on one machine (a2_4, a2_5) need 900 moves, and a
#: step screens up to SCREEN_MAX processes over every machine.
BATCH = 20
#: A change of the measure below this is none (it sums floats).
EPS = 1e-9
#: Implicated processes whose moves are screened per step (a random sample above it).
SCREEN_MAX = 200
#: CP-SAT fallback: at most this many freed processes, the machines added to the
#: broken ones per round, and its time (s, deterministic time in deterministic mode).
CPSAT_MAX_FREE = 300
CPSAT_MAX_MACHINES = 10
CPSAT_TIME = 2.0
#: Rounds of local search + CP-SAT in deterministic mode (timed: until the share ends).
ROUNDS = 5
#: Comparisons per chunk of the up-front "fits on no machine" check (bounded memory).
FIT_CHUNK = 4_000_000
#: Rules named in the error message.
NAMED = 3

_TRANSIENT_WHY = ("a transient resource's usage on a process's initial machine cannot be "
                  "freed by moving it")


def impossible(inst: RoadefInstance) -> list[str]:
    """Why no placement of `inst` can break no rule (empty: none of the checks rules it out).

    Necessary conditions only: an empty list does not prove a placement exists.
    """
    out: list[str] = []
    cap = inst.capacity
    if inst.transient.any() and inst.n_processes:
        held = usage(inst, inst.initial)
        for m, r in zip(*np.nonzero((held > cap) & inst.transient[None, :]), strict=True):
            out.append(f"machine {int(m)} transient resource {int(r)}: initial usage "
                       f"{int(held[m, r])} > capacity {int(cap[m, r])} ({_TRANSIENT_WHY})")
    sizes = np.bincount(inst.service, minlength=inst.n_services)
    for s in np.nonzero(sizes > inst.n_machines)[0].tolist():
        out.append(f"service {s}: {int(sizes[s])} processes on {inst.n_machines} machines "
                   f"(conflict: two processes of a service never share a machine)")
    top = np.minimum(sizes, inst.n_locations)
    for s in np.nonzero(inst.spread_min > top)[0].tolist():
        out.append(f"service {s}: spreadMin {int(inst.spread_min[s])} > {int(top[s])} "
                   f"(its processes: {int(sizes[s])}, locations: {inst.n_locations})")
    for s, deps in enumerate(inst.dependencies):
        for d in deps:
            if sizes[s] and not sizes[d]:
                out.append(f"service {s} depends on service {d}, which has no process")
    if inst.n_machines and inst.n_processes:
        # processes that fit no machine, in chunks of about FIT_CHUNK comparisons
        step = max(1, FIT_CHUNK // max(1, inst.n_machines * inst.n_resources))
        for lo in range(0, inst.n_processes, step):
            req = inst.requirement[lo:lo + step]
            fits = np.any(np.all(req[:, None, :] <= cap[None, :, :], axis=2), axis=1)
            for p in np.nonzero(~fits)[0].tolist():
                out.append(f"process {lo + p}: fits on no machine")
        total = inst.requirement.sum(axis=0)
        for r in np.nonzero(total > cap.sum(axis=0))[0].tolist():
            out.append(f"resource {r}: total requirement {int(total[r])} > total capacity "
                       f"{int(cap[:, r].sum())}")
    return out


def _error(reasons: list[str], what: str) -> InfeasibleError:
    more = len(reasons) - NAMED
    tail = f"; and {more} more" if more > 0 else ""
    return InfeasibleError(f"{what}: " + "; ".join(reasons[:NAMED]) + tail,
                           field="assignment")


class _Repair:
    """The min-violation local search on a RoadefState (see the module docstring)."""

    def __init__(self, inst: RoadefInstance, ctx: SolveContext, deadline: float) -> None:
        self.inst = inst
        self.ctx = ctx
        self.deadline = deadline
        self.st = RoadefState(inst)
        self.rng = np.random.default_rng(ctx.seed)
        self.counted = ctx.is_deterministic
        self.w = 1.0 / np.maximum(1, inst.capacity)  # a unit of overflow as a capacity share
        pairs = [(s, d) for s, ds in enumerate(inst.dependencies) for d in ds]
        self.dep_s = np.asarray([s for s, _ in pairs], dtype=np.int64)
        self.dep_d = np.asarray([d for _, d in pairs], dtype=np.int64)
        self.tabu: dict[tuple[int, int], int] = {}
        self.steps = 0
        self.cpsat_calls = 0

    def out_of_time(self) -> bool:
        return self.ctx.stopped() or (not self.counted and self.ctx.clock() >= self.deadline)

    # -- the violation measure ------------------------------------------------

    def _sharing(self) -> tuple[np.ndarray, np.ndarray]:
        """Processes in (service, machine) order, and whether each shares its machine
        with the one before it (a conflicting pair)."""
        st = self.st
        order = np.lexsort((st.a, st.svc))
        s, m = st.svc[order], st.a[order]
        return order, (s[1:] == s[:-1]) & (m[1:] == m[:-1])

    def conflicts(self) -> np.ndarray:
        """Processes that share a machine with a sibling (every one of each group)."""
        order, same = self._sharing()
        hit = np.zeros(len(order), dtype=bool)
        hit[1:] |= same
        hit[:-1] |= same
        return np.asarray(order[hit], dtype=np.int64)

    def measure(self) -> float:
        st = self.st
        cap = float((np.maximum(0, st.hard - st.cap) * self.w).sum())
        conf = int(self._sharing()[1].sum())
        spread = int(np.maximum(0, self.inst.spread_min - st.nloc).sum())
        dep = 0
        if self.dep_s.size:
            dep = int(((st.nb_count[self.dep_s] > 0) & (st.nb_count[self.dep_d] == 0)).sum())
        return cap + conf + spread + dep

    def implicated(self) -> np.ndarray:
        """Processes whose move can mend a broken rule."""
        st, inst = self.st, self.inst
        parts = [self.conflicts()]
        over = np.nonzero((st.hard > st.cap).any(axis=1))[0]
        if over.size:
            on = np.isin(st.a, over)
            # a process moved away from a broken machine can go home (its transient
            # requirement is held there anyway)
            parts.append(np.nonzero(on | (np.isin(st.init, over) & (st.a != st.init)))[0])
        for s in np.nonzero(st.nloc < inst.spread_min)[0].tolist():
            parts.append(st.siblings(s))
        if self.dep_s.size:
            bad = (st.nb_count[self.dep_s] > 0) & (st.nb_count[self.dep_d] == 0)
            for k, n in zip(*np.nonzero(bad), strict=True):
                s, d = int(self.dep_s[k]), int(self.dep_d[k])
                sib = st.siblings(s)
                parts.append(sib[st.nb[st.a[sib]] == n])
                parts.append(st.siblings(d))
        if not parts:
            return np.zeros(0, dtype=np.int64)
        return np.unique(np.concatenate(parts)).astype(np.int64)

    def deltas(self, p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For moving p to every machine: the measure's change, what it breaks anew
        (>= 0; 0: nothing) and the challenge's cost change (float64[M] each)."""
        st, inst = self.st, self.inst
        M = inst.n_machines
        m0, i0, s = int(st.a[p]), int(st.init[p]), int(st.svc[p])
        r = st.req[p]
        tr = st.tr
        # capacity: p leaves m0 (its transient part stays held there when m0 is home)
        dec = np.where(tr, 0, r) if m0 == i0 else r
        h0 = st.hard[m0]
        gain0 = float(((np.maximum(0, h0 - st.cap[m0])
                        - np.maximum(0, h0 - dec - st.cap[m0])) * self.w[m0]).sum())
        inc = np.broadcast_to(r, (M, len(r))).copy()
        if tr.any():
            inc[i0] = np.where(tr, 0, r)
        new_h = st.hard + inc
        add_cap = ((np.maximum(0, new_h - st.cap) - np.maximum(0, st.hard - st.cap))
                   * self.w).sum(axis=1)
        # conflict
        on = np.bincount(st.a[st.siblings(s)], minlength=M)
        add_conf = (on >= 1).astype(np.float64)
        gain_conf = 1.0 if on[m0] >= 2 else 0.0
        # spread
        smin = int(inst.spread_min[s])
        d_spread = np.zeros(M)
        if smin > 0:
            lc = st.loc_count[s]
            l0 = int(st.loc[m0])
            nloc = int(st.nloc[s])
            new = nloc - (1 if lc[l0] == 1 else 0) + (lc[st.loc] == 0)
            new = np.where(st.loc == l0, nloc, new)
            d_spread = (np.maximum(0, smin - new) - max(0, smin - nloc)).astype(np.float64)
        # dependency, per neighbourhood
        d_dep_add = np.zeros(M)
        d_dep_gain = np.zeros(M)
        deps, rdeps = st.deps[s], st.rdeps[s]
        if len(deps) or len(rdeps):
            nbc = st.nb_count
            missing = (nbc[deps] == 0).sum(axis=0) if len(deps) else np.zeros(st.N, np.int64)
            needing = (nbc[rdeps] > 0).sum(axis=0) if len(rdeps) else np.zeros(st.N, np.int64)
            n0 = int(st.nb[m0])
            other = st.nb != n0
            if nbc[s, n0] == 1:  # s leaves n0
                d_dep_gain += np.where(other, missing[n0], 0)
                d_dep_add += np.where(other, needing[n0], 0)
            appear = (nbc[s][st.nb] == 0) & other
            d_dep_add += np.where(appear, missing[st.nb], 0)
            d_dep_gain += np.where(appear, needing[st.nb], 0)
        added = add_cap + add_conf + np.maximum(0, d_spread) + d_dep_add
        dv = added - gain0 - gain_conf + np.minimum(0, d_spread) - d_dep_gain
        dv[m0] = 0.0
        added[m0] = 0.0
        # the challenge's cost change (load, balance, process and machine moves)
        rows = st.use + r
        dcost = (st.machine_costs(rows) - st.mc).astype(np.float64)
        src = np.asarray([m0])
        dcost += float(st.machine_costs((st.use[m0] - r)[None, :], src)[0] - st.mc[m0])
        dcost += np.where(np.arange(M) != i0, float(st.pmc[p]), 0.0) \
            - (float(st.pmc[p]) if m0 != i0 else 0.0)
        mmc = st.mmc[i0].astype(np.float64)
        dcost += st.w_mm * (mmc - mmc[m0])
        dcost[m0] = 0.0
        return dv, added, dcost

    # -- the search -----------------------------------------------------------

    def choose(self, p: int) -> tuple[tuple[float, ...], int, bool] | None:
        """p's best move: (its sort key, the machine, whether it lowers the measure);
        None when every machine is p's own or tabu for it."""
        dv, added, dcost = self.deltas(p)
        ok = np.ones(len(dv), dtype=bool)
        ok[int(self.st.a[p])] = False
        for (q, m), until in self.tabu.items():
            if q == p and until > self.steps:
                ok[m] = False
        if not ok.any():
            return None
        lower = ok & (dv < -EPS)
        if lower.any():
            clean = lower & (added <= EPS)
            if clean.any():  # breaks nothing new: the cheapest
                m = int(np.flatnonzero(clean)[np.argmin(dcost[clean])])
                return (0.0, float(dv[m]), float(dcost[m])), m, True
            cand = np.flatnonzero(lower)  # else the largest decrease
            m = int(cand[np.lexsort((dcost[cand], dv[cand]))[0]])
            return (1.0, float(dv[m]), float(dcost[m])), m, True
        cand = np.flatnonzero(ok)
        m = int(cand[np.lexsort((dcost[cand], dv[cand]))[0]])
        return (2.0, float(dv[m]), float(dcost[m])), m, False

    def step(self, procs: np.ndarray) -> int:
        """Apply the best moves of `procs` that lower the measure, best first, each
        re-chosen after the ones before it (at most `BATCH`); with none, the least bad
        move not tabu. Returns the moves that lowered it."""
        self.steps += 1
        found = []
        for p in procs.tolist():
            got = self.choose(p)
            if got is not None:
                found.append((got[0], p, got[1], got[2]))
        if not found:
            return 0
        found.sort()
        if not found[0][3]:
            _, p, m, _ = found[0]
            m0 = int(self.st.a[p])
            self.st.move(p, m)
            self.tabu[(p, m0)] = self.steps + TABU_TENURE
            if len(self.tabu) > 4 * TABU_TENURE:
                self.tabu = {k: v for k, v in self.tabu.items() if v > self.steps}
            return 0
        applied = 0
        for _, p, m, lowers in found:
            if not lowers or applied >= BATCH:
                break
            if applied:  # the moves before it changed the picture
                got = self.choose(p)
                if got is None or not got[2]:
                    continue
                m = got[1]
            self.st.move(p, m)
            applied += 1
        return applied

    def local_search(self) -> bool:
        """Steps until no rule is broken (True), it stalls or the budget ends (False)."""
        best_v = self.measure()
        best_a = self.st.a.copy()
        stall = 0
        cap = MAX_STEPS_PER_PROCESS * max(1, self.inst.n_processes)
        n = 0
        while best_v > 0 and stall < STALL_STEPS and n < cap and not self.out_of_time():
            procs = self.implicated()
            if procs.size > SCREEN_MAX:
                procs = np.sort(self.rng.choice(procs, SCREEN_MAX, replace=False))
            else:
                procs = procs[self.rng.permutation(procs.size)]
            self.step(procs)
            n += 1
            v = self.measure()
            if v < best_v - 1e-12:
                best_v, best_a, stall = v, self.st.a.copy(), 0
            else:
                stall += 1
        if not np.array_equal(best_a, self.st.a):
            self.st = RoadefState(self.inst, best_a)
        return best_v <= 0

    def cpsat(self, round_: int) -> None:
        """Re-place the implicated processes with the exact sub-model (subproblem.py), on
        their machines and homes plus the roomiest others (more each round, drawn at
        random among twice as many), whose processes are freed too while
        `CPSAT_MAX_FREE` allows: room on a tight cluster takes a cascade."""
        from allocator.roadef.subproblem import solve_subproblem

        st, inst = self.st, self.inst
        freed = self.implicated()
        if freed.size > CPSAT_MAX_FREE:
            # whole machines (in a random order): a broken machine with some of its
            # processes fixed can stay broken in any sub-solution
            by_machine = st.a[freed]
            keep = np.zeros(freed.size, dtype=bool)
            for m in self.rng.permutation(np.unique(by_machine)).tolist():
                here = by_machine == m
                if keep.sum() + here.sum() > CPSAT_MAX_FREE and keep.any():
                    break
                keep |= here
            freed = freed[keep]
        mine = np.unique(np.concatenate([st.a[freed], st.init[freed]]))
        k = min(inst.n_machines - mine.size, CPSAT_MAX_MACHINES * (round_ + 1))
        extra = np.zeros(0, dtype=np.int64)
        if k > 0:
            room = ((st.cap - st.hard) * self.w).sum(axis=1)
            room[mine] = -np.inf
            pool = np.argsort(-room, kind="stable")[:min(2 * k, inst.n_machines - mine.size)]
            extra = np.sort(self.rng.choice(pool, k, replace=False))
            on = np.flatnonzero(np.isin(st.a, extra))
            on = on[~np.isin(on, freed)]
            more = CPSAT_MAX_FREE - freed.size
            if more > 0 and on.size:
                if on.size > more:
                    on = np.sort(self.rng.choice(on, more, replace=False))
                freed = np.unique(np.concatenate([freed, on]))
        machines = np.unique(np.concatenate([mine, extra, st.a[freed]])).astype(np.int64)
        limit = CPSAT_TIME if self.counted else max(
            0.05, min(CPSAT_TIME, self.deadline - self.ctx.clock()))
        self.cpsat_calls += 1
        got = solve_subproblem(st, freed, machines, time_limit=limit,
                               deterministic=self.counted, seed=int(self.ctx.seed),
                               ctx=self.ctx, first_solution=True)
        if got is None:
            return
        for p, m in zip(freed.tolist(), got[0].tolist(), strict=True):
            st.move(p, m)

    def run(self) -> np.ndarray:
        """Local search, then CP-SAT on a wider neighbourhood each round, until no rule is
        broken or the share ends (`ROUNDS` rounds in deterministic mode)."""
        round_ = 0
        while not self.local_search() and not self.out_of_time():
            if self.counted and round_ >= ROUNDS:
                break
            self.cpsat(round_)
            round_ += 1
            if self.measure() <= 0:
                break
        return self.st.a.copy()


def repair(inst: RoadefInstance, ctx: SolveContext, *, share: float = REPAIR_SHARE
           ) -> tuple[np.ndarray, dict[str, int]]:
    """A placement of `inst` that breaks no rule, and counts of how it was reached.

    Raises
    ------
    InfeasibleError
        Naming the first rules broken: at once when `impossible` finds a reason
        (a transient resource over capacity on an initial machine, ...), else
        when the local search and the CP-SAT fallback end, within `share` of the
        remaining budget, with a rule still broken.
    """
    reasons = impossible(inst)
    if reasons:
        raise _error(reasons, "no placement can satisfy the rules")
    rep = _Repair(inst, ctx, ctx.clock() + share * ctx.remaining())
    placement = rep.run()
    broken = violations(inst, placement)
    stats = {"repair_steps": rep.steps, "repair_cpsat": rep.cpsat_calls,
             "repair_moved": int((placement != inst.initial).sum())}
    if broken:
        raise _error([v.message for v in broken],
                     f"the initial placement breaks rules that the repair could not mend "
                     f"within its share of the budget ({rep.steps} local-search steps, "
                     f"{rep.cpsat_calls} CP-SAT call(s)); still broken")
    log.info("roadef: repaired the initial placement (%d processes moved, %d steps)",
             stats["repair_moved"], rep.steps)
    return placement, stats
