"""Solver backends; importing this package registers the built-in backends.

`cpsat` (ortools) and `nsga2` (pymoo) load by name on first use
(:func:`allocator.solvers.base.get_solver`), so importing the engine does not
pay for them.
"""

from allocator.solvers import (  # noqa: F401  (registration)
    auto,
    balance,
    greedy,
    milp,
)
from allocator.solvers.base import Budget, WarmStart, get_solver, make_plan, solver_names

__all__ = ["Budget", "WarmStart", "get_solver", "make_plan", "solver_names"]
