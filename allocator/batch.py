"""Scheduled batch jobs: solve many inputs into a directory, or re-solve periodically.

:func:`run_batch` solves every input (a snapshot JSON or a directory of
tables, see allocator.io.tables) and writes, per input stem `S`:

* `S.plan.json` - the plan;
* `S.assignments.csv` (or `.parquet`) - one row per task;
* `S.done.json` - the manifest, written last: the input's fingerprint, the
  solver and the plan's status.

Every file is written atomically (temporary file + rename), so a reader or
a crash never leaves half a file. An input whose manifest matches its
current fingerprint (and whose plan exists) is skipped unless `force`; a
crash before the manifest means the input is solved again next time. A bad
input is reported in its result and the others still run.

:class:`Watcher` is the periodic loop behind `allocator run --watch`: every
`every` seconds it picks the newest snapshot in a directory and, when it is
new or changed, re-solves it warm from the previous plan and writes the new
plan and its migrations. Time comes from an injectable :class:`Clock` (tests
use a fake one), and the loop stops between ticks when its stop event is set.

A watched input is taken only once it is complete: when a `NAME.ready` marker
exists next to it (for `NAME.json` or a table directory `NAME`; the writer
creates it after the input is written), or else when its size and
modification time (for a table directory, of every table in it) have not
changed for `settle` seconds and do not change while it is read. Writers that
can, should write to a hidden temporary and rename (hidden files are
ignored) or drop the marker; the settle time is for the ones that cannot.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from allocator.clock import MonotonicClock, SleepingClock
from allocator.engine import solve
from allocator.errors import AllocatorError, InvalidInputError
from allocator.io.snapshots import dump_model, read_plan, write_json_atomic
from allocator.io.tables import (
    TABLE_EXTS,
    assignments_frame,
    is_table_dir,
    read_input,
    write_frame_atomic,
)
from allocator.limits import check_time_limit
from allocator.validate import validate
from models import Plan, Snapshot

log = logging.getLogger(__name__)

TableFormat = Literal["csv", "parquet"]


# --------------------------------------------------------------------------- inputs


def input_stem(path: str | Path) -> str:
    """Output name of an input: the file name without `.json`, or the directory name."""
    p = Path(path)
    return p.name if p.is_dir() else p.name.removesuffix(p.suffix)


def fingerprint(path: str | Path) -> str:
    """sha256 over the input's bytes (every table file of a directory, by name)."""
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")) \
        if p.is_dir() else [p]
    for f in files:
        h.update(f.name.encode() + b"\0")
        h.update(f.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


# --------------------------------------------------------------------------- batch


@dataclass
class BatchResult:
    """What happened to one input: solved, skipped (already solved) or failed."""

    input: str
    stem: str
    outcome: Literal["solved", "skipped", "failed"]
    status: str | None = None
    objective: float | None = None
    assigned: int | None = None
    unassigned: int | None = None
    migrations: int | None = None
    valid: bool | None = None
    wall_s: float = 0.0
    error: str | None = None
    outputs: list[str] = field(default_factory=list)


def output_paths(out_dir: Path, stem: str, fmt: TableFormat) -> dict[str, Path]:
    return {"plan": out_dir / f"{stem}.plan.json",
            "assignments": out_dir / f"{stem}.assignments.{fmt}",
            "manifest": out_dir / f"{stem}.done.json"}


def already_solved(paths: dict[str, Path], digest: str) -> bool:
    m, plan = paths["manifest"], paths["plan"]
    if not (m.is_file() and plan.is_file() and paths["assignments"].is_file()):
        return False
    try:
        return bool(json.loads(m.read_text(encoding="utf-8")).get("fingerprint") == digest)
    except (OSError, json.JSONDecodeError, AttributeError):
        return False


def solve_one(path: Path, out_dir: Path, *, force: bool = False, fmt: TableFormat = "csv",
              solver: str | None = None, time_limit: float | None = None) -> BatchResult:
    """Solve one input into `out_dir` (see the module docstring); never raises on bad input."""
    stem = input_stem(path)
    res = BatchResult(input=str(path), stem=stem, outcome="failed")
    t0 = time.perf_counter()
    try:
        paths = output_paths(out_dir, stem, fmt)
        if not path.exists():
            raise InvalidInputError("no such file or directory", field=str(path))
        if not (path.is_file() or path.is_dir()):  # a FIFO blocks, /dev/zero never ends
            raise InvalidInputError("not a regular file or directory", field=str(path))
        digest = fingerprint(path)
        if not force and already_solved(paths, digest):
            res.outcome = "skipped"
            manifest = json.loads(paths["manifest"].read_text(encoding="utf-8"))
            res.status = manifest.get("status")
            res.objective = manifest.get("objective")
            res.outputs = [str(p) for p in paths.values()]
            return res
        snapshot = read_input(path)
        plan = solve(snapshot, solver=solver, time_limit=time_limit)
        violations = validate(snapshot, plan)
        write_frame_atomic(assignments_frame(plan), paths["assignments"])
        write_json_atomic(paths["plan"], dump_model(plan))
        manifest = {"input": str(path), "fingerprint": digest, "solver": plan.solver,
                    "status": str(plan.status), "objective": plan.objective,
                    "violations": len(violations)}
        write_json_atomic(paths["manifest"], json.dumps(manifest, indent=2) + "\n")
        res.outcome = "solved"
        res.status, res.objective = str(plan.status), plan.objective
        res.assigned, res.unassigned = len(plan.assignments), len(plan.unassigned)
        res.migrations, res.valid = len(plan.migrations), not violations
        res.outputs = [str(p) for p in paths.values()]
    except AllocatorError as e:
        res.error = str(e)
    except Exception as e:  # a crash on one input must not stop the others
        log.exception("batch input %s crashed", path)
        res.error = f"{path}: internal error: {type(e).__name__}: {e}"
    finally:
        res.wall_s = time.perf_counter() - t0
    return res


def check_overrides(solver: str | None, time_limit: float | None) -> None:
    """Refuse a bad --solver or --time-limit once, before any input (not once per input,
    nor at the first snapshot a watcher sees, minutes later)."""
    if solver is not None:
        from allocator.solvers import get_solver

        get_solver(solver)
    if time_limit is not None:
        check_time_limit(time_limit)


def run_batch(inputs: Iterable[str | Path], out_dir: str | Path, *, force: bool = False,
              fmt: TableFormat = "csv", solver: str | None = None,
              time_limit: float | None = None,
              on_result: Callable[[BatchResult], None] | None = None) -> list[BatchResult]:
    """Solve every input into `out_dir`; results in input order.

    Two inputs with the same stem would overwrite each other: the second is
    reported failed before anything runs.
    """
    if fmt not in ("csv", "parquet"):
        raise InvalidInputError(f"unknown format {fmt!r}; use csv or parquet", field="format")
    check_overrides(solver, time_limit)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seen: dict[str, str] = {}
    results: list[BatchResult] = []
    for raw in inputs:
        path = Path(raw)
        stem = input_stem(path)
        if stem in seen:
            res = BatchResult(input=str(path), stem=stem, outcome="failed",
                              error=f"{path}: same output name {stem!r} as {seen[stem]}")
        else:
            seen[stem] = str(path)
            res = solve_one(path, out, force=force, fmt=fmt, solver=solver,
                            time_limit=time_limit)
        if res.error:  # the result carries it; the caller reports it (the CLI once, on stderr)
            log.info("batch input failed: %s", res.error)
        results.append(res)
        if on_result is not None:
            on_result(res)
    return results


# --------------------------------------------------------------------------- periodic loop


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str, field: str = "every") -> float:
    """Seconds in "30s", "5m", "1h", "250ms" or a bare number of seconds (must be > 0)."""
    m = _DURATION.match(text)
    if not m or float(m.group(1)) <= 0:
        raise InvalidInputError(f"expected a positive duration like 30s, 5m, 1h; got {text!r}",
                                field=field)
    return float(m.group(1)) * _UNIT[m.group(2)]


