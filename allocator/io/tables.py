"""Snapshots from the tables users already have: `agents.csv` / `tasks.csv` (or Parquet).

Read with polars. One row per agent or task; the column names are the field
names of :class:`models.Agent` and :class:`models.Task`:

=================  ======  ==================================================
column             table   meaning
=================  ======  ==================================================
id                 both    required, unique
capacity.<r>       agents  capacity of resource `<r>` (one column per resource)
speed              agents  work units per time unit (default 1)
concurrency        agents  tasks run at once (default 1)
cost_rate          agents  cost per time unit (default 0)
status             agents  up, draining or down (default up)
skills             both    list: "python;sql" (agents have, tasks need)
labels             agents  map: "zone=eu-1a;tier=gold"
work               tasks   size (default 1); duration = work / speed
demand.<r>         tasks   demand of resource `<r>`
priority           tasks   critical, high, normal, low (default normal)
release, deadline  tasks   times; hard_deadline true/false
allowed_agents     tasks   list of agent ids (empty cell: any agent)
forbidden_agents   tasks   list of agent ids
current_agent      tasks   agent the task runs on now (for rebalancing)
progress           tasks   fraction done, 0..1
migration_cost     tasks   overrides the default migration cost
tenant             tasks   free text
=================  ======  ==================================================

Lists are delimited strings (`sep`, default ";"; a Parquet list column works
too); maps are `key=value` pairs with the same delimiter. An empty cell means
"not given" (the model's default). An unknown column is an error naming it,
so a typo never disappears silently. Everything else of a Snapshot (name,
time, weights, options, migration policy) comes from an optional
`snapshot.json` next to the tables, without `agents` or `tasks`.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import ValidationError

from allocator.errors import InvalidInputError
from allocator.io import strict_json
from allocator.io.snapshots import (
    _FILE_MODE,
    parse_snapshot,
    read_snapshot,
    validation_message,
)
from models import Agent, Plan, Snapshot, Task

#: Default delimiter of list and map cells (a comma would clash with CSV).
LIST_SEP = ";"

TABLE_EXTS = (".csv", ".parquet")
SETTINGS_FILE = "snapshot.json"

_AGENT_SCALARS = {"id", "speed", "concurrency", "cost_rate", "status"}
_AGENT_LISTS = {"skills"}
_TASK_SCALARS = {"id", "work", "priority", "release", "deadline", "hard_deadline",
                 "current_agent", "progress", "migration_cost", "tenant"}
_TASK_LISTS = {"skills", "allowed_agents", "forbidden_agents"}


def read_frame(path: str | Path) -> pl.DataFrame:
    """A CSV (every column read as text) or Parquet file as a polars DataFrame."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError("no such file", field=str(p))
    try:
        if p.suffix.lower() == ".parquet":
            return pl.read_parquet(p)
        if p.suffix.lower() == ".csv":
            return pl.read_csv(p, infer_schema_length=0)
    except (pl.exceptions.PolarsError, OSError) as e:
        raise InvalidInputError(f"cannot read table: {str(e).splitlines()[0]}",
                                field=str(p)) from None
    raise InvalidInputError(f"unknown table format {p.suffix!r}; use .csv or .parquet",
                            field=str(p))


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def _split(v: Any, sep: str) -> list[str]:
    if isinstance(v, list | tuple):
        return [str(x).strip() for x in v if not _blank(x)]
    return [x.strip() for x in str(v).split(sep) if x.strip()]


