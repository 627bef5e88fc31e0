"""Solver backends; importing this package registers every built-in backend."""

from allocator.solvers import auto, cpsat, greedy  # noqa: F401  (registration)
from allocator.solvers import milp  # noqa: F401  (registration)
from allocator.solvers import nsga2  # noqa: F401  (registration)
from allocator.solvers.base import Budget, WarmStart, get_solver, make_plan, solver_names

__all__ = ["Budget", "WarmStart", "get_solver", "make_plan", "solver_names"]
