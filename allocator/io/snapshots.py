"""Snapshot and plan files (JSON). Errors name the file and the field."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from allocator.errors import InvalidInputError
from allocator.io import strict_json
from models import Plan, Snapshot

#: Refuse files larger than this before parsing them (bytes); a snapshot of
#: 100k tasks is ~30 MB of JSON.
MAX_FILE_BYTES = 512 * 1024 * 1024


def validation_message(err: ValidationError) -> tuple[str, str]:
    """(field path, message) of the first error, for a typed InvalidInputError."""
    e = err.errors()[0]
    loc = ".".join(str(x) for x in e["loc"]) or "(root)"
    msg = str(e["msg"]).removeprefix("Value error, ")
    if err.error_count() > 1:
        msg += f" (and {err.error_count() - 1} more error(s))"
    return loc, msg


def parse_snapshot(data: Any, *, source: str = "snapshot") -> Snapshot:
    """Validate a decoded JSON object as a Snapshot, raising InvalidInputError.

    The numbers are held to the models' limits here too
    (:func:`allocator.limits.check_magnitudes`, the API's check), so a file the
    CLI takes is a body the API takes.
    """
    from allocator.limits import check_magnitudes

    try:
        snap = Snapshot.model_validate(data)
    except ValidationError as e:
        loc, msg = validation_message(e)
        raise InvalidInputError(msg, field=f"{source}: {loc}") from None
    check_magnitudes(snap, prefix=source, sep=": ")
    return snap


def _read_json(path: str | Path) -> Any:
    p = Path(path)
    if not p.is_file():
        what = "no such file" if not p.exists() else (
            "a directory, not a file" if p.is_dir() else "not a regular file")
        raise InvalidInputError(what, field=str(p))
    if p.stat().st_size > MAX_FILE_BYTES:
        raise InvalidInputError(f"file larger than {MAX_FILE_BYTES} bytes", field=str(p))
    try:
        return strict_json.loads(p.read_text(encoding="utf-8"))
    except strict_json.DuplicateKeyError as e:
        raise InvalidInputError(f"duplicate key {e.key!r} (a JSON object must not repeat a "
                                "key)", field=f"{p}: {e.path}") from None
    except json.JSONDecodeError as e:
        raise InvalidInputError(f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}",
                                field=str(p)) from None
    except UnicodeDecodeError:
        raise InvalidInputError("not UTF-8 text", field=str(p)) from None
    except RecursionError:
        raise InvalidInputError("JSON nested too deeply to read", field=str(p)) from None
    except ValueError as e:  # e.g. an integer beyond Python's 4300-digit conversion limit
        raise InvalidInputError(f"unreadable JSON: {' '.join(str(e).split())}",
                                field=str(p)) from None


def read_snapshot(path: str | Path) -> Snapshot:
    """Read a snapshot JSON file."""
    return parse_snapshot(_read_json(path), source=str(path))


def read_plan(path: str | Path) -> Plan:
    data = _read_json(path)
    try:
        return Plan.model_validate(data)
    except ValidationError as e:
        loc, msg = validation_message(e)
        raise InvalidInputError(msg, field=f"{path}: {loc}") from None


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


#: Mode of files written atomically: what open() would have given them.
_FILE_MODE = _umask_mode()


def write_json_atomic(path: str | Path, payload: str) -> None:
    """Write text so readers see the old file or the new one, never half of one."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)  # mkstemp creates 0600; give the usual umask mode
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dump_model(model: BaseModel) -> str:
    return model.model_dump_json(indent=2, by_alias=True, exclude_none=False) + "\n"


def write_plan(path: str | Path, plan: Plan) -> None:
    write_json_atomic(path, dump_model(plan))
