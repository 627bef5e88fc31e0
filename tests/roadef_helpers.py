"""Small hand-made ROADEF instances for the rule and cost tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from allocator.roadef.instance import Balance, RoadefInstance

ROOT = Path(__file__).resolve().parents[1]
ROADEF = ROOT / "data" / "roadef"
SET_A = ["a1_1", "a1_2", "a1_3", "a1_4", "a1_5", "a2_1", "a2_2", "a2_3", "a2_4", "a2_5"]


def tiny(*, capacity: Sequence[Sequence[int]], requirement: Sequence[Sequence[int]],
         service: Sequence[int], initial: Sequence[int],
         safety: Sequence[Sequence[int]] | None = None,
         transient: Sequence[bool] | None = None, load_weight: Sequence[int] | None = None,
         location: Sequence[int] | None = None, neighbourhood: Sequence[int] | None = None,
         spread_min: Sequence[int] | None = None,
         dependencies: Sequence[Sequence[int]] | None = None,
         process_move_cost: Sequence[int] | None = None,
         machine_move_cost: Sequence[Sequence[int]] | None = None,
         balances: Sequence[Balance] = (), weights: tuple[int, int, int] = (1, 1, 1),
         ) -> RoadefInstance:
    """An instance from lists; every omitted field takes a neutral default."""
    cap = np.asarray(capacity, dtype=np.int64)
    M, R = cap.shape
    req = np.asarray(requirement, dtype=np.int64)
    P = req.shape[0]
    S = max(service) + 1
    return RoadefInstance(
        name="tiny",
        transient=np.asarray(transient if transient is not None else [False] * R, dtype=bool),
        load_weight=np.asarray(load_weight if load_weight is not None else [1] * R,
                               dtype=np.int64),
        neighbourhood=np.asarray(neighbourhood if neighbourhood is not None else [0] * M,
                                 dtype=np.int64),
        location=np.asarray(location if location is not None else list(range(M)),
                            dtype=np.int64),
        capacity=cap,
        safety=np.asarray(safety, dtype=np.int64) if safety is not None else cap.copy(),
        machine_move_cost=(np.asarray(machine_move_cost, dtype=np.int64)
                           if machine_move_cost is not None
                           else 1 - np.eye(M, dtype=np.int64)),
        spread_min=np.asarray(spread_min if spread_min is not None else [0] * S,
                              dtype=np.int64),
        dependencies=tuple(tuple(d) for d in (dependencies if dependencies is not None
                                              else [()] * S)),
        service=np.asarray(service, dtype=np.int64),
        requirement=req,
        process_move_cost=np.asarray(process_move_cost if process_move_cost is not None
                                     else [1] * P, dtype=np.int64),
        balances=tuple(balances),
        weight_process_move=weights[0], weight_service_move=weights[1],
        weight_machine_move=weights[2],
        initial=np.asarray(initial, dtype=np.int64))
