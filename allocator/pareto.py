"""Pareto fronts: building them from assignments, the exact reference, quality, choosing a plan.

* :func:`build_front` turns candidate assignments into a ParetoFront of real
  Plans (via ``make_plan``); objective values are re-read from each plan's
  breakdown, i.e. computed by allocator.objectives, and only mutually
  non-dominated plans are kept.
* The exact bi-objective front (an epsilon-constraint sweep) is a solve and
  lives in :mod:`allocator.solvers.exact_front`.
* :func:`hypervolume` (pymoo's HV) and :func:`igd_plus` (pymoo's IGD+) measure
  a front in a space normalised by a stated ideal and nadir point; the
  reference point is ``nadir + REF_MARGIN * (nadir - ideal)``, i.e.
  ``1 + REF_MARGIN`` in every normalised coordinate.
* :func:`pick` chooses one plan: ``knee``, ``weights:cost=1,makespan=2`` or
  ``min:cost,makespan<=40``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.indicators.igd_plus import IGDPlus

from allocator.errors import InvalidInputError
from allocator.problem import Problem
from models import PARETO_OBJECTIVES, ParetoFront, ParetoPoint, PlanStatus

if TYPE_CHECKING:  # solvers import this module; import them lazily to avoid a cycle
    from allocator.solvers.base import Budget

#: Distance of the hypervolume reference point beyond the nadir, as a share of
#: the ideal-to-nadir range of each objective (the common 10 % convention).
REF_MARGIN = 0.1



def parse_objectives(spec: str | Sequence[str]) -> list[str]:
    """`cost,makespan` -> ['cost', 'makespan']: 2 to 4 distinct known objectives."""
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec)]
    names = [s for s in names if s]
    unknown = [s for s in names if s not in PARETO_OBJECTIVES]
    if unknown:
        raise InvalidInputError(f"unknown objective {unknown[0]!r}; choose from "
                                f"{', '.join(PARETO_OBJECTIVES)}", field="objectives")
    if len(set(names)) != len(names):
        raise InvalidInputError("an objective is listed twice", field="objectives")
    if not 2 <= len(names) <= 4:
        raise InvalidInputError(f"give 2 to 4 objectives, got {len(names)}", field="objectives")
    return names


#: Relative tolerance of objective comparisons on a front: sums of the same migration
#: costs in another order differ in the last bit (1.4 against 1.4000000000000001), and a
#: plan dearer in every other objective survived beside one "worse" by 2e-16.
FRONT_RTOL = 1e-9


def nondominated(F: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of F (minimised) no other row dominates.

    Values within FRONT_RTOL of each objective's scale count as equal; of several
    equal rows only the first is kept.
    """
    F = np.asarray(F, dtype=float)
    n = F.shape[0]
    keep = np.ones(n, dtype=bool)
    if n == 0:
        return keep
    tol = FRONT_RTOL * np.maximum(1.0, np.abs(F).max(axis=0))
    for a in range(n):
        le = np.all(F[a] + tol >= F, axis=1)
        lt = np.any(F[a] - tol > F, axis=1)
        if np.any(le & lt):
            keep[a] = False
            continue
        same = np.flatnonzero(np.all(np.abs(F - F[a]) <= tol, axis=1))
        if same[0] != a:
            keep[a] = False
    return keep


