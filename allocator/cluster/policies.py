"""Cluster policies: a queue order and a backfilling rule, named `ORDER[+BACKFILL]`.

Orders (who is first in the queue):

- `fcfs`: submit time;
- `sjf`: shortest requested time first (ties: submit);
- `edf`: earliest deadline first, deadline = submit + requested time (the
  project's `edf` with the SWF reader's `estimate` deadlines);
- `priority`: the project's priority classes from the SWF queue (queue 0,
  interactive, is `high`; the rest `normal`), then submit;
- `fair-user`, `fair-group`: fair share: the least decayed usage
  (processor-seconds, half-life 7 days as Slurm's default) first, then submit;
- `f1`: the F1 function learned by Carastan-Neto and de Camargo (SC'17),
  log10(requested time) x width + 870 log10(submit), a published reference.

Backfilling: none (the first job that does not fit blocks the queue), `easy`
(the first job gets a reservation at the shadow time; a later job may start
only if it ends by then, by its requested time, or uses only the processors
left over at the shadow time) and `conservative` (every queued job holds a
reservation in the free-processor profile; a job starts early only where it
delays no reservation; reservations move only earlier).

`easy` alone means `fcfs+easy`, `conservative` alone `fcfs+conservative`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from allocator.errors import InvalidInputError

Order = Literal["fcfs", "sjf", "edf", "priority", "fair-user", "fair-group", "f1"]
Backfill = Literal["none", "easy", "conservative"]

ORDERS: dict[str, str] = {
    "fcfs": "first come, first served (submit time)",
    "sjf": "shortest requested time first",
    "edf": "earliest deadline first, deadline = submit + requested time",
    "priority": "priority classes from the SWF queue (0 = interactive = high), then submit",
    "fair-user": "fair share by user: least decayed processor-seconds first",
    "fair-group": "fair share by group: least decayed processor-seconds first",
    "f1": "F1 of Carastan-Neto & de Camargo (SC'17): log10(req time) x width + "
          "870 log10(submit)",
}
BACKFILLS: dict[str, str] = {
    "none": "no backfilling: the first job that does not fit blocks the queue",
    "easy": "EASY: the first job holds a reservation at the shadow time",
    "conservative": "conservative: every queued job holds a reservation",
}
ALIASES = {"easy": "fcfs+easy", "conservative": "fcfs+conservative"}

#: What `allocator replay` runs on a wide-job trace without -p: the HPC
#: baselines and the project's policies with EASY backfilling.
DEFAULT_POLICIES = ("fcfs", "easy", "conservative", "sjf", "sjf+easy", "edf+easy",
                    "priority+easy", "fair-user+easy", "f1+easy")


@dataclass(frozen=True, slots=True)
class ClusterPolicy:
    """A parsed policy name."""

    name: str
    order: Order
    backfill: Backfill


def parse_policy(name: str) -> ClusterPolicy:
    """`ORDER[+easy|+conservative]` (or an alias) -> ClusterPolicy; InvalidInputError otherwise."""
    canon = ALIASES.get(name, name)
    order, _, bf = canon.partition("+")
    bf = bf or "none"
    if order not in ORDERS or bf not in BACKFILLS or (bf == "none" and "+" in canon):
        raise InvalidInputError(f"unknown cluster policy {name!r}; known: "
                                f"{', '.join(policy_names())}", field="policy")
    return ClusterPolicy(name=name, order=order, backfill=bf)  # type: ignore[arg-type]


def policy_names() -> list[str]:
    """Every accepted name: each order alone and with +easy / +conservative, and the aliases."""
    out = []
    for o in ORDERS:
        out += [o, f"{o}+easy", f"{o}+conservative"]
    return [*out, *ALIASES]


def describe_policies() -> dict[str, str]:
    """Name -> one line, for `allocator replay --policies`."""
    out: dict[str, str] = {}
    for o, od in ORDERS.items():
        out[o] = od + "; no backfilling"
        out[f"{o}+easy"] = od + "; EASY backfilling"
        out[f"{o}+conservative"] = od + "; conservative backfilling"
    for a, target in ALIASES.items():
        out[a] = f"= {target}"
    return out


def is_cluster_policy(name: str) -> bool:
    try:
        parse_policy(name)
    except InvalidInputError:
        return False
    return True
