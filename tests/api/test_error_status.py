"""The HTTP status of every engine error lives in api/errors.py, and only there."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import allocator
import api
from allocator.errors import AllocatorError
from api.errors import HTTP_STATUS, HTTP_STATUS_BY_NAME, http_status, status_of_class

ROOT = Path(__file__).resolve().parents[2]


def _import_all(package: object) -> None:
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):  # type: ignore[attr-defined]
        try:
            importlib.import_module(info.name)
        except ImportError:  # an optional extra that is not installed
            continue


def _subclasses(cls: type) -> set[type]:
    out: set[type] = set()
    for sub in cls.__subclasses__():
        out |= {sub} | _subclasses(sub)
    return out


def test_every_allocator_error_is_listed_with_a_4xx_or_5xx() -> None:
    _import_all(allocator)
    _import_all(api)
    subclasses = {c for c in _subclasses(AllocatorError)
                  if c.__module__.split(".")[0] in ("allocator", "api", "models")}
    assert len(subclasses) >= 17  # 8 in allocator.errors, 4 in engine modules, 5 in api
    unlisted = sorted(f"{c.__module__}.{c.__qualname__}" for c in subclasses
                      if status_of_class(c) is None)
    assert not unlisted, f"add these to api/errors.py HTTP_STATUS(_BY_NAME): {unlisted}"
    for c in subclasses | {AllocatorError}:
        status = status_of_class(c)
        assert status is not None and 400 <= status <= 599, (c, status)
        assert not hasattr(c, "http_status"), c


def test_names_in_the_map_exist() -> None:
    """A renamed engine error must not silently fall back to 422."""
    for qualified in HTTP_STATUS_BY_NAME:
        module, _, name = qualified.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        assert issubclass(cls, AllocatorError)
    assert all(issubclass(c, AllocatorError) for c in HTTP_STATUS)


@pytest.mark.parametrize("qualified,status", [
    ("allocator.online.runtime.TaskRejectedError", 429),
    ("allocator.online.runtime.TaskFailedError", 422),
    ("allocator.online.breaker.CircuitOpenError", 503),
    ("allocator.distributed.session.RayUnavailableError", 501),
    ("allocator.errors.ResourceLimitError", 413),
    ("allocator.errors.CapacityError", 429),
    ("allocator.errors.NotFoundError", 404),
])
def test_statuses_kept(qualified: str, status: int) -> None:
    module, _, name = qualified.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    exc = cls.__new__(cls)
    assert http_status(exc) == status


def test_engine_and_models_carry_no_http_status() -> None:
    hits = [f"{p.relative_to(ROOT)}:{i}"
            for d in ("allocator", "models") for p in sorted((ROOT / d).rglob("*.py"))
            for i, line in enumerate(p.read_text().splitlines(), 1)
            if re.search(r"http_status", line)]
    assert not hits, hits


def test_memory_estimate_accepts_sparse_solves_at_the_caps() -> None:
    """2000 x 50,000 plain (greedy, auto) and 1000 x 20k x 50 with an override fit 1 GiB;
    the exact backends, which build dense [m, n] models, are still refused."""
    from api.limits import estimate_work_bytes
    from api.settings import Settings

    limit = Settings().max_work_bytes
    for backend in ("greedy", "auto", "balance"):
        assert estimate_work_bytes(2000, 50_000, 1, False, backend) < limit / 2
        assert estimate_work_bytes(1000, 20_000, 50, True, backend) < limit / 2
    for backend in ("cpsat", "milp", "nsga2"):
        assert estimate_work_bytes(2000, 50_000, 1, False, backend) > limit
    # Listed pairs count: a list of every agent on every task is dense again.
    assert estimate_work_bytes(2000, 50_000, 1, False, "greedy", 2000 * 50_000) > limit
