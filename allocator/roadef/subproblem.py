"""The exact CP-SAT sub-model of one LNS step: re-place the freed processes on
the freed machines, everything else fixed.

Variables: x[p, j] (freed process p on freed machine j) where no fixed
process of p's service already sits on j. Constraints, against the fixed
part: capacity (the transient rule: a freed process whose initial machine is
freed counts there wherever it goes), conflict, spread (locations the fixed
processes already cover count), dependency (per neighbourhood of the freed
machines). Objective: the load and balance cost of the freed machines, the
process and machine move costs of the freed processes, and the service-move
max: a variable z above every affected service's moved count and above the
largest count of the other services (a bound that is tight at the optimum).
The objective of the current placement is the same expression, so `delta`
is exact; the caller re-checks it against the incremental state.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
from ortools.sat.python import cp_model

from allocator.roadef.state import RoadefState
from allocator.solvers.context import SolveContext

#: lighter CP-SAT presolve for the sub-models (no symmetry detection, no probing, one
#: presolve pass); False gives CP-SAT's defaults
SUB_PRESOLVE_LIGHT = True


class _Model(cp_model.CpModel):
    """A CpModel without the camelCase aliases of its methods, which its constructor
    sets one by one (1.4 ms a model; a2_5's two-machine waste models solve in about
    20 ms)."""

    def _add_pre_pep8_methods(self) -> None:
        return None


def solve_subproblem(st: RoadefState, freed: np.ndarray, machines: np.ndarray, *,
                     time_limit: float, deterministic: bool, seed: int,
                     ctx: SolveContext | None = None, linearization: int | None = None,
                     forbid: dict[int, set[int]] | None = None,
                     first_solution: bool = False
                     ) -> tuple[np.ndarray, int, bool] | None:
    """New machines for `freed`, the cost change, and whether CP-SAT proved it optimal.

    `linearization`: CP-SAT's linearization_level (None: its default); see
    solver.WASTE_LINEARIZATION for where the full LP relaxation pays. `forbid`: machines
    a freed process may not move to (its own machine always stays allowed); see
    solver.RESERVE for why. `first_solution`: stop at the first feasible placement (the
    repair's use, allocator/roadef/repair.py: the current placement, the hint, breaks a
    rule there, and the search improves the cost afterwards)."""
    inst = st.inst
    R = inst.n_resources
    K = len(machines)
    ms = [int(m) for m in machines]
    jof = {m: j for j, m in enumerate(ms)}
    F = [int(p) for p in freed]
    fset = set(F)
    cur = st.a
    req = st.req
    tr = st.tr
    init = st.init
    model = _Model()

    # usage of the freed machines without the freed processes
    base_use = st.use[machines].copy()
    base_hard = st.hard[machines].copy()
    for p in F:
        j = jof[int(cur[p])]
        base_use[j] -= req[p]
        base_hard[j] -= req[p]
        ji = jof.get(int(init[p]))
        if ji is not None and ji != j:
            base_hard[ji, tr] -= req[p, tr]
    # the transient rule: a freed process whose initial machine is freed stays held there
    for p in F:
        ji = jof.get(int(init[p]))
        if ji is not None:
            base_hard[ji, tr] += req[p, tr]

    # which fixed processes of each service sit on the freed machines
    fixed_on: dict[int, set[int]] = defaultdict(set)
    services = sorted({int(st.svc[p]) for p in F})
    for s in services:
        for q in st.siblings(s).tolist():
            if q not in fset and int(cur[q]) in jof:
                fixed_on[s].add(jof[int(cur[q])])

    x: dict[tuple[int, int], cp_model.IntVar] = {}
    room = st.cap[machines] - base_hard
    # which freed process fits on which freed machine, all pairs at once: [F, K]
    fa = np.asarray(F, dtype=np.int64)
    rq = req[fa]
    over = (rq[:, None, :] > room[None, :, :]).any(axis=2)
    j_init = [jof.get(int(init[p]), -1) for p in F]
    j_cur = [jof[int(cur[p])] for p in F]
    home = [i for i, ji in enumerate(j_init) if ji >= 0]
    if home:
        # home already holds p's transient requirement (base_hard counts it there)
        h_rows = np.asarray(home)
        h_cols = np.asarray([j_init[i] for i in home])
        over[h_rows, h_cols] = (rq[h_rows] * ~tr > room[h_cols]).any(axis=1)
    over[np.arange(len(F)), j_cur] = False  # its machine always holds it
    blocked = over.tolist()
    svc_f = st.svc[fa].tolist()
    for i, p in enumerate(F):
        fixed_s = fixed_on[svc_f[i]]
        row = []
        bl = blocked[i]
        no = forbid.get(p) if forbid else None
        for j in range(K):
            if bl[j] or j in fixed_s or (no is not None and ms[j] in no and j != j_cur[i]):
                continue
            v = model.new_bool_var(f"x{p}_{j}")
            x[p, j] = v
            row.append(v)
        model.add_exactly_one(row)
    by_j: dict[int, list[int]] = defaultdict(list)
    for (p, j) in x:
        by_j[j].append(p)
    # conflict among the freed processes of one service
    for j in range(K):
        per_service: dict[int, list[cp_model.IntVar]] = defaultdict(list)
        for p in by_j[j]:
            per_service[int(st.svc[p])].append(x[p, j])
        for vs in per_service.values():
            if len(vs) > 1:
                model.add_at_most_one(vs)

    # capacity (hard usage) and the load / balance terms
    obj_terms: list[cp_model.LinearExprT] = []
    obj_coefs: list[int] = []
    hint: dict[cp_model.IntVar, int] = {}
    use_expr: list[list[Any]] = []  # ints or linear expressions
    weighted_sum = cp_model.LinearExpr.weighted_sum
    for j in range(K):
        m = ms[j]
        row_expr: list[Any] = []
        vj = [x[p, j] for p in by_j[j]]
        cj = req[by_j[j]].reshape(len(vj), R)  # [processes that may go to j, R]
        away = (init[by_j[j]] != m).tolist()
        for r in range(R):
            col = cj[:, r].tolist()
            nz = [i for i, c in enumerate(col) if c]
            # one weighted sum per (machine, resource): the Python sum of c * v terms
            # took about a third of a small step's model building
            u_sum = weighted_sum([vj[i] for i in nz], [col[i] for i in nz]) if nz else None
            if tr[r]:
                hz = [i for i in nz if away[i]]
                if hz:
                    model.add(weighted_sum([vj[i] for i in hz], [col[i] for i in hz])
                              <= int(st.cap[m, r] - base_hard[j, r]))
            elif u_sum is not None:
                model.add(u_sum <= int(st.cap[m, r] - base_hard[j, r]))
            row_expr.append(int(base_use[j, r]) if u_sum is None
                            else u_sum + int(base_use[j, r]))
        use_expr.append(row_expr)
    cur_use = st.use[machines]
    for j in range(K):
        m = ms[j]
        top = base_use[j] + req[by_j[j]].reshape(-1, R).sum(axis=0)
        for r in range(R):
            lw = int(st.lw[r])
            if not lw or top[r] <= st.saf[m, r]:
                continue
            ov = model.new_int_var(0, int(top[r] - st.saf[m, r]), f"over{j}_{r}")
            model.add(ov >= use_expr[j][r] - int(st.saf[m, r]))
            obj_terms.append(ov)
            obj_coefs.append(lw)
            hint[ov] = max(0, int(cur_use[j, r] - st.saf[m, r]))
        for b, (r1, r2, t, w) in enumerate(st.bal):
            if not w:
                continue
            hi = t * int(st.cap[m, r1]) + int(st.cap[m, r2]) + t * int(top[r1]) + 1
            bv = model.new_int_var(0, max(1, hi), f"bal{j}_{b}")
            model.add(bv >= t * (int(st.cap[m, r1]) - use_expr[j][r1])
                      - (int(st.cap[m, r2]) - use_expr[j][r2]))
            obj_terms.append(bv)
            obj_coefs.append(w)
            free = st.cap[m] - cur_use[j]
            hint[bv] = max(0, int(t * free[r1] - free[r2]))

    # move costs
    for (p, j), v in x.items():
        i0 = int(init[p])
        c = (int(st.pmc[p]) if ms[j] != i0 else 0) + st.w_mm * int(st.mmc[i0, ms[j]])
        if c:
            obj_terms.append(v)
            obj_coefs.append(c)

    # service move: z above every affected count and the others' maximum
    if st.w_sm:
        mask = np.ones(inst.n_services, dtype=bool)
        mask[services] = False
        other = int(st.svc_moved[mask].max(initial=0))
        top_z = max(other, int(st.svc_moved.max(initial=0)) + len(F))
        z = model.new_int_var(other, top_z, "z")
        by_service: dict[int, list[int]] = defaultdict(list)
        for i, p in enumerate(F):
            by_service[svc_f[i]].append(p)
        for s in services:
            fs = by_service[s]
            const = int(st.svc_moved[s]) - sum(1 for p in fs if cur[p] != init[p])
            stay: list[cp_model.IntVar] = []  # a freed process back on its initial machine
            for p in fs:
                const += 1
                ji = jof.get(int(init[p]))
                if ji is not None and (p, ji) in x:
                    stay.append(x[p, ji])
            model.add(z >= const - sum(stay))
        obj_terms.append(z)
        obj_coefs.append(st.w_sm)
        hint[z] = st.max_moved

    # spread: locations the fixed processes do not cover yet
    spread = inst.spread_min
    for s in services:
        if spread[s] <= 0:
            continue
        fixed_locs = {int(st.loc[cur[q]]) for q in st.siblings(s).tolist() if q not in fset}
        need = int(spread[s]) - len(fixed_locs)
        if need <= 0:
            continue
        by_loc: dict[int, list[cp_model.IntVar]] = defaultdict(list)
        for (p, j), v in x.items():
            if int(st.svc[p]) == s:
                lo = int(st.loc[ms[j]])
                if lo not in fixed_locs:
                    by_loc[lo].append(v)
        ys = []
        for lo, vs in by_loc.items():
            y = model.new_bool_var(f"y{s}_{lo}")
            model.add(y <= sum(vs))
            ys.append(y)
            hint[y] = int(any(int(st.loc[cur[p]]) == lo for p in F if int(st.svc[p]) == s))
        model.add(sum(ys) >= need)

    # dependency, per neighbourhood of the freed machines
    if any(len(d) for d in st.deps):
        hoods = sorted({int(st.nb[m]) for m in ms})
        in_hood: dict[tuple[int, int], list[cp_model.IntVar]] = defaultdict(list)
        freed_in: dict[tuple[int, int], int] = defaultdict(int)
        for (p, j), v in x.items():
            in_hood[int(st.svc[p]), int(st.nb[ms[j]])].append(v)
        for p in F:
            freed_in[int(st.svc[p]), int(st.nb[cur[p]])] += 1
        pairs = set()
        for s in services:
            for d in st.deps[s].tolist():
                pairs.add((s, d))
            for r_ in st.rdeps[s].tolist():
                pairs.add((r_, s))
        for s, d in sorted(pairs):
            for n in hoods:
                if st.nb_count[d, n] - freed_in[d, n] > 0:
                    continue  # fixed processes of d are there
                xd = in_hood.get((d, n), [])
                if st.nb_count[s, n] - freed_in[s, n] > 0:
                    model.add(sum(xd) >= 1)
                for v in in_hood.get((s, n), []):
                    model.add(v <= sum(xd))

    model.minimize(weighted_sum(obj_terms, obj_coefs))
    # the current placement as the hint, in one extend (`add_hint` per variable took a
    # tenth of a small model's building)
    on = dict(zip(F, j_cur, strict=True))
    hint_vars = [v.index for v in x.values()] + [v.index for v in hint]
    hint_vals = [int(on[p] == j) for (p, j) in x] + [int(val) for val in hint.values()]
    model.model_proto.solution_hint.vars.extend(hint_vars)
    model.model_proto.solution_hint.values.extend(hint_vals)

    solver = cp_model.CpSolver()
    prm = solver.parameters
    prm.num_workers = 1
    prm.random_seed = seed
    if linearization is not None:
        prm.linearization_level = linearization
    # a light presolve: these models are small and solved thousands of times,
    # and CP-SAT's symmetry detection, probing and repeated presolve passes were a fifth
    # of their CPU for no better result (a2_2 / a2_5 sub-models of 60 s solves, thread
    # CPU: 20 % less, as many proved optimal; docs/benchmarks/roadef.md, slot q)
    if SUB_PRESOLVE_LIGHT:
        prm.symmetry_level = 0
        prm.cp_model_probing_level = 0
        prm.max_presolve_iterations = 1
    if first_solution:
        prm.stop_after_first_solution = True
    if deterministic:
        prm.max_deterministic_time = time_limit
    else:
        prm.max_time_in_seconds = time_limit
    unregister = ctx.on_stop(solver.stop_search) if ctx is not None else None
    try:
        status = solver.solve(model)
    finally:
        if unregister is not None:
            unregister()
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    new = np.empty(len(F), dtype=np.int64)
    for i, p in enumerate(F):
        new[i] = next(ms[j] for j in range(K) if (p, j) in x and solver.boolean_value(x[p, j]))
    # the cost of the current placement in the same terms
    current = int(st.mc[machines].sum())
    for p in F:
        i0, m = int(init[p]), int(cur[p])
        current += (int(st.pmc[p]) if m != i0 else 0) + st.w_mm * int(st.mmc[i0, m])
    current += st.w_sm * st.max_moved
    delta = round(solver.objective_value) - current
    return new, delta, status == cp_model.OPTIMAL
