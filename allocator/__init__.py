"""Allocator: load balancing and task allocation across many agents."""

from typing import TYPE_CHECKING, Any

from allocator.errors import AllocatorError
from allocator.problem import Problem, compile_snapshot
from allocator.validate import Violation, validate

if TYPE_CHECKING:
    from allocator.engine import solve


def __getattr__(name: str) -> Any:
    """`allocator.solve` loads the engine (and its backends) on first use only, so
    `import allocator` - the online executor, `allocator --help`, Ray workers - stays light."""
    if name == "solve":
        from allocator.engine import solve

        return solve
    raise AttributeError(f"module 'allocator' has no attribute {name!r}")

__all__ = ["AllocatorError", "Problem", "Violation", "compile_snapshot", "solve", "validate"]
__version__ = "0.1.0"
