"""Generated machine reassignment instances of any size (set B's: 50,000
processes, 5,000 machines, 12 resources), with a feasible initial placement
by construction.

How (seeded, numpy only):
* machines: N neighbourhoods in contiguous blocks, L locations at random,
  capacities around 10^6 per resource (x0.5..1.5), safety 70-90 % of it;
  machine move cost 0 within a location, 1 within a neighbourhood, 2 across
  (int32: the M x M matrix is the one quadratic array);
* services: sizes 1 (most) to 25; each service's processes are placed first,
  on distinct machines (conflict holds), then requirements are drawn per
  process and scaled per machine so every machine ends between 55 % and 98 %
  of its capacity (above safety on some: the load cost to cut), never above;
* spread: spreadMin(s) is at most the number of locations s covers;
  dependencies: s depends on s2 only if every neighbourhood holding s holds
  s2 (acyclic: s2 earlier in the order);
* a quarter of the resources are transient; two balance objectives (one below four
  resources).
"""

from __future__ import annotations

import numpy as np

from allocator.errors import InvalidInputError
from allocator.limits import check_fits_memory
from allocator.roadef.instance import _MAX_M, _MAX_P, _MAX_R, Balance, RoadefInstance

#: Peak memory of a generated process (measured: 1,000,000 processes on 1,000 machines
#: peak at 578 MB, 18 s), for the guard against sizes the machine cannot hold.
GEN_BYTES_PER_PROCESS = 600.0


def generate_instance(processes: int = 50_000, machines: int = 5_000, resources: int = 12,
                      *, seed: int = 0,
                      locations: int | None = None, neighbourhoods: int | None = None,
                      name: str | None = None) -> RoadefInstance:
    """A seeded instance whose initial placement breaks no rule."""
    if processes < 1 or machines < 2 or resources < 2:
        raise InvalidInputError("need >= 1 process, >= 2 machines, >= 2 resources",
                                field="size")
    for what, n, most in (("processes", processes, _MAX_P), ("machines", machines, _MAX_M),
                          ("resources", resources, _MAX_R)):
        if n > most:  # what the model reader accepts
            raise InvalidInputError(f"{n:,} {what}: at most {most:,}", field=what)
    check_fits_memory(machines, 4.0, "machines", "machines (an M x M move-cost matrix)",
                      squared=True)
    check_fits_memory(processes, GEN_BYTES_PER_PROCESS, "processes", "processes")
    rng = np.random.default_rng(seed)
    P, M, R = processes, machines, resources
    L = locations if locations is not None else max(1, min(25, M // 20))
    N = neighbourhoods if neighbourhoods is not None else max(1, min(10, M // 50))
    if not (1 <= L <= M and 1 <= N <= M):
        raise InvalidInputError("locations and neighbourhoods must be 1..machines",
                                field="locations")
    nb = (np.arange(M) * N // M).astype(np.int64)
    loc = rng.integers(0, L, M).astype(np.int64)
    loc[:L] = np.arange(L)  # every location has a machine
    cap = (rng.uniform(0.5, 1.5, (M, R)) * 1_000_000).astype(np.int64)
    saf = (cap * rng.uniform(0.7, 0.9, (M, R))).astype(np.int64)
    # services: a few large, most with one process
    sizes: list[int] = []
    left = P
    cap_size = min(25, M)
    while left > 0:
        k = 1 if rng.random() < 0.7 else int(rng.integers(2, cap_size + 1))
        k = min(k, left)
        sizes.append(k)
        left -= k
    S = len(sizes)
    service = np.repeat(np.arange(S), sizes).astype(np.int64)
    # place each service on distinct machines (a random window of a permutation)
    perm = rng.permutation(M)
    assign = np.empty(P, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    offs = rng.integers(0, M, S)
    for s in range(S):
        k = sizes[s]
        idx = (offs[s] + np.arange(k)) % M
        assign[starts[s]:starts[s] + k] = perm[idx]
    # requirements: random shares scaled per machine to 55-98 % of capacity
    raw = rng.gamma(2.0, 1.0, (P, R))
    per_machine = np.zeros((M, R))
    np.add.at(per_machine, assign, raw)
    fill = rng.uniform(0.55, 0.98, (M, R))
    scale = np.where(per_machine > 0, fill * cap / np.maximum(per_machine, 1e-9), 0.0)
    req = np.floor(raw * scale[assign]).astype(np.int64)  # floor: sums stay <= capacity
    # spread and dependencies from the initial placement
    loc_pairs = np.unique(service * L + loc[assign])
    n_loc = np.bincount(loc_pairs // L, minlength=S)
    spread = np.minimum(n_loc, rng.integers(0, 4, S)).astype(np.int64)
    hood_pairs = np.unique(service * N + nb[assign])
    hoods: list[set[int]] = [set() for _ in range(S)]
    for key in hood_pairs.tolist():
        hoods[key // N].add(key % N)
    deps: list[tuple[int, ...]] = [() for _ in range(S)]
    big = np.flatnonzero(np.asarray(sizes) >= max(2, min(5, N)))
    for s in rng.permutation(S)[: S // 5].tolist():
        cand = big[big < s]
        if cand.size == 0:
            continue
        for s2 in rng.choice(cand, min(10, cand.size), replace=False).tolist():
            if hoods[s] <= hoods[s2]:
                deps[s] = (int(s2),)
                break
    transient = np.zeros(R, dtype=bool)
    transient[rng.choice(R, max(1, R // 4), replace=False)] = True
    mmc = ((loc[:, None] != loc[None, :]).astype(np.int32)
           + (nb[:, None] != nb[None, :]).astype(np.int32))
    return RoadefInstance(
        name=name or f"gen_p{P}_m{M}_r{R}_s{seed}", transient=transient,
        load_weight=rng.integers(1, 11, R).astype(np.int64), neighbourhood=nb, location=loc,
        capacity=cap, safety=saf, machine_move_cost=mmc, spread_min=spread,
        dependencies=tuple(deps), service=service, requirement=req,
        process_move_cost=rng.integers(1, 5, P).astype(np.int64),
        balances=tuple(b for b in (Balance(0, 1, 2, 10), Balance(2, 3, 1, 1))
                       if max(b.r1, b.r2) < R),  # the second needs four resources
        weight_process_move=1, weight_service_move=10, weight_machine_move=100,
        initial=assign)
