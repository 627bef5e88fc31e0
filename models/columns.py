"""Column types of :class:`models.TaskTable`: numbers as numpy arrays, lists as codes.

A million tasks as a million validated pydantic objects take about 1.4 GB;
the same fields as columns take tens of MB and are checked with a handful of
vectorised passes. Each converter here takes what users have (a Python list,
a numpy array, a polars / pandas column) and either returns the column or
raises ValueError naming the first bad row: ``work[17] must be a finite
number >= 0, got nan``. No I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _frozen(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr


def float_column(value: Any, name: str, *, optional: bool = False,
                 upper: float | None = None) -> np.ndarray:
    """[n] float64 copy of `value`, every entry finite and >= 0 (and <= `upper`).

    With `optional`, None entries mean "not given" and are stored as NaN (a
    NaN *given* is still an error, as it is in :class:`models.Task`).
    """
    missing: np.ndarray | None = None
    if isinstance(value, np.ndarray) and value.dtype.kind in "fiu":
        arr = np.array(value, dtype=float)
    else:
        if isinstance(value, str | bytes | dict) or not isinstance(value, Iterable):
            raise ValueError(f"{name} must be a list of numbers")
        items = list(value)
        if optional:
            missing = np.fromiter((v is None for v in items), dtype=bool, count=len(items))
            if missing.any():
                items = [0.0 if v is None else v for v in items]
            else:
                missing = None
        for j, v in enumerate(items):
            if isinstance(v, bool) or not isinstance(v, int | float | np.number):
                raise ValueError(f"{name}[{j}] must be a number, got {v!r}")
        arr = np.array(items, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        j = _first(bad)
        raise ValueError(f"{name}[{j}] must be a finite number, got {float(arr[j])!r}")
    if arr.size and arr.min() < 0:
        j = _first(arr < 0)
        raise ValueError(f"{name}[{j}] must be greater than or equal to 0, got {float(arr[j])!r}")
    if upper is not None and arr.size and arr.max() > upper:
        j = _first(arr > upper)
        raise ValueError(f"{name}[{j}] must be <= {upper}, got {float(arr[j])!r}")
    if missing is not None:
        arr[missing] = np.nan
    return _frozen(arr)


def bool_column(value: Any, name: str) -> np.ndarray:
    """[n] bool copy of `value` (Python or numpy booleans only: 1 is not a boolean)."""
    if isinstance(value, np.ndarray) and value.dtype == bool:
        arr = value.copy()
    else:
        if isinstance(value, str | bytes | dict) or not isinstance(value, Iterable):
            raise ValueError(f"{name} must be a list of booleans")
        items = list(value)
        for j, v in enumerate(items):
            if not isinstance(v, bool | np.bool_):
                raise ValueError(f"{name}[{j}] must be a boolean, got {v!r}")
        arr = np.array(items, dtype=bool)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return _frozen(arr)


def column_list(column: np.ndarray) -> list[float | None]:
    """A float column as JSON-ready values (NaN, i.e. "not given", as None)."""
    out: list[float | None] = column.tolist()
    if np.isnan(column).any():
        for j in np.flatnonzero(np.isnan(column)).tolist():
            out[j] = None
    return out


@dataclass(frozen=True, eq=False)
class Coded:
    """A column of string lists stored as one code per row into its distinct lists.

    Rows are kept exactly as given (order and repeats), so a row reads back
    as the list that was put in. ``values[codes[j]]`` is row j; a None value
    is "no list" (allowed_agents: any agent).
    """

    codes: np.ndarray  # [n] int64
    values: tuple[tuple[str, ...] | None, ...]

    def __len__(self) -> int:
        return int(self.codes.size)

    def __getitem__(self, j: int) -> list[str] | None:
        v = self.values[int(self.codes[j])]
        return None if v is None else list(v)

    def tolist(self) -> list[list[str] | None]:
        rows = [None if v is None else list(v) for v in self.values]
        return [rows[c] for c in self.codes.tolist()]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Coded) and self.tolist() == other.tolist()

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def of(cls, codes: Sequence[int] | np.ndarray,
           values: Sequence[Sequence[str] | None]) -> Coded:
        """Rows given already coded: row j is ``values[codes[j]]`` (no per-row pass)."""
        vals = tuple(None if v is None else tuple(v) for v in values)
        arr = np.array(codes, dtype=np.int64)
        if arr.ndim != 1:
            raise ValueError(f"codes must be one-dimensional, got shape {arr.shape}")
        if arr.size and (arr.min() < 0 or arr.max() >= len(vals)):
            j = _first((arr < 0) | (arr >= len(vals)))
            raise ValueError(f"codes[{j}] = {arr[j]} is not an index into the {len(vals)} values")
        return cls(_frozen(arr), vals)


def list_column(value: Any, name: str, *, allow_none: bool) -> Coded:
    """A column of string lists: each row a list of strings (a lone string is a list of one).

    With `allow_none`, a None row is "no list"; otherwise None is the empty list.
    """
    rows_in: Iterable[Any]
    if isinstance(value, Coded):
        if not allow_none and None in value.values:
            value = Coded(value.codes, tuple(() if v is None else v for v in value.values))
        if all(v is None or all(isinstance(s, str) for s in v) for v in value.values):
            return value
        rows_in = value.tolist()
    elif isinstance(value, str | bytes | dict) or not isinstance(value, Iterable):
        raise ValueError(f"{name} must be a list with one list of strings per task")
    else:
        rows_in = value
    index: dict[tuple[str, ...] | None, int] = {}
    codes: list[int] = []
    for j, row in enumerate(rows_in):
        key: tuple[str, ...] | None
        if row is None:
            key = None if allow_none else ()
        elif isinstance(row, str):
            key = (row,)
        elif isinstance(row, bytes | dict) or not isinstance(row, Iterable):
            raise ValueError(f"{name}[{j}] must be a list of strings, got {row!r}")
        else:
            key = tuple(row)
            for s in key:
                if not isinstance(s, str):
                    raise ValueError(f"{name}[{j}] must be a list of strings, got {row!r}")
        code = index.get(key)
        if code is None:
            code = index[key] = len(index)
        codes.append(code)
    return Coded(_frozen(np.array(codes, dtype=np.int64)), tuple(index))