def latest_input(directory: Path, *, exclude: Path | None = None) -> Path | None:
    """The newest snapshot in `directory`: a `.json` file or a table directory.

    Newest by modification time, ties broken by name; hidden files (the
    atomic writers' temporaries) and `exclude` (the output directory) are
    ignored.
    """
    cands: list[tuple[float, str, Path]] = []
    for p in directory.iterdir():
        if p.name.startswith(".") or (exclude is not None and p.resolve() == exclude.resolve()):
            continue
        if (p.is_file() and p.suffix.lower() == ".json") or is_table_dir(p):
            newest = p.stat().st_mtime
            if p.is_dir():
                newest = max([newest] + [f.stat().st_mtime for f in p.iterdir()
                                         if f.suffix.lower() in TABLE_EXTS])
            cands.append((newest, p.name, p))
    return max(cands)[2] if cands else None


def input_signature(path: Path) -> tuple[int, float] | None:
    """(total size, newest modification time) of an input file or table directory."""
    try:
        if path.is_dir():
            files = [f for f in path.iterdir() if f.is_file() and not f.name.startswith(".")]
            stats = [f.stat() for f in files]
            return (sum(s.st_size for s in stats),
                    max([path.stat().st_mtime, *(s.st_mtime for s in stats)]))
        st = path.stat()
        return st.st_size, st.st_mtime
    except OSError:  # removed between the listing and the look
        return None


