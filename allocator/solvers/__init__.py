"""Solver backends; importing this package registers every built-in backend."""

from allocator.solvers import (  # noqa: F401  (registration)
    auto,
    balance,
    cpsat,
    greedy,
    milp,
    nsga2,
)
from allocator.solvers.base import Budget, WarmStart, get_solver, make_plan, solver_names

__all__ = ["Budget", "WarmStart", "get_solver", "make_plan", "solver_names"]