def _pairs(v: Any, sep: str, where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in _split(v, sep):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise InvalidInputError(f"expected key=value, got {item!r}", field=where)
        out[key.strip()] = value.strip()
    return out


def _number(v: Any, where: str) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        raise InvalidInputError(f"not a number: {v!r}", field=where) from None


def _rows(frame: pl.DataFrame, *, table: str, scalars: set[str], lists: set[str],
          maps: set[str], prefixed: str, build: Callable[[dict[str, Any]], Any],
          sep: str) -> list[Any]:
    known = scalars | lists | maps
    for col in frame.columns:
        if col not in known and not col.startswith(prefixed + "."):
            raise InvalidInputError(
                f"unknown column {col!r} (known: {', '.join(sorted(known))}, "
                f"{prefixed}.<resource>)", field=table)
    if "id" not in frame.columns:
        raise InvalidInputError("missing required column 'id'", field=table)
    out = []
    for k, row in enumerate(frame.iter_rows(named=True), start=1):
        where = f"{table} row {k}"
        data: dict[str, Any] = {}
        res: dict[str, float] = {}
        for col, v in row.items():
            if _blank(v) or (isinstance(v, list) and not v):
                continue
            if col in lists:
                data[col] = _split(v, sep)
            elif col in maps:
                data[col] = _pairs(v, sep, f"{where}.{col}")
            elif col.startswith(prefixed + "."):
                res[col[len(prefixed) + 1:]] = _number(v, f"{where}.{col}")
            else:
                data[col] = v.strip() if isinstance(v, str) else v
        if res:
            data[prefixed] = res
        try:
            out.append(build(data))
        except ValidationError as e:
            loc, msg = validation_message(e)
            ident = data.get("id")
            raise InvalidInputError(msg, field=f"{where} (id {ident!r}).{loc}") from None
    return out


def read_tables(agents: str | Path, tasks: str | Path, *, settings: dict[str, Any] | None = None,
                sep: str = LIST_SEP) -> Snapshot:
    """Build a Snapshot from an agents table and a tasks table (see the module docstring)."""
    a_frame, t_frame = read_frame(agents), read_frame(tasks)
    agent_rows = _rows(a_frame, table=str(agents), scalars=_AGENT_SCALARS, lists=_AGENT_LISTS,
                       maps={"labels"}, prefixed="capacity", build=Agent.model_validate,
                       sep=sep)
    task_rows = _rows(t_frame, table=str(tasks), scalars=_TASK_SCALARS, lists=_TASK_LISTS,
                      maps=set(), prefixed="demand", build=Task.model_validate, sep=sep)
    payload = dict(settings or {})
    for key in ("agents", "tasks"):
        if key in payload:
            raise InvalidInputError(f"settings must not contain {key!r} (it comes from the "
                                    "tables)", field=SETTINGS_FILE)
    payload["agents"] = [a.model_dump() for a in agent_rows]
    payload["tasks"] = [t.model_dump() for t in task_rows]
    return parse_snapshot(payload, source=f"{agents} + {tasks}")


def _find(directory: Path, stem: str) -> Path | None:
    found = [directory / f"{stem}{ext}" for ext in TABLE_EXTS if (directory / f"{stem}{ext}")
             .is_file()]
    if len(found) > 1:
        raise InvalidInputError(f"both {found[0].name} and {found[1].name}; keep one",
                                field=str(directory))
    return found[0] if found else None


def is_table_dir(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and any((p / f"tasks{ext}").is_file() for ext in TABLE_EXTS)


def read_table_dir(directory: str | Path, *, sep: str = LIST_SEP) -> Snapshot:
    """A directory with agents.csv|parquet, tasks.csv|parquet and optional snapshot.json."""
    d = Path(directory)
    agents, tasks = _find(d, "agents"), _find(d, "tasks")
    if agents is None or tasks is None:
        missing = "agents" if agents is None else "tasks"
        raise InvalidInputError(f"no {missing}.csv or {missing}.parquet", field=str(d))
    settings: dict[str, Any] | None = None
    sp = d / SETTINGS_FILE
    if sp.is_file():
        try:
            settings = strict_json.loads(sp.read_text(encoding="utf-8"))
        except strict_json.DuplicateKeyError as e:
            raise InvalidInputError(f"duplicate key {e.key!r} (a JSON object must not repeat "
                                    "a key)", field=f"{sp}: {e.path}") from None
        except json.JSONDecodeError as e:
            raise InvalidInputError(f"invalid JSON at line {e.lineno}: {e.msg}",
                                    field=str(sp)) from None
        if not isinstance(settings, dict):
            raise InvalidInputError("expected a JSON object", field=str(sp))
    return read_tables(agents, tasks, settings=settings, sep=sep)


def read_input(path: str | Path) -> Snapshot:
    """A snapshot from a JSON file or a directory of tables."""
    p = Path(path)
    if p.is_dir():
        return read_table_dir(p)
    if p.suffix.lower() == ".json":
        return read_snapshot(p)
    if not p.exists():
        raise InvalidInputError("no such file or directory", field=str(p))
    raise InvalidInputError("expected a snapshot .json or a directory with agents/tasks tables",
                            field=str(p))


def assignments_frame(plan: Plan) -> pl.DataFrame:
    """One row per task: task, agent (null when unassigned), start, end, reason."""
    rows: list[dict[str, Any]] = [
        {"task": a.task, "agent": a.agent, "start": a.start, "end": a.end, "reason": None}
        for a in plan.assignments
    ]
    rows += [{"task": u.task, "agent": None, "start": None, "end": None, "reason": u.reason}
             for u in plan.unassigned]
    schema = {"task": pl.String, "agent": pl.String, "start": pl.Float64, "end": pl.Float64,
              "reason": pl.String}
    return pl.DataFrame(rows, schema=schema)


def write_frame_atomic(frame: pl.DataFrame, path: str | Path) -> None:
    """Write CSV or Parquet (by extension) so readers never see half a file."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in TABLE_EXTS:
        raise InvalidInputError(f"unknown table format {ext!r}; use .csv or .parquet",
                                field=str(p))
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if ext == ".csv":
            frame.write_csv(tmp)
        else:
            frame.write_parquet(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
