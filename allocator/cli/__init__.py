"""The `allocator` command line: one module per command group, all thin.

Every command parses, calls the engine and formats. AllocatorError and
pydantic validation errors become one-line messages on stderr and exit code
2; a violated plan is exit code 1.
"""

from __future__ import annotations

from allocator.cli import batch as _batch  # noqa: F401
from allocator.cli import bench as _bench  # noqa: F401  (registers commands)
from allocator.cli import bench_anytime as _bench_anytime  # noqa: F401
from allocator.cli import bench_roadef as _bench_roadef  # noqa: F401
from allocator.cli import bench_solvers as _bench_solvers  # noqa: F401
from allocator.cli import bench_startup as _bench_startup  # noqa: F401
from allocator.cli import capacity as _capacity  # noqa: F401
from allocator.cli import distributed as _distributed  # noqa: F401
from allocator.cli import gen as _gen  # noqa: F401
from allocator.cli import live as _live  # noqa: F401  (agent, submit, tasks, agents)
from allocator.cli import pareto as _pareto  # noqa: F401
from allocator.cli import rebalance as _rebalance  # noqa: F401
from allocator.cli import replay as _replay  # noqa: F401
from allocator.cli import serve as _serve  # noqa: F401
from allocator.cli import simulate as _simulate  # noqa: F401
from allocator.cli import solve as _solve  # noqa: F401
from allocator.cli import topology as _topology  # noqa: F401
from allocator.cli import tune as _tune  # noqa: F401
from allocator.cli.app import app, main

__all__ = ["app", "main"]
