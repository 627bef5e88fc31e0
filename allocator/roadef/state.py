"""The incremental state of a ROADEF placement: what the local search and the
LNS move, and what makes a move's cost and feasibility O(R + service size).

Kept per machine: usage, "hard" usage (usage plus, on transient resources,
the requirements of processes that moved away from it: what capacity is
checked against), and the machine's load + balance cost. Per service: the
count of processes per location and per neighbourhood (dense [S, L] and
[S, N] int32: a few MB for set B), the number of distinct locations, and the
number of moved processes, with a histogram of those numbers so the
service-move term (a max) updates in O(1). Totals are exact Python ints.

`move(p, m)` applies a shift and keeps everything in step; a compound move
is a sequence of shifts followed by `rules_ok(...)` over the touched
processes and machines, and undone by the reverse shifts when it fails.
The evaluator (evaluate.py) recomputes everything from scratch and is what
the tests compare this against.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from allocator.roadef.instance import RoadefInstance


class RoadefState:
    """An assignment with its usage, counts and cost kept up to date under shifts."""

    def __init__(self, inst: RoadefInstance, assignment: np.ndarray | None = None) -> None:
        self.inst = inst
        M, R, S = inst.n_machines, inst.n_resources, inst.n_services
        self.cap = inst.capacity
        self.saf = inst.safety
        self.req = inst.requirement
        self.lw = inst.load_weight
        self.tr = inst.transient
        self.init = inst.initial
        self.svc = inst.service
        self.loc = inst.location
        self.nb = inst.neighbourhood
        self.L = max(1, inst.n_locations)
        self.N = max(1, inst.n_neighbourhoods)
        self.pmc = inst.process_move_cost * inst.weight_process_move
        self.mmc = inst.machine_move_cost
        self.w_mm = inst.weight_machine_move
        self.w_sm = inst.weight_service_move
        self.bal = [(b.r1, b.r2, b.target, b.weight) for b in inst.balances]
        # services -> processes (CSR), dependencies both ways
        order = np.argsort(self.svc, kind="stable")
        counts = np.bincount(self.svc, minlength=S)
        self.svc_ptr = np.concatenate([[0], np.cumsum(counts)])
        self.svc_procs = order
        self.deps = [np.asarray(d, dtype=np.int64) for d in inst.dependencies]
        rdeps: list[list[int]] = [[] for _ in range(S)]
        for s, ds in enumerate(inst.dependencies):
            for d in ds:
                rdeps[d].append(s)
        self.rdeps = [np.asarray(r, dtype=np.int64) for r in rdeps]
        self.has_rules = bool(inst.spread_min.max(initial=0) > 0) or any(inst.dependencies)
        a = (inst.initial if assignment is None else assignment).astype(np.int64, copy=True)
        self.a = a
        self.use = np.zeros((M, R), dtype=np.int64)
        np.add.at(self.use, a, self.req)
        self.hard = self.use.copy()
        moved = a != self.init
        if self.tr.any() and moved.any():
            extra = np.zeros_like(self.use)
            np.add.at(extra, self.init[moved], self.req[moved])
            self.hard[:, self.tr] += extra[:, self.tr]
        self.mc = self.machine_costs(self.use)
        self.mc_total = int(self.mc.sum())
        self.loc_count = np.zeros((S, self.L), dtype=np.int32)
        np.add.at(self.loc_count, (self.svc, self.loc[a]), 1)
        self.nloc = (self.loc_count > 0).sum(axis=1).astype(np.int64)
        self.nb_count = np.zeros((S, self.N), dtype=np.int32)
        np.add.at(self.nb_count, (self.svc, self.nb[a]), 1)
        self.svc_moved = np.bincount(self.svc[moved], minlength=S).astype(np.int64)
        self.hist = np.bincount(self.svc_moved, minlength=int(counts.max(initial=0)) + 2)
        self.max_moved = int(self.svc_moved.max(initial=0))
        self.pm_total = int(self.pmc[moved].sum())
        self.mm_total = self.w_mm * int(self.mmc[self.init[moved], a[moved]]
                                        .astype(np.int64).sum())

    # -- costs ----------------------------------------------------------------

    def machine_costs(self, use: np.ndarray, rows: np.ndarray | slice = slice(None)
                      ) -> np.ndarray:
        """Load + balance cost of machines `rows` with usage `use` ([k, R] -> int64[k])."""
        cost = np.maximum(0, use - self.saf[rows]) @ self.lw
        if self.bal:
            free = self.cap[rows] - use
            for r1, r2, t, w in self.bal:
                cost = cost + w * np.maximum(0, t * free[..., r1] - free[..., r2])
        return cost

    def _machine_cost(self, m: int) -> int:
        u = self.use[m]
        c = int(np.maximum(0, u - self.saf[m]) @ self.lw)
        if self.bal:
            free = self.cap[m] - u
            for r1, r2, t, w in self.bal:
                c += w * max(0, int(t * free[r1] - free[r2]))
        return c

    def total(self) -> int:
        return self.mc_total + self.pm_total + self.mm_total + self.w_sm * self.max_moved

    def breakdown(self) -> dict[str, int]:
        load = int((np.maximum(0, self.use - self.saf) @ self.lw).sum())
        return {"load": load, "balance": self.mc_total - load, "process_move": self.pm_total,
                "service_move": self.w_sm * self.max_moved, "machine_move": self.mm_total,
                "total": self.total()}

    def service_move_after(self, s: int, change: int) -> int:
        """The max moved count if service s's count changes by `change` (-1, 0, +1)."""
        c = int(self.svc_moved[s])
        if change > 0:
            return max(self.max_moved, c + 1)
        if change < 0 and c == self.max_moved and self.hist[c] == 1:
            return c - 1
        return self.max_moved

    def siblings(self, s: int) -> np.ndarray:
        return self.svc_procs[self.svc_ptr[s]:self.svc_ptr[s + 1]]

    # -- moves ----------------------------------------------------------------

    def move(self, p: int, m: int) -> None:
        """Shift process p to machine m, keeping every count and cost in step."""
        m0 = int(self.a[p])
        if m == m0:
            return
        r = self.req[p]
        i0 = int(self.init[p])
        s = int(self.svc[p])
        self.use[m0] -= r
        self.use[m] += r
        if self.tr.any():
            # hard usage: a transient resource stays held on the initial machine
            keep = self.tr
            if m0 != i0:
                self.hard[m0] -= r
            else:
                self.hard[m0] -= np.where(keep, 0, r)
            if m != i0:
                self.hard[m] += r
            else:
                self.hard[m] += np.where(keep, 0, r)
        else:
            self.hard[m0] -= r
            self.hard[m] += r
        c0, c1 = self._machine_cost(m0), self._machine_cost(m)
        self.mc_total += c0 - int(self.mc[m0]) + c1 - int(self.mc[m])
        self.mc[m0], self.mc[m] = c0, c1
        was, now = m0 != i0, m != i0
        if was != now:
            sign = 1 if now else -1
            self.pm_total += sign * int(self.pmc[p])
            c = int(self.svc_moved[s])
            self.hist[c] -= 1
            c += sign
            self.svc_moved[s] = c
            self.hist[c] += 1
            if c > self.max_moved:
                self.max_moved = c
            elif self.hist[self.max_moved] == 0:
                self.max_moved -= 1
        self.mm_total += self.w_mm * (int(self.mmc[i0, m]) - int(self.mmc[i0, m0]))
        l0, l1 = self.loc[m0], self.loc[m]
        if l0 != l1:
            lc = self.loc_count[s]
            lc[l0] -= 1
            if lc[l0] == 0:
                self.nloc[s] -= 1
            lc[l1] += 1
            if lc[l1] == 1:
                self.nloc[s] += 1
        n0, n1 = self.nb[m0], self.nb[m]
        if n0 != n1:
            self.nb_count[s, n0] -= 1
            self.nb_count[s, n1] += 1
        self.a[p] = m

    def rules_ok(self, procs: Iterable[int], machines: Iterable[int]) -> bool:
        """The hard rules that the shifts of `procs` between `machines` can break."""
        machines = set(int(m) for m in machines)
        for m in machines:
            if (self.hard[m] > self.cap[m]).any():
                return False
        services: set[int] = set()
        for p in procs:
            s = int(self.svc[p])
            if s in services:
                continue
            services.add(s)
            sib = self.siblings(s)
            if len(sib) > 1:
                ms = self.a[sib]
                if len(np.unique(ms)) != len(ms):
                    return False
        if not self.has_rules:
            return True
        spread = self.inst.spread_min
        hoods = {int(self.nb[m]) for m in machines}
        for s in services:
            if self.nloc[s] < spread[s]:
                return False
            for n in hoods:
                if self.nb_count[s, n] > 0:
                    d = self.deps[s]
                    if len(d) and (self.nb_count[d, n] == 0).any():
                        return False
                else:
                    rd = self.rdeps[s]
                    if len(rd) and (self.nb_count[rd, n] > 0).any():
                        return False
        return True

    def shift_ok(self, p: int, m: int) -> bool:
        """Apply p -> m when it keeps every rule (True), else leave the state as it was."""
        m0 = int(self.a[p])
        self.move(p, m)
        if self.rules_ok((p,), (m0, m)):
            return True
        self.move(p, m0)
        return False
