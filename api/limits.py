"""Limits the API applies before it queues work: magnitudes and the memory estimate.

The magnitude limits are the models' (`models.MAX_MAGNITUDE`, speeds, counts),
checked by :func:`allocator.limits.check_magnitudes`, the check the CLI runs too:
a number the CLI takes the API takes, and one it refuses is a 422 naming the
field here, instead of failing inside a solve.
"""

from __future__ import annotations

from allocator.errors import ResourceLimitError
from allocator.limits import check_magnitudes
from models import MAX_COUNT, MAX_MAGNITUDE, MAX_SPEED, MIN_SPEED, Snapshot

# The magnitude limits are the models' (one limit for the CLI, the API and MCP).
__all__ = ["MAX_COUNT", "MAX_MAGNITUDE", "MAX_SPEED", "MIN_SPEED", "check_magnitudes",
           "check_work_bytes", "estimate_work_bytes", "listed_pairs", "shape"]


#: Bytes of worker memory per (agent, task) pair, by backend, for the backends that
#: build dense tasks x agents arrays (the exact models: 150-600 B a pair measured, see
#: docs/api.md; unknown backends count as exact ones) and for the greedy below
#: `allocator.problem.DENSE_CELLS` cells, where it takes its dense fast path.
BYTES_PER_PAIR = {"greedy": 48, "balance": 0, "validate": 0, "simulate": 0}
BYTES_PER_PAIR_DEFAULT = 600
#: A per-agent demand override makes a dense problem hold an [m, n, R] demand array.
BYTES_PER_DEMAND_CELL = 10
#: What a worker holds before any request (interpreter, numpy, ortools, highspy).
BASE_WORK_BYTES = 64 << 20
#: The sparse path (greedy and balance above DENSE_CELLS cells, auto above
#: LINEAR_MAX_CELLS): memory grows with tasks, agents and listed pairs, not their
#: product. Per task: its snapshot objects parsed in the worker, the problem's [n]
#: arrays and its Assignment / Unassigned in the plan (about 2.5 KB measured, doubled);
#: per task and resource a demand entry and [n, R] arrays; per agent its objects and
#: [m] arrays; per listed pair (allowed / forbidden / override) a CSR entry and key;
#: plus the block temporaries (about 1M cells at a time, a few float arrays).
SPARSE_BYTES_PER_TASK = 5 << 10
SPARSE_BYTES_PER_TASK_RESOURCE = 200
SPARSE_BYTES_PER_AGENT = 4 << 10
SPARSE_BYTES_PER_LISTED_PAIR = 200
SPARSE_BLOCK_BYTES = 64 << 20


def _sparse_path(n_agents: int, n_tasks: int, backend: str) -> bool:
    """Whether `backend` runs its sparse path on this shape (thresholds of the engine)."""
    from allocator.problem import DENSE_CELLS, LINEAR_MAX_CELLS

    cells = n_agents * n_tasks
    if backend in ("greedy", "balance"):
        return cells > DENSE_CELLS or backend == "balance"
    return backend == "auto" and cells > LINEAR_MAX_CELLS


def estimate_work_bytes(n_agents: int, n_tasks: int, n_resources: int,
                        demand_overrides: bool, backend: str, listed_pairs: int = 0) -> int:
    """What a worker needs (bytes) to run `backend` on a snapshot of this shape.

    `listed_pairs` counts allowed / forbidden list entries and overrides (the
    sparse path stores each). A job (and every solve) runs the greedy first;
    the larger of the two counts.
    """
    if backend in ("validate", "simulate"):
        return BASE_WORK_BYTES
    sparse = (BASE_WORK_BYTES + SPARSE_BLOCK_BYTES + n_tasks * SPARSE_BYTES_PER_TASK
              + n_tasks * max(n_resources, 1) * SPARSE_BYTES_PER_TASK_RESOURCE
              + n_agents * (SPARSE_BYTES_PER_AGENT
                            + max(n_resources, 1) * SPARSE_BYTES_PER_TASK_RESOURCE)
              + listed_pairs * SPARSE_BYTES_PER_LISTED_PAIR)
    pairs = n_agents * n_tasks

    def dense(per_pair: int, demand_matrix: bool = True) -> int:
        total = BASE_WORK_BYTES + pairs * per_pair
        if demand_overrides and demand_matrix:
            total += pairs * max(n_resources, 1) * BYTES_PER_DEMAND_CELL
        return max(total, sparse)

    # The greedy reads overridden demand per task column (Problem.col_demand): no
    # [m, n, R] array above DENSE_CELLS demand cells, a small one below.
    greedy = sparse if _sparse_path(n_agents, n_tasks, "greedy") else dense(
        BYTES_PER_PAIR["greedy"], demand_matrix=False)
    if backend == "greedy":
        return greedy
    if _sparse_path(n_agents, n_tasks, backend):
        return max(greedy, sparse)
    return max(greedy, dense(BYTES_PER_PAIR.get(backend, BYTES_PER_PAIR_DEFAULT)))


def check_work_bytes(n_agents: int, n_tasks: int, n_resources: int, demand_overrides: bool,
                     backend: str, limit: int, listed_pairs: int = 0) -> None:
    """ResourceLimitError (413) naming the limit when the estimate is over it."""
    need = estimate_work_bytes(n_agents, n_tasks, n_resources, demand_overrides, backend,
                               listed_pairs)
    if need > limit:
        mib = 1 << 20
        extra = f" x {n_resources} resources (demand overrides)" if demand_overrides else ""
        raise ResourceLimitError(
            f"{backend} on {n_agents} agents x {n_tasks} tasks{extra} needs about "
            f"{need // mib} MiB, over this server's max_work_bytes of "
            f"{limit // mib} MiB; use fewer agents or tasks"
            f"{'' if backend == 'greedy' else ', or the greedy backend'}",
            field="snapshot")


def shape(snap: Snapshot) -> tuple[int, bool]:
    """(resources, any per-agent demand override) of a snapshot."""
    resources = {r for a in snap.agents for r in a.capacity}
    overrides = any(ov.demand for t in snap.tasks for ov in t.overrides.values())
    return len(resources), overrides


def listed_pairs(snap: Snapshot) -> int:
    """Allowed / forbidden list entries and overrides: pairs the sparse path stores."""
    return sum(len(t.allowed_agents or ()) + len(t.forbidden_agents) + len(t.overrides)
               for t in snap.tasks)