def build_front(
    problem: Problem,
    objectives: Sequence[str],
    assignments: Sequence[np.ndarray],
    *,
    method: str,
    budget: Budget,
    proven: bool = False,
    seed: int | None = None,
    message: str | None = None,
    point_proven: Sequence[bool] | None = None,
) -> ParetoFront:
    """Plans for the assignments, non-dominated filtered, sorted by objective vector.

    `point_proven[k]` says whether assignment k is proven Pareto-optimal (exact
    fronts); it is carried to the point it becomes.
    """
    from allocator.solvers.base import make_plan

    objectives = list(objectives)
    plans = []
    flags: list[bool | None] = (list(point_proven) if point_proven is not None
                                else [None] * len(assignments))
    for a in assignments:
        plan = make_plan(problem, np.asarray(a, dtype=np.int64), solver=method,
                         status=PlanStatus.FEASIBLE, budget=budget)
        values = {t.name: t.value for t in plan.breakdown}
        plans.append((plan, values))
    if not plans:
        return ParetoFront(objectives=objectives, method=method, proven=proven, seed=seed,
                           wall_time_s=budget.elapsed(), message=message)
    # Among the candidates only those with the least unassigned penalty count
    # (unassigned tasks are a constraint, not an objective; see docs/pareto.md).
    pen = np.array([v["unassigned"] for _, v in plans])
    ok = pen <= pen.min() + 1e-9 * max(1.0, abs(pen.min()))
    flags = [f for f, good in zip(flags, ok, strict=True) if good]
    plans = [p for p, good in zip(plans, ok, strict=True) if good]
    F = np.array([[v[k] for k in objectives] for _, v in plans])
    mask = nondominated(F)
    idx = np.flatnonzero(mask)
    idx = idx[np.lexsort(F[idx].T[::-1])]
    points = []
    for rank, i in enumerate(idx):
        plan, values = plans[i]
        plan = plan.model_copy(update={
            "message": f"pareto point {rank + 1}/{idx.size} ({method}): "
                       + ", ".join(f"{k}={values[k]:g}" for k in objectives)})
        points.append(ParetoPoint(objectives={k: float(values[k]) for k in objectives},
                                  plan=plan, proven=flags[i]))
    front = ParetoFront(objectives=objectives, method=method, points=points, proven=proven,
                        seed=seed, wall_time_s=budget.elapsed(), message=message)
    return with_hypervolume(front)


# ---------------------------------------------------------------------------
# Quality indicators


def bounds(*fronts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ideal, nadir) over the union of the given objective matrices."""
    F = np.vstack([np.asarray(f, dtype=float) for f in fronts if len(f)])
    return F.min(axis=0), F.max(axis=0)


def normalise(F: np.ndarray, ideal: np.ndarray, nadir: np.ndarray) -> np.ndarray:
    """(F - ideal) / (nadir - ideal); a zero range counts as 1 (the objective is flat)."""
    rng = np.where(nadir - ideal > 0, nadir - ideal, 1.0)
    return (np.asarray(F, dtype=float) - ideal) / rng


def reference_point(ideal: np.ndarray, nadir: np.ndarray) -> np.ndarray:
    """The HV reference point in raw units: nadir + REF_MARGIN x range (range 0 -> 1)."""
    rng = np.where(nadir - ideal > 0, nadir - ideal, 1.0)
    return nadir + REF_MARGIN * rng


def hypervolume(F: np.ndarray, ideal: np.ndarray, nadir: np.ndarray) -> float:
    """pymoo HV of F normalised by (ideal, nadir) against the point 1 + REF_MARGIN.

    Points beyond the reference point in some objective contribute nothing.
    The largest possible value is (1 + REF_MARGIN) ** k.
    """
    if len(F) == 0:
        return 0.0
    Z = normalise(F, ideal, nadir)
    ref = np.full(Z.shape[1], 1.0 + REF_MARGIN)
    return float(HV(ref_point=ref)(Z))


def igd_plus(F: np.ndarray, reference: np.ndarray, ideal: np.ndarray,
             nadir: np.ndarray) -> float:
    """pymoo IGD+ of F against the reference front, both normalised by (ideal, nadir)."""
    return float(IGDPlus(normalise(reference, ideal, nadir))(normalise(F, ideal, nadir)))


def with_hypervolume(front: ParetoFront) -> ParetoFront:
    """The front with ideal, nadir, reference point and its own hypervolume filled in."""
    if not front.points:
        return front
    F = np.array(front.vectors())
    ideal, nadir = bounds(F)
    return front.model_copy(update={
        "ideal": ideal.tolist(), "nadir": nadir.tolist(),
        "reference_point": reference_point(ideal, nadir).tolist(),
        "hypervolume": hypervolume(F, ideal, nadir)})


# ---------------------------------------------------------------------------
# Choosing a plan


@dataclass(frozen=True)
class Pick:
    """The chosen point's index in the front and why it was chosen."""

    index: int
    rule: str
    detail: str


def knee_index(F: np.ndarray) -> int:
    """The knee: the point farthest below the plane sum(z) = 1 of the normalised front.

    With each objective scaled to [0, 1] by the front's ideal and nadir, the
    two ends of a bi-objective front are (0, 1) and (1, 0), so this is the
    point farthest from the line joining the ends; ties go to the first.
    """
    F = np.asarray(F, dtype=float)
    if len(F) <= 2:
        return 0
    ideal, nadir = bounds(F)
    s = normalise(F, ideal, nadir).sum(axis=1)
    return int(np.argmin(np.round(s, 12)))