@dataclass
class Tick:
    """One iteration of the loop and what it did."""

    seq: int
    at: float
    action: Literal["solved", "unchanged", "no-input", "failed", "incomplete"]
    input: str | None = None
    plan: str | None = None
    migrations: int | None = None
    warm: bool = False
    status: str | None = None
    error: str | None = None


class Watcher:
    """Re-solve the newest snapshot of `watch` every `every` seconds, warm from the last plan.

    Outputs in `out`: `plan-NNNNN.json` and `migrations-NNNNN.json` per solve
    (NNNNN counts solves across restarts), and `latest.plan.json`, which is also
    read at start so a restarted loop stays warm. The last migrations file keeps
    the input's sha256, so a restarted loop does not solve an unchanged input
    again; `solves` counts this run's solves only.
    """

    def __init__(self, watch: str | Path, out: str | Path, *, every: float,
                 clock: SleepingClock | None = None, solver: str | None = None,
                 time_limit: float | None = None,
                 on_tick: Callable[[Tick], None] | None = None, settle: float = 0.0,
                 wall: Callable[[], float] = time.time) -> None:
        if not every > 0:
            raise InvalidInputError(f"must be > 0, got {every}", field="every")
        self.watch, self.out = Path(watch), Path(out)
        if not self.watch.is_dir():
            raise InvalidInputError("not a directory", field=str(self.watch))
        self.every = float(every)
        if not settle >= 0:
            raise InvalidInputError(f"must be >= 0, got {settle}", field="settle")
        check_overrides(solver, time_limit)
        self.settle, self.wall = float(settle), wall
        self.clock: SleepingClock = clock or MonotonicClock()
        self.solver, self.time_limit, self.on_tick = solver, time_limit, on_tick
        self.previous: Plan | None = None
        self.last_digest: str | None = None
        self.solves = 0  # this run's
        self.numbered = 0  # the last NNNNN in `out`, from earlier runs too
        self.ticks: list[Tick] = []
        latest = self.out / "latest.plan.json"
        if latest.is_file():
            try:
                self.previous = read_plan(latest)
            except AllocatorError as e:
                log.warning("ignoring unreadable previous plan: %s", e)
        existing = sorted(self.out.glob("plan-*.json"))
        if existing:
            m = re.match(r"plan-(\d+)\.json", existing[-1].name)
            self.numbered = int(m.group(1)) if m else 0
        self.last_digest = self._last_input_digest()

    def _last_input_digest(self) -> str | None:
        """sha256 of the input the previous run solved last (None if unknown)."""
        path = self.out / f"migrations-{self.numbered:05d}.json"
        if self.previous is None or not path.is_file():
            return None
        try:
            digest = json.loads(path.read_text()).get("input_sha256")
        except (OSError, ValueError, AttributeError):
            return None
        return digest if isinstance(digest, str) else None

    def tick(self) -> Tick:
        """Look once: solve the newest snapshot if it is new or changed."""
        now = self.clock.now()
        seq = len(self.ticks) + 1
        path = latest_input(self.watch, exclude=self.out)
        t = Tick(seq, now, "no-input") if path is None else self._solve(seq, now, path)
        self.ticks.append(t)
        if self.on_tick is not None:
            self.on_tick(t)
        return t

    def _complete(self, path: Path) -> bool:
        """Whether `path` is whole: its `.ready` marker, or unchanged for `settle` seconds."""
        if path.with_name(path.name + ".ready").exists():
            return True
        sig = input_signature(path)
        return sig is not None and self.wall() - sig[1] >= self.settle

    def _solve(self, seq: int, now: float, path: Path) -> Tick:
        try:
            if not self._complete(path):
                return Tick(seq, now, "incomplete", input=str(path))
            before = input_signature(path)
            digest = fingerprint(path)
            if digest == self.last_digest:
                return Tick(seq, now, "unchanged", input=str(path))
            snapshot: Snapshot = read_input(path)
            if input_signature(path) != before:  # written to while we read it
                return Tick(seq, now, "incomplete", input=str(path))
            warm = self.previous is not None
            plan = solve(snapshot, solver=self.solver, time_limit=self.time_limit,
                         previous=self.previous)
        except AllocatorError as e:
            log.info("watch: %s", e)  # in the Tick; `run --watch` prints it
            return Tick(seq, now, "failed", input=str(path), error=str(e))
        except Exception as e:  # keep the loop alive; the next tick may succeed
            log.exception("watch: solving %s crashed", path)
            return Tick(seq, now, "failed", input=str(path),
                        error=f"internal error: {type(e).__name__}: {e}")
        self.solves += 1
        self.numbered += 1
        n = f"{self.numbered:05d}"
        plan_path = self.out / f"plan-{n}.json"
        moves = [m.model_dump(by_alias=True) for m in plan.migrations]
        write_json_atomic(self.out / f"migrations-{n}.json", json.dumps(
            {"input": str(path), "input_sha256": digest, "time": snapshot.time, "warm": warm,
             "migrations": moves},
            indent=2) + "\n")
        write_json_atomic(plan_path, dump_model(plan))
        write_json_atomic(self.out / "latest.plan.json", dump_model(plan))
        self.previous, self.last_digest = plan, digest
        return Tick(seq, now, "solved", input=str(path), plan=str(plan_path),
                    migrations=len(moves), warm=warm, status=str(plan.status))

    def run(self, stop: threading.Event, *, max_ticks: int | None = None) -> list[Tick]:
        """Tick at start, then every `every` seconds, until `stop` is set (or `max_ticks`).

        A tick that overruns its period starts the next one at once (missed
        ticks are skipped, not queued).
        """
        self.out.mkdir(parents=True, exist_ok=True)
        start = len(self.ticks)
        next_at = self.clock.now()
        while not stop.is_set():
            self.tick()
            if max_ticks is not None and len(self.ticks) - start >= max_ticks:
                break
            next_at += self.every
            now = self.clock.now()
            if next_at < now:
                next_at = now
            self.clock.sleep(next_at - now, stop)
        return self.ticks[start:]
