"""Allocator: load balancing and task allocation across many agents."""

from allocator.engine import solve
from allocator.errors import AllocatorError
from allocator.problem import Problem, compile_snapshot
from allocator.validate import Violation, validate

__all__ = ["AllocatorError", "Problem", "Violation", "compile_snapshot", "solve", "validate"]
__version__ = "0.1.0"