@dataclass(frozen=True)
class PickRule:
    """A parsed pick spec: `kind` is knee, weights or min."""

    kind: str
    weights: tuple[float, ...] = ()
    target: str = ""
    limits: tuple[tuple[str, float], ...] = ()


def parse_pick(spec: str, names: Sequence[str]) -> PickRule:
    """Parse ``knee`` | ``weights:cost=1,makespan=2`` | ``min:cost,makespan<=40,...``.

    Raises InvalidInputError naming what is wrong, before any solving.
    """
    names = list(names)
    spec = spec.strip()
    if spec == "knee":
        return PickRule("knee")
    kind, _, body = spec.partition(":")

    def number(val: str, name: str = "", weight: bool = False) -> float:
        """A finite number (a weight also >= 0), by the snapshot Weights' own rules."""
        from pydantic import TypeAdapter, ValidationError

        from models.domain import Finite, NonNegative

        try:
            return float(TypeAdapter(NonNegative if weight else Finite).validate_python(
                float(val)))
        except ValueError as e:  # pydantic's ValidationError is a ValueError
            why = e.errors()[0]["msg"].lower() if isinstance(e, ValidationError) else (
                "not a number")
            raise InvalidInputError(f"{name or 'value'} {val.strip()!r}: {why}",
                                    field="pick") from None

    parts = [p.strip() for p in body.split(",") if p.strip()]
    if kind == "weights" and parts:
        w = [0.0] * len(names)
        for part in parts:
            name, eq, val = part.partition("=")
            if not eq or name.strip() not in names:
                raise InvalidInputError(f"expected name=weight with name in {names}, got "
                                        f"{part!r}", field="pick")
            w[names.index(name.strip())] = number(val, name.strip(), weight=True)
        return PickRule("weights", weights=tuple(w))
    if kind == "min" and parts:
        if parts[0] not in names:
            raise InvalidInputError(f"cannot minimise {parts[0]!r}: not one of {names}",
                                    field="pick")
        limits = []
        for part in parts[1:]:
            name, op, val = part.partition("<=")
            if not op or name.strip() not in names:
                raise InvalidInputError(f"expected a bound like makespan<=40 with a name in "
                                        f"{names}, got {part!r}", field="pick")
            limits.append((name.strip(), number(val, name.strip())))
        return PickRule("min", target=parts[0], limits=tuple(limits))
    raise InvalidInputError(f"expected knee, weights:NAME=W,... or min:NAME,NAME<=X,..., "
                            f"got {spec!r}", field="pick")


def pick(front: ParetoFront, spec: str) -> Pick:
    """Choose a plan from the front.

    `spec` is ``knee``; ``weights:cost=1,makespan=2`` (least weighted sum of
    the raw objective values, missing weights 0); or
    ``min:cost,makespan<=40[,imbalance<=5]`` (least `cost` among the points
    within every bound). Ties go to the earlier point.
    """
    names = front.objectives
    rule = parse_pick(spec, names)
    if not front.points:
        raise InvalidInputError("the front is empty", field="pick")
    F = np.array(front.vectors())
    if rule.kind == "knee":
        return Pick(knee_index(F), "knee", "farthest from the line through the front's ends "
                                           "(normalised objectives)")
    if rule.kind == "weights":
        w = np.array(rule.weights)
        s = F @ w
        i = int(np.argmin(s))
        return Pick(i, "weights", " + ".join(f"{w[k]:g}*{names[k]}" for k in range(len(names))
                                             if w[k]) + f" = {s[i]:g}")
    ok = np.ones(len(F), dtype=bool)
    for name, limit in rule.limits:
        col = F[:, names.index(name)]
        within = col <= limit + 1e-9 * max(1.0, abs(limit))
        if not within.any():
            raise InvalidInputError(f"no plan on the front has {name} <= {limit:g} "
                                    f"(the least is {col.min():g})", field="pick")
        ok &= within
    bounds_txt = ", ".join(f"{n}<={v:g}" for n, v in rule.limits) or "no bounds"
    if not ok.any():
        raise InvalidInputError(f"no plan on the front meets all of {bounds_txt}", field="pick")
    cand = np.flatnonzero(ok)
    i = int(cand[np.argmin(F[cand, names.index(rule.target)])])
    return Pick(i, "min", f"least {rule.target} subject to {bounds_txt}")
