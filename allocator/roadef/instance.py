"""ROADEF/EURO 2012 machine reassignment instances: read the model and assignment
files of the challenge into arrays, write an assignment back.

The files are whitespace-separated integers (format in data/roadef/A/README.md).
A set-B model holds an M x M move-cost matrix (25 million integers for 5,000
machines), so the file is parsed with numpy in one pass, never split into
Python strings; the slow line-by-line scan only runs to name the line of an
error. Every malformed file raises `RoadefFormatError` naming the file, the
field and the line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from allocator.errors import InvalidInputError

#: A token is an optional minus and at most 18 digits (fits int64); anything
#: else (letters, dots, a lone or trailing minus, longer numbers) is an error.
_BAD = re.compile(rb"[^0-9\s-]|-(?![0-9])|[0-9]-|[0-9]{19,}")


class RoadefFormatError(InvalidInputError):
    """A ROADEF model, assignment or solution file that does not follow the format."""

    def __init__(self, path: Path | str, message: str, *, field: str | None = None,
                 line: int | None = None) -> None:
        where = f"{path}" + (f", line {line}" if line is not None else "")
        self.path = str(path)
        self.line = line
        # The message already names the field; the base class would repeat it.
        super().__init__(f"{where}: {message}")
        self.field = field


@dataclass(frozen=True)
class Balance:
    """Balance objective: weight * sum_m max(0, target * free(r1) - free(r2))."""

    r1: int
    r2: int
    target: int
    weight: int


@dataclass(frozen=True, eq=False)
class RoadefInstance:
    """One machine reassignment instance as arrays (index order = file order).

    `machine_move_cost` is int32 when every entry fits (it is the one
    quadratic array: 100 MB instead of 200 MB for 5,000 machines); cost sums
    are taken in int64.
    """

    name: str
    transient: np.ndarray  # bool[R]
    load_weight: np.ndarray  # int64[R]
    neighbourhood: np.ndarray  # int64[M]
    location: np.ndarray  # int64[M]
    capacity: np.ndarray  # int64[M,R]
    safety: np.ndarray  # int64[M,R]
    machine_move_cost: np.ndarray  # int32 or int64 [M,M]
    spread_min: np.ndarray  # int64[S]
    dependencies: tuple[tuple[int, ...], ...]  # per service: services it depends on
    service: np.ndarray  # int64[P]
    requirement: np.ndarray  # int64[P,R]
    process_move_cost: np.ndarray  # int64[P]
    balances: tuple[Balance, ...]
    weight_process_move: int
    weight_service_move: int
    weight_machine_move: int
    initial: np.ndarray  # int64[P] initial machine per process

    @property
    def n_resources(self) -> int:
        return int(self.transient.shape[0])

    @property
    def n_machines(self) -> int:
        return int(self.capacity.shape[0])

    @property
    def n_services(self) -> int:
        return int(self.spread_min.shape[0])

    @property
    def n_processes(self) -> int:
        return int(self.service.shape[0])

    @property
    def n_locations(self) -> int:
        return int(self.location.max()) + 1 if self.location.size else 0

    @property
    def n_neighbourhoods(self) -> int:
        return int(self.neighbourhood.max()) + 1 if self.neighbourhood.size else 0


# -- reading ------------------------------------------------------------------


def _line_of_token(data: bytes, index: int) -> int:
    """1-based line of the `index`-th token (0-based); only used to report errors."""
    seen = 0
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        n = len(raw.split())
        if seen + n > index:
            return lineno
        seen += n
    return data.count(b"\n") + 1


def _tokens(path: Path) -> tuple[bytes, np.ndarray]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RoadefFormatError(path, "file not found") from None
    except OSError as exc:
        raise RoadefFormatError(path, f"cannot read: {exc.strerror or exc}") from None
    bad = _BAD.search(data)
    if bad is not None:
        start = data.rfind(b"\n", 0, bad.start()) + 1
        end = data.find(b"\n", bad.start())
        line_text = data[start:end if end >= 0 else len(data)]
        token = next((t for t in line_text.split() if _BAD.search(t + b" ")), line_text[:20])
        raise RoadefFormatError(
            path, f"not an integer: {token.decode(errors='replace')!r}",
            line=data.count(b"\n", 0, bad.start()) + 1)
    if not data.strip():
        return data, np.zeros(0, dtype=np.int64)
    # sep=" " matches any run of whitespace, newlines included.
    values = np.fromstring(data, dtype=np.int64, sep=" ")  # type: ignore[call-overload]
    return data, values


class _Cursor:
    """Reads named fields off the token array; errors name the field and line."""

    def __init__(self, path: Path, data: bytes, values: np.ndarray) -> None:
        self.path, self.data, self.values, self.pos = path, data, values, 0

    def _fail(self, field: str, message: str, index: int | None = None) -> RoadefFormatError:
        i = self.pos if index is None else index
        line = (_line_of_token(self.data, i) if i < len(self.values)
                else self.data.count(b"\n") + (0 if self.data.endswith(b"\n") else 1))
        return RoadefFormatError(self.path, f"{field}: {message}", field=field, line=line)

    def take(self, n: int, field: str, *, lo: int | None = 0, hi: int | None = None) -> np.ndarray:
        if self.pos + n > len(self.values):
            raise self._fail(field, f"file ends after {len(self.values)} numbers, "
                                    f"expected {n} more here", index=len(self.values))
        out = self.values[self.pos:self.pos + n]
        if lo is not None and n and out.min() < lo:
            raise self._fail(field, f"{int(out.min())} is below {lo}",
                             self.pos + int(np.argmin(out)))
        if hi is not None and n and out.max() > hi:
            raise self._fail(field, f"{int(out.max())} is above {hi}",
                             self.pos + int(np.argmax(out)))
        self.pos += n
        return out

    def one(self, field: str, *, lo: int | None = 0, hi: int | None = None) -> int:
        return int(self.take(1, field, lo=lo, hi=hi)[0])

    def end(self, field: str) -> None:
        if self.pos != len(self.values):
            raise self._fail(field, f"{len(self.values) - self.pos} unexpected numbers "
                                    "after the last field")


#: Sizes above these are not a machine reassignment instance but a broken file
#: (set B's largest: 50,000 processes, 5,000 machines, 12 resources).
_MAX_R, _MAX_M, _MAX_P = 1_000, 100_000, 10_000_000


def read_model(path: Path | str, name: str | None = None) -> tuple[dict[str, Any], int]:
    """Parse a model file into the RoadefInstance fields (without `initial`) and P."""
    path = Path(path)
    data, values = _tokens(path)
    c = _Cursor(path, data, values)
    R = c.one("resources", lo=1, hi=_MAX_R)
    res = c.take(2 * R, "resource (transient weightLoadCost)").reshape(R, 2)
    if res[:, 0].max() > 1:
        raise c._fail("resource transient", "must be 0 or 1", c.pos - 2 * R)
    M = c.one("machines", lo=1, hi=_MAX_M)
    width = 2 + 2 * R + M
    mach = c.take(M * width, "machine (neighbourhood location capacity[R] safety[R] "
                             "moveCost[M])").reshape(M, width)
    move = mach[:, 2 + 2 * R:]
    if move.max(initial=0) <= np.iinfo(np.int32).max:
        move = move.astype(np.int32)
    else:
        move = np.ascontiguousarray(move)
    S = c.one("services", lo=0, hi=_MAX_P)
    spread = np.zeros(S, dtype=np.int64)
    deps: list[tuple[int, ...]] = []
    for s in range(S):
        spread[s] = c.one(f"service {s} spreadMin", hi=None)
        k = c.one(f"service {s} number of dependencies", hi=S)
        deps.append(tuple(int(d) for d in c.take(k, f"service {s} dependencies", hi=S - 1)))
    P = c.one("processes", lo=0, hi=_MAX_P)
    proc = c.take(P * (R + 2), "process (service requirement[R] processMoveCost)")
    proc = proc.reshape(P, R + 2)
    if P and (proc[:, 0].max() >= S):
        bad = int(np.argmax(proc[:, 0] >= S))
        raise c._fail(f"process {bad} service",
                      f"service {int(proc[bad, 0])} does not exist ({S} services)",
                      c.pos - (P - bad) * (R + 2))
    B = c.one("balance objectives", hi=_MAX_R * _MAX_R)
    balances = []
    for b in range(B):
        r1 = c.one(f"balance {b} r1", hi=R - 1)
        r2 = c.one(f"balance {b} r2", hi=R - 1)
        target = c.one(f"balance {b} target")
        weight = c.one(f"balance {b} weight")
        balances.append(Balance(r1, r2, target, weight))
    wpm = c.one("weightProcessMove")
    wsm = c.one("weightServiceMove")
    wmm = c.one("weightMachineMove")
    c.end("weights (last line)")
    fields: dict[str, Any] = dict(
        name=name if name is not None else instance_name(path),
        transient=res[:, 0].astype(bool), load_weight=res[:, 1].copy(),
        neighbourhood=mach[:, 0].copy(), location=mach[:, 1].copy(),
        capacity=np.ascontiguousarray(mach[:, 2:2 + R]),
        safety=np.ascontiguousarray(mach[:, 2 + R:2 + 2 * R]),
        machine_move_cost=move, spread_min=spread, dependencies=tuple(deps),
        service=proc[:, 0].copy(), requirement=np.ascontiguousarray(proc[:, 1:R + 1]),
        process_move_cost=proc[:, R + 1].copy(), balances=tuple(balances),
        weight_process_move=wpm, weight_service_move=wsm, weight_machine_move=wmm)
    return fields, P


def read_assignment(path: Path | str, n_processes: int, n_machines: int) -> np.ndarray:
    """Parse an assignment (or solution) file: one machine index per process, 0-based."""
    path = Path(path)
    data, values = _tokens(path)
    c = _Cursor(path, data, values)
    if len(values) != n_processes:
        raise RoadefFormatError(
            path, f"{len(values)} machine indices for {n_processes} processes",
            field="assignment")
    out = c.take(n_processes, "assignment machine", hi=n_machines - 1)
    return out.astype(np.int64, copy=True)


def read_instance(model: Path, assignment: Path, name: str | None = None) -> RoadefInstance:
    """Read a model file and its initial assignment into a RoadefInstance."""
    fields, P = read_model(model, name)
    initial = read_assignment(assignment, P, len(fields["neighbourhood"]))
    return RoadefInstance(initial=initial, **fields)


def instance_name(model: Path | str) -> str:
    """`model_a1_1.txt` -> `a1_1` (other names: the file stem)."""
    stem = Path(model).stem
    return stem[len("model_"):] if stem.startswith("model_") else stem


def assignment_path(model: Path | str) -> Path:
    """The initial assignment beside a model: model_a1_1.txt -> assignment_a1_1.txt."""
    model = Path(model)
    if not model.name.startswith("model_"):
        raise RoadefFormatError(model, "cannot find the assignment file: the model file "
                                       "is not named model_<instance>.txt", field="model")
    return model.with_name("assignment_" + model.name[len("model_"):])


# -- writing ------------------------------------------------------------------


def write_assignment(path: Path, assignment: np.ndarray) -> None:
    """Write a solution in the challenge format (machine indices on one line), atomically."""
    path = Path(path)
    a = np.asarray(assignment)
    if a.ndim != 1 or (a.size and (a.dtype.kind not in "iu" or a.min() < 0)):
        raise InvalidInputError("expected a 1-d array of machine indices >= 0",
                                field="assignment")
    text = " ".join(map(str, a.tolist())) + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_model(path: Path, inst: RoadefInstance) -> None:
    """Write `inst` as a challenge model file (the assignment: `write_assignment`)."""
    path = Path(path)
    R, M = inst.n_resources, inst.n_machines

    def row(values: np.ndarray) -> str:
        return " ".join(map(str, np.asarray(values).tolist()))

    lines = [str(R)]
    lines += [f"{int(inst.transient[r])} {int(inst.load_weight[r])}" for r in range(R)]
    lines.append(str(M))
    for m in range(M):
        lines.append(f"{int(inst.neighbourhood[m])} {int(inst.location[m])} "
                     f"{row(inst.capacity[m])} {row(inst.safety[m])} "
                     f"{row(inst.machine_move_cost[m])}")
    lines.append(str(inst.n_services))
    for s in range(inst.n_services):
        deps = inst.dependencies[s]
        lines.append(" ".join(map(str, [int(inst.spread_min[s]), len(deps), *deps])))
    lines.append(str(inst.n_processes))
    block = np.column_stack([inst.service, inst.requirement, inst.process_move_cost])
    lines += [row(r) for r in block]
    lines.append(str(len(inst.balances)))
    for b in inst.balances:
        lines += [f"{b.r1} {b.r2} {b.target}", str(b.weight)]
    lines.append(f"{inst.weight_process_move} {inst.weight_service_move} "
                 f"{inst.weight_machine_move}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
