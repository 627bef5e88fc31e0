"""Batch solving on a backend: the solves run remotely, files are written here.

`run_batch_on(backend, inputs, out_dir, ...)` gives the same outputs as
`allocator.batch.run_batch` (same file names, manifests and skip rules, and
the same plans: the solve is the same deterministic call on the same
snapshot). The split is what lets it run on a cluster without a shared file
system: the driver checks fingerprints and reads each input, ships the
Snapshot to a Ray task that solves and validates it, and writes the plan,
the assignments table and the manifest (atomically, manifest last) when the
answer comes back. A bad input is reported in its result and the others
still run, as in the local batch.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from allocator.batch import (
    BatchResult,
    TableFormat,
    already_solved,
    fingerprint,
    input_stem,
    output_paths,
)
from allocator.distributed.backend import Backend, get_backend
from allocator.engine import solve
from allocator.errors import AllocatorError, InvalidInputError
from allocator.io.snapshots import dump_model, write_json_atomic
from allocator.io.tables import assignments_frame, read_input, write_frame_atomic
from allocator.validate import validate
from models import Plan, Snapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SolveJob:
    """One remote solve: everything it needs travels with it (no file access)."""

    snapshot: Snapshot
    solver: str | None
    time_limit: float | None


@dataclass(frozen=True)
class SolveAnswer:
    plan: Plan | None
    violations: int
    error: str | None
    wall_s: float
    internal: bool = False


def solve_job(job: SolveJob) -> SolveAnswer:
    """Solve and validate one snapshot (runs on a worker; never raises on bad input)."""
    t0 = time.perf_counter()
    try:
        plan = solve(job.snapshot, solver=job.solver, time_limit=job.time_limit)
        violations = validate(job.snapshot, plan)
    except AllocatorError as e:
        return SolveAnswer(None, 0, str(e), time.perf_counter() - t0)
    except Exception as e:  # one crash must not stop the sweep
        return SolveAnswer(None, 0, f"internal error: {type(e).__name__}: {e}",
                           time.perf_counter() - t0, internal=True)
    return SolveAnswer(plan, len(violations), None, time.perf_counter() - t0)


def run_batch_on(backend: Backend, inputs: Iterable[str | Path], out_dir: str | Path, *,
                 force: bool = False, fmt: TableFormat = "csv", solver: str | None = None,
                 time_limit: float | None = None,
                 on_result: Callable[[BatchResult], None] | None = None) -> list[BatchResult]:
    """`allocator.batch.run_batch` with the solves on `backend`; results in input order."""
    if fmt not in ("csv", "parquet"):
        raise InvalidInputError(f"unknown format {fmt!r}; use csv or parquet", field="format")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seen: dict[str, str] = {}
    results: list[BatchResult] = []
    jobs: list[SolveJob] = []
    pending: list[tuple[int, str, dict[str, Path]]] = []  # result index, digest, paths
    for raw in inputs:
        path = Path(raw)
        stem = input_stem(path)
        res = BatchResult(input=str(path), stem=stem, outcome="failed")
        results.append(res)
        if stem in seen:
            res.error = f"{path}: same output name {stem!r} as {seen[stem]}"
            continue
        seen[stem] = str(path)
        t0 = time.perf_counter()
        try:
            paths = output_paths(out, stem, fmt)
            if not path.exists():
                raise InvalidInputError("no such file or directory", field=str(path))
            digest = fingerprint(path)
            if not force and already_solved(paths, digest):
                manifest = json.loads(paths["manifest"].read_text(encoding="utf-8"))
                res.outcome = "skipped"
                res.status, res.objective = manifest.get("status"), manifest.get("objective")
                res.outputs = [str(p) for p in paths.values()]
                continue
            jobs.append(SolveJob(read_input(path), solver, time_limit))
            pending.append((len(results) - 1, digest, paths))
        except AllocatorError as e:
            res.error = str(e)
        except Exception as e:
            log.exception("batch input %s crashed", path)
            res.error = f"{path}: internal error: {type(e).__name__}: {e}"
        finally:
            res.wall_s = time.perf_counter() - t0

    def write(k: int, ans: SolveAnswer) -> None:
        i, digest, paths = pending[k]
        res = results[i]
        res.wall_s += ans.wall_s
        if ans.plan is None:
            res.error = f"{res.input}: {ans.error}" if ans.internal else ans.error
            return
        plan = ans.plan
        try:
            write_frame_atomic(assignments_frame(plan), paths["assignments"])
            write_json_atomic(paths["plan"], dump_model(plan))
            manifest = {"input": res.input, "fingerprint": digest, "solver": plan.solver,
                        "status": str(plan.status), "objective": plan.objective,
                        "violations": ans.violations}
            write_json_atomic(paths["manifest"], json.dumps(manifest, indent=2) + "\n")
        except (OSError, AllocatorError) as e:
            res.error = f"{res.input}: writing outputs: {e}"
            return
        res.outcome = "solved"
        res.status, res.objective = str(plan.status), plan.objective
        res.assigned, res.unassigned = len(plan.assignments), len(plan.unassigned)
        res.migrations, res.valid = len(plan.migrations), not ans.violations
        res.outputs = [str(p) for p in paths.values()]

    def crashed(k: int, e: BaseException) -> SolveAnswer:
        # The worker died mid-solve (SIGKILL, OOM, a crash in native code): that input
        # fails with the reason and the others go on, as in the local batch. It used to
        # raise out of `map`, stopping the whole batch.
        first = (str(e).strip().splitlines() or [""])[0][:200]
        return SolveAnswer(None, 0, f"internal error: {type(e).__name__}: {first}", 0.0,
                           internal=True)

    backend.map(solve_job, jobs, on_done=write, on_error=crashed)
    for res in results:
        if res.error:
            log.warning("batch input failed: %s", res.error)
        if on_result is not None:
            on_result(res)
    return results


def run_batch_backend(backend: str, inputs: Iterable[str | Path], out_dir: str | Path, *,
                      address: str | None = None, **kwargs: Any) -> list[BatchResult]:
    """`allocator batch --backend NAME`: the local batch, or the batch on Ray.

    Raises RayUnavailableError (before any work) for "ray" without Ray installed.
    """
    if backend == "local" and address is None:
        from allocator.batch import run_batch

        return run_batch(inputs, out_dir, **kwargs)
    with get_backend(backend, address=address) as b:
        return run_batch_on(b, inputs, out_dir, **kwargs)
