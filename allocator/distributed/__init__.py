"""Beyond one machine: the online executor and batch sweeps on Ray (optional extra).

Importing this package never imports Ray; the pieces that need it import it
on first use and raise :class:`RayUnavailableError` (an AllocatorError) when
`pip install 'allocator[ray]'` was not done. See docs/distributed.md.

- :class:`RayExecutor` (allocator.distributed.driver): agents as Ray actors,
  the unchanged executor core in the coordinator.
- :func:`get_backend` (allocator.distributed.backend): "local" or "ray" for
  sweeps; :func:`run_batch_on` (allocator.distributed.sweeps) is the batch
  on a backend.
- :func:`ray_session` (allocator.distributed.session): join a cluster or
  start a local one with a short, cleaned temp dir and no files in $HOME.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from allocator.distributed.backend import (
    BACKENDS,
    Backend,
    LocalBackend,
    RayBackend,
    get_backend,
)
from allocator.distributed.session import (
    RayUnavailableError,
    ray_available,
    ray_session,
    require_ray,
)

if TYPE_CHECKING:
    from allocator.distributed.driver import RayExecutor
    from allocator.distributed.sweeps import run_batch_on


def __getattr__(name: str) -> Any:
    # The driver and the sweeps pull in the online core and the engine: load on use.
    if name == "RayExecutor":
        from allocator.distributed.driver import RayExecutor

        return RayExecutor
    if name == "run_batch_on":
        from allocator.distributed.sweeps import run_batch_on

        return run_batch_on
    raise AttributeError(name)


__all__ = [
    "BACKENDS",
    "Backend",
    "LocalBackend",
    "RayBackend",
    "RayExecutor",
    "RayUnavailableError",
    "get_backend",
    "ray_available",
    "ray_session",
    "require_ray",
    "run_batch_on",
]
