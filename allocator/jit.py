"""One place that decides whether the compiled kernels are compiled.

The search kernels (GAP penalty walk and tabu search, the knapsack pricing
table, the ROADEF annealing) are written once as plain numeric Python and
decorated with :func:`njit`. With numba importable that is ``numba.njit``;
without it the decorator returns the function unchanged, so the kernels still
run (slowly) and callers read :data:`HAVE_NUMBA` to decide whether to use them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["HAVE_NUMBA", "njit"]

try:  # pragma: no cover - exercised by whichever import succeeds
    from numba import njit

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover
    HAVE_NUMBA = False

    def njit(*args: Any, **kwargs: Any) -> Callable[..., Any]:  # type: ignore[no-redef]
        """Stand-in for ``numba.njit(...)``: leaves the function as it is."""

        def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
            return f

        return wrap
