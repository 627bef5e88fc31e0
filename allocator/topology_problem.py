"""The topology part of a compiled Problem: group rules and topology costs as arrays.

Built once from ``Snapshot.topology`` and the agents' zone / neighbourhood /
labels (models.topology). Memory is linear in tasks, agents, groups and the
move-cost pairs listed: agent-pair move costs are a [Z, Z] zone matrix plus
sorted explicit pairs, never an [m, m] matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models import Snapshot

#: Names of the hard topology rules (allocator.constraints holds their checks).
HARD_RULES = ("anti_affinity", "spread", "dependency", "transient")


@dataclass(frozen=True, eq=False)
class TopologyArrays:
    """Array form of the topology of a snapshot (indices as in the Problem)."""

    group_ids: list[str]
    group_of: np.ndarray  # [n] int, -1 = no group
    anti: np.ndarray  # [G] bool
    spread_min: np.ndarray  # [G] int
    spread_key: np.ndarray  # [G] int row of `domains`
    dep_ptr: np.ndarray  # [G + 1] CSR over dep_idx
    dep_idx: np.ndarray  # groups depended on
    dep_key: np.ndarray  # [G] int row of `domains`
    keys: list[str]  # topology keys used
    domains: np.ndarray  # [K, m] int value index of each agent, -1 = none
    n_domains: np.ndarray  # [K]
    safety: np.ndarray  # [m, R], +inf where none
    load_cost: np.ndarray  # [R]
    transient: np.ndarray  # [R] bool
    bal_r1: np.ndarray  # [B] int
    bal_r2: np.ndarray  # [B] int
    bal_target: np.ndarray  # [B]
    bal_weight: np.ndarray  # [B]
    zone_of: np.ndarray  # [m] int, -1 = no zone
    zone_names: list[str]
    zone_cost: np.ndarray  # [Z, Z]
    pair_keys: np.ndarray  # sorted source * m + target of Agent.move_costs entries
    pair_cost: np.ndarray  # cost of each pair in pair_keys
    group_move_weight: float
    agent_move_weight: float
    m: int

    @property
    def n_groups(self) -> int:
        return len(self.group_ids)

    def hard_rules(self) -> list[str]:
        """The hard topology rules this snapshot uses (a subset of :data:`HARD_RULES`)."""
        sizes = np.bincount(self.group_of[self.group_of >= 0], minlength=self.n_groups)
        used = []
        if np.any(self.anti & (sizes > 1)):
            used.append("anti_affinity")
        if np.any((self.spread_min > 1) & (sizes > 1)):
            used.append("spread")
        if self.dep_idx.size:
            used.append("dependency")
        if self.transient.any():
            used.append("transient")
        return used

    def move_cost(self, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        """[k] cost of moving a task from agent source[k] to agent target[k] (0 when equal)."""
        s = np.asarray(source, dtype=np.int64)
        t = np.asarray(target, dtype=np.int64)
        out = np.zeros(s.shape)
        if self.zone_cost.size:
            zs, zt = self.zone_of[s], self.zone_of[t]
            ok = (zs >= 0) & (zt >= 0)
            out[ok] = self.zone_cost[zs[ok], zt[ok]]
        if self.pair_keys.size:
            q = s * max(self.m, 1) + t
            pos = np.minimum(np.searchsorted(self.pair_keys, q), self.pair_keys.size - 1)
            hit = self.pair_keys[pos] == q
            out[hit] = self.pair_cost[pos[hit]]
        out[s == t] = 0.0
        return out


def compile_topology(snapshot: Snapshot, resources: list[str]) -> TopologyArrays | None:
    """The topology arrays of a snapshot; None when it uses no topology field at all."""
    agents, topo = snapshot.agents, snapshot.topology
    uses = topo is not None or any(a.safety or a.move_costs for a in agents)
    if not uses:
        return None
    m, R = len(agents), len(resources)
    r_index = {r: k for k, r in enumerate(resources)}
    groups = topo.groups if topo is not None else []
    g_index = {g.id: k for k, g in enumerate(groups)}
    table = snapshot.task_table
    task_groups = (([None] * len(table) if table.group is None else table.group)
                   if snapshot.columnar and table is not None
                   else [t.group for t in snapshot.tasks])
    group_of = np.array([g_index[g] if g is not None else -1 for g in task_groups],
                        dtype=np.int64)
    keys: list[str] = []

    def key_row(key: str) -> int:
        if key not in keys:
            keys.append(key)
        return keys.index(key)

    spread_key = np.array([key_row(g.spread_key) for g in groups], dtype=np.int64)
    dep_key = np.array([key_row(g.dependency_key) for g in groups], dtype=np.int64)
    domains = np.full((len(keys), m), -1, dtype=np.int64)
    n_domains = np.zeros(len(keys), dtype=np.int64)
    for k, key in enumerate(keys):
        values: dict[str, int] = {}
        for i, a in enumerate(agents):
            v = a.topology_value(key)
            if v is not None:
                domains[k, i] = values.setdefault(v, len(values))
        n_domains[k] = len(values)
    dep_lists = [[g_index[d] for d in g.depends_on] for g in groups]
    dep_ptr = np.zeros(len(groups) + 1, dtype=np.int64)
    dep_ptr[1:] = np.cumsum([len(x) for x in dep_lists])
    dep_idx = np.array([d for x in dep_lists for d in x], dtype=np.int64)

    safety = np.full((m, R), np.inf)
    has_safety = np.zeros(R, dtype=bool)
    for i, a in enumerate(agents):
        for r, x in a.safety.items():
            safety[i, r_index[r]] = x
            has_safety[r_index[r]] = True
    load_cost = np.where(has_safety, 1.0, 0.0)
    transient = np.zeros(R, dtype=bool)
    balances = topo.balances if topo is not None else []
    if topo is not None:
        for r, c in topo.load_cost.items():
            load_cost[r_index[r]] = c
        for r in topo.transient:
            transient[r_index[r]] = True

    zone_names = sorted({a.zone for a in agents if a.zone is not None})
    z_index = {z: k for k, z in enumerate(zone_names)}
    zone_of = np.array([z_index[a.zone] if a.zone is not None else -1 for a in agents],
                       dtype=np.int64)
    zone_moves = topo.zone_move_costs if topo is not None else []
    zone_cost = np.zeros((len(zone_names), len(zone_names)) if zone_moves else (0, 0))
    for zc in zone_moves:
        zone_cost[z_index[zc.source], z_index[zc.target]] = zc.cost
    a_index = {a.id: i for i, a in enumerate(agents)}
    pairs = {i * max(m, 1) + a_index[b]: c
             for i, a in enumerate(agents) for b, c in a.move_costs.items()}
    pair_keys = np.array(sorted(pairs), dtype=np.int64)
    pair_cost = np.array([pairs[k] for k in pair_keys.tolist()], dtype=float)
    return TopologyArrays(
        group_ids=[g.id for g in groups],
        group_of=group_of,
        anti=np.array([g.anti_affinity for g in groups], dtype=bool),
        spread_min=np.array([g.min_spread for g in groups], dtype=np.int64),
        spread_key=spread_key,
        dep_ptr=dep_ptr,
        dep_idx=dep_idx,
        dep_key=dep_key,
        keys=keys,
        domains=domains,
        n_domains=n_domains,
        safety=safety,
        load_cost=load_cost,
        transient=transient,
        bal_r1=np.array([r_index[b.resource] for b in balances], dtype=np.int64),
        bal_r2=np.array([r_index[b.against] for b in balances], dtype=np.int64),
        bal_target=np.array([b.target for b in balances], dtype=float),
        bal_weight=np.array([b.weight for b in balances], dtype=float),
        zone_of=zone_of,
        zone_names=zone_names,
        zone_cost=zone_cost,
        pair_keys=pair_keys,
        pair_cost=pair_cost,
        group_move_weight=topo.group_move_weight if topo is not None else 1.0,
        agent_move_weight=topo.agent_move_weight if topo is not None else 1.0,
        m=m,
    )
