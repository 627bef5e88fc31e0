"""Agent types and the mixes the capacity search walks, cheapest first."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from allocator.errors import InvalidInputError
from models import Agent


@dataclass(slots=True, frozen=True)
class AgentType:
    name: str = "agent"
    speed: float = 1.0
    cost: float = 1.0
    min: int = 0
    max: int | None = None


def read_agent_types(path: str | Path) -> list[AgentType]:
    """A JSON list of {name, speed, cost, min, max} (or {"types": [...]})."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise InvalidInputError(f"{path}: {e}", field="agent_types") from None
    items = data.get("types", data) if isinstance(data, dict) else data
    try:
        types = [AgentType(**x) for x in items]
    except TypeError as e:
        raise InvalidInputError(f"{path}: {e}", field="agent_types") from None
    check_types(types)
    return types


def check_types(types: Sequence[AgentType]) -> None:
    if not types:
        raise InvalidInputError("need at least one agent type", field="agent_types")
    names = [t.name for t in types]
    if len(set(names)) != len(names):
        raise InvalidInputError("agent type names must be unique", field="agent_types")
    for t in types:
        if not (t.speed > 0 and t.cost >= 0 and t.min >= 0
                and (t.max is None or t.max >= t.min)):
            raise InvalidInputError(f"agent type {t.name}: need speed > 0, cost >= 0, "
                                    "0 <= min <= max", field="agent_types")


Mix = tuple[int, ...]


def mix_agents(types: Sequence[AgentType], mix: Mix) -> list[Agent]:
    out: list[Agent] = []
    for t, n in zip(types, mix, strict=True):
        out.extend(Agent(id=f"{t.name}-{i}", speed=t.speed) for i in range(n))
    return out


def mix_cost(types: Sequence[AgentType], mix: Mix) -> float:
    return sum(t.cost * n for t, n in zip(types, mix, strict=True))


def mix_capacity(types: Sequence[AgentType], mix: Mix) -> float:
    return sum(t.speed * n for t, n in zip(types, mix, strict=True))


def mix_dict(types: Sequence[AgentType], mix: Mix) -> dict[str, int]:
    return {t.name: n for t, n in zip(types, mix, strict=True)}


#: Enumerating mixes stops at this many candidates (ample for 1-3 types).
MAX_MIXES = 200_000


def candidate_mixes(types: Sequence[AgentType], offered: float, *, headroom: float = 4.0
                    ) -> list[Mix]:
    """Stable mixes (capacity > offered load) up to `headroom` x the offered load plus
    a few agents, cheapest first (ties: more capacity first)."""
    if not math.isfinite(offered):
        raise InvalidInputError(f"the offered load is {offered}", field="workload")
    top = offered * headroom + 4 * max(t.speed for t in types)
    ranges = []
    for t in types:
        hi = math.ceil(top / t.speed)
        if t.max is not None:
            hi = min(hi, t.max)
        if hi - t.min > 4 * MAX_MIXES:  # itertools.product would materialise the range
            raise InvalidInputError(
                f"the offered load ({offered:.4g} agents' worth of work) needs up to {hi:.4g} "
                f"agents of type {t.name!r}, more than {4 * MAX_MIXES:,} to plan: check the "
                "rates and sizes, or bound the type with max", field="workload")
        ranges.append(range(t.min, max(t.min, hi) + 1))
    mixes: list[Mix] = []
    for m in itertools.product(*ranges):
        cap = mix_capacity(types, m)
        if sum(m) >= 1 and offered < cap <= top + 1e-9:
            mixes.append(m)
            if len(mixes) > MAX_MIXES:
                raise InvalidInputError("too many agent mixes to enumerate; bound the types "
                                        "with max", field="agent_types")
    mixes.sort(key=lambda m: (mix_cost(types, m), -mix_capacity(types, m), m))
    return mixes
