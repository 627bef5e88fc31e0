"""Solver backends, loaded by name on first use.

Every backend module registers itself when imported, and
:func:`allocator.solvers.base.get_solver` imports it by name on first use, so
importing the engine pays for no backend (ortools, pymoo, HiGHS) and no
backend module is imported while :mod:`allocator.bounds` (which the
portfolio, milp and balance import) is only half initialised.
"""

from allocator.solvers.base import Budget, WarmStart, get_solver, make_plan, solver_names

__all__ = ["Budget", "WarmStart", "get_solver", "make_plan", "solver_names"]
