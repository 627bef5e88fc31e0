"""Where a sweep's independent pieces run: in this process, or as Ray tasks.

A backend maps a picklable module-level function over items and returns the
results in input order, whatever order they finish in. The function must
be pure (its answer depends only on its item: seeds travel inside the item),
which is what makes the ray backend's answers identical to the local one's.

    backend = get_backend("ray", address=None)   # or "local"
    with backend:
        results = backend.map(solve_scenario, scenarios)

`get_backend("ray")` raises RayUnavailableError at once when Ray is not
installed, so a command fails before any work starts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from allocator.distributed.session import ray_session, require_ray
from allocator.errors import InvalidInputError

T = TypeVar("T")
R = TypeVar("R")

BACKENDS = ("local", "ray")

OnDone = Callable[[int, Any], None]
#: Called with (index, exception) when an item's run raised or its worker died; its
#: return value stands as that item's result (None: the exception propagates).
OnError = Callable[[int, BaseException], Any]


class Backend(Protocol):
    name: str

    def map(self, fn: Callable[[T], R], items: Sequence[T], *,
            on_done: OnDone | None = None, on_error: OnError | None = None) -> list[R]: ...

    def __enter__(self) -> Backend: ...

    def __exit__(self, *exc: object) -> None: ...


class LocalBackend:
    """In this process, one item after the other."""

    name = "local"

    def map(self, fn: Callable[[T], R], items: Sequence[T], *,
            on_done: OnDone | None = None, on_error: OnError | None = None) -> list[R]:
        out: list[R] = []
        for i, item in enumerate(items):
            try:
                r = fn(item)
            except Exception as e:
                if on_error is None:
                    raise
                r = on_error(i, e)
            out.append(r)
            if on_done is not None:
                on_done(i, r)
        return out

    def __enter__(self) -> LocalBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class RayBackend:
    """One Ray task per item (`num_cpus` each), on a joined or a local cluster.

    The session is opened on `__enter__` (or by the first `map`, for that
    call only) and closed on `__exit__`. At most `max_in_flight` tasks are
    submitted at once, so a sweep of many scenarios does not put all of its
    inputs in the object store at the same time.
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, num_cpus: float = 1.0,
                 max_in_flight: int = 256, temp_dir: str | None = None,
                 local_num_cpus: int | None = None) -> None:
        require_ray()
        self.address = address
        self.num_cpus = num_cpus
        self.max_in_flight = max(1, max_in_flight)
        self.temp_dir = temp_dir
        self.local_num_cpus = local_num_cpus
        self._session: Any = None

    def __enter__(self) -> RayBackend:
        if self._session is None:
            self._session = ray_session(self.address, num_cpus=self.local_num_cpus,
                                        temp_dir=self.temp_dir, log_to_driver=False)
            self._session.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._session is not None:
            s, self._session = self._session, None
            s.__exit__(None, None, None)

    def map(self, fn: Callable[[T], R], items: Sequence[T], *,
            on_done: OnDone | None = None, on_error: OnError | None = None) -> list[R]:
        """`fn` over `items` as Ray tasks (not retried: the answer must not depend on
        luck). Without `on_error`, the first item whose task raised or whose worker
        died (SIGKILL, OOM) raises here and the other items' results are dropped."""
        if self._session is None:
            with self:
                return self.map(fn, items, on_done=on_done, on_error=on_error)
        ray = require_ray()
        remote = ray.remote(num_cpus=self.num_cpus, max_retries=0)(fn)
        results: dict[int, Any] = {}
        index: dict[Any, int] = {}
        todo = list(enumerate(items))
        todo.reverse()
        while todo or index:
            while todo and len(index) < self.max_in_flight:
                i, item = todo.pop()
                index[remote.remote(item)] = i
            ready, _ = ray.wait(list(index), num_returns=1)
            for ref in ready:
                i = index.pop(ref)
                try:
                    results[i] = ray.get(ref)  # a task's exception is re-raised here
                except Exception as e:
                    if on_error is None:
                        raise
                    results[i] = on_error(i, e)
                if on_done is not None:
                    on_done(i, results[i])
        return [results[i] for i in range(len(items))]


def get_backend(name: str = "local", *, address: str | None = None,
                **kwargs: Any) -> LocalBackend | RayBackend:
    """A backend by name ("local" or "ray"); `address` joins a Ray cluster."""
    if name == "local":
        return LocalBackend()
    if name == "ray":
        return RayBackend(address, **kwargs)
    raise InvalidInputError(f"unknown backend {name!r}; use one of {', '.join(BACKENDS)}",
                            field="backend")
