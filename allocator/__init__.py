"""Allocator: load balancing and task allocation across many agents."""

import os
import sys
import types
from typing import TYPE_CHECKING, Any

from allocator.errors import AllocatorError

# numba colours its typing messages with colorama whenever colorama imports (Ray
# puts a copy on sys.path), and colorama's init()/deinit() assign sys.stdout for
# the whole process: from a kernel warm-up thread compiling on a cold cache that
# put back a stale stream over the one another thread had installed (a captured
# stdout, an MCP stdio transport). Set before numba is first imported.
os.environ.setdefault("NUMBA_DISABLE_ERROR_MESSAGE_HIGHLIGHTING", "1")

if TYPE_CHECKING:
    from allocator.engine import solve
    from allocator.problem import Problem, compile_snapshot
    from allocator.validate import Violation, validate

#: Public name -> module that defines it. Loaded on first attribute access, so
#: `import allocator.<anything>` (the CLI's `--help`, the online executor, Ray
#: workers) does not pay for numpy, the solver backends or pydantic models.
_LAZY = {
    "solve": "allocator.engine",
    "Problem": "allocator.problem",
    "compile_snapshot": "allocator.problem",
    "Violation": "allocator.validate",
    "validate": "allocator.validate",
}


def __getattr__(name: str) -> Any:
    """Import the module behind a public name on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'allocator' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """`allocator.validate` is the function, as it was when it was imported eagerly.

    Importing the submodule `allocator.validate` makes the import system set the
    package attribute of the same name to the module; this keeps the public function
    there instead, so `from allocator import validate` is the function whatever was
    imported before.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "validate" and isinstance(value, types.ModuleType):
            value = value.validate
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = ["AllocatorError", "Problem", "Violation", "compile_snapshot", "solve", "validate"]
__version__ = "0.1.0"
