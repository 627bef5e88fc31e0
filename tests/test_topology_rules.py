"""Topology in the domain model (models.topology): validation, the four hard rules where
they bite and where they do not (checks, validator, explainer, repair, every backend),
and the soft topology terms on hand-computed cases."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from allocator import compile_snapshot, solve, validate
from allocator.constraints import assignment_feasible, enforce, violations
from allocator.errors import UnsupportedError
from allocator.objectives import TERMS, TOPOLOGY_TERMS, Schedule, topology_terms
from allocator.solvers import get_solver
from allocator.solvers.base import Budget, make_plan
from models import (
    Agent,
    AgentStatus,
    Assignment,
    Balance,
    Group,
    Plan,
    PlanStatus,
    Snapshot,
    Task,
    Topology,
    UnassignedReason,
    Weights,
    ZoneMoveCost,
)

BACKENDS = ["greedy", "balance", "cpsat", "milp", "nsga2"]


def cluster(**agent_kw: Any) -> list[Agent]:
    """Four agents: zones a / b, neighbourhoods n1 (a1, b1) and n2 (a2, b2)."""
    return [Agent(id=f"{z}{k}", zone=z, neighbourhood=f"n{k}", capacity={"cpu": 4, "mem": 4},
                  concurrency=10,
                  **agent_kw) for z in "ab" for k in (1, 2)]


def topo_snap(tasks: list[Task], groups: list[Group], **topo_kw: Any) -> Snapshot:
    return Snapshot(agents=cluster(), tasks=tasks,
                    topology=Topology(groups=groups, **topo_kw),
                    weights=Weights(cost=1, migrations=1))


def hand(*rows: tuple[str, str]) -> Plan:
    return Plan(status=PlanStatus.FEASIBLE, solver="hand",
                assignments=[Assignment(task=t, agent=a, start=0, end=1) for t, a in rows])


def schedule(s: Snapshot, plan: Plan) -> Schedule:
    p = compile_snapshot(s)
    a = np.full(p.n, -1, dtype=np.int64)
    for row in plan.assignments:
        a[p.task_index[row.task]] = p.agent_index[row.agent]
    return Schedule(a, np.zeros(p.n), np.ones(p.n))


def task(tid: str, group: str | None = None, **kw: Any) -> Task:
    return Task(id=tid, group=group, demand=kw.pop("demand", {"cpu": 1}), **kw)


# -- validation ------------------------------------------------------------------------------

@pytest.mark.parametrize("build,field", [
    pytest.param(lambda: topo_snap([task("t", "nope")], []), "tasks[0].group", id="task group"),
    pytest.param(lambda: Snapshot(agents=cluster(), tasks=[task("t", "g")]), "tasks[0].group",
                 id="group without topology"),
    pytest.param(lambda: topo_snap([], [Group(id="g", depends_on=["h"])]),
                 "topology.groups[0].depends_on", id="dependency on unknown group"),
    pytest.param(lambda: topo_snap([], [Group(id="g"), Group(id="g")]),
                 "topology.groups[1].id", id="duplicate group"),
    pytest.param(lambda: topo_snap([], [], transient=["disk"]), "topology.transient[0]",
                 id="unknown transient resource"),
    pytest.param(lambda: topo_snap([], [], load_cost={"disk": 1}), "topology.load_cost",
                 id="unknown load cost resource"),
    pytest.param(lambda: topo_snap([], [], balances=[Balance(resource="cpu", against="gpu",
                                                             target=1)]),
                 "topology.balances[0].against", id="unknown balance resource"),
    pytest.param(lambda: topo_snap([], [], zone_move_costs=[ZoneMoveCost(**{
        "from": "a", "to": "z", "cost": 1})]), "topology.zone_move_costs[0].to",
                 id="unknown zone"),
    pytest.param(lambda: Snapshot(agents=[Agent(id="x", capacity={"cpu": 1},
                                                safety={"mem": 1})]),
                 "agents[0].safety", id="unknown safety resource"),
    pytest.param(lambda: Snapshot(agents=[Agent(id="x", move_costs={"y": 1})]),
                 "agents[0].move_costs", id="unknown move target"),
    pytest.param(lambda: Snapshot(agents=[Agent(id="x", zone="a"), Agent(id="y")],
                                  topology=Topology(groups=[Group(id="g", min_spread=2)])),
                 "agents[1]: has no 'zone' (needed by topology.groups[0].spread_key)",
                 id="agent without the spread key"),
])
def test_bad_topology_names_the_field(build: Any, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        build()
    assert field in str(err.value)


@pytest.mark.parametrize("build,field", [
    pytest.param(lambda: Agent(id="x", capacity={"cpu": 1}, safety={"cpu": math.nan}),
                 "safety['cpu']", id="NaN safety"),
    pytest.param(lambda: Agent(id="x", move_costs={"y": -1}), "move_costs['y']",
                 id="negative move cost"),
    pytest.param(lambda: Balance(resource="a", against="b", target=-1), "target",
                 id="negative target"),
    pytest.param(lambda: Topology(load_cost={"cpu": math.inf}), "load_cost",
                 id="infinite load cost"),
    pytest.param(lambda: Group(id="g", min_spread=-1), "min_spread", id="negative spread"),
    pytest.param(lambda: Topology(group_move_weight=math.nan), "group_move_weight",
                 id="NaN weight"),
])
def test_bad_topology_numbers_name_the_field(build: Any, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        build()
    assert field in str(err.value)


def test_snapshots_without_topology_report_the_same_terms() -> None:
    s = Snapshot(agents=[Agent(id="a", capacity={"cpu": 2})],
                 tasks=[Task(id="t", demand={"cpu": 1})])
    assert compile_snapshot(s).topology is None
    plan = solve(s, solver="greedy")
    assert [t.name for t in plan.breakdown] == list(TERMS)
    assert "topology" not in s.model_dump(exclude_defaults=True)


def test_labels_are_topology_keys_too() -> None:
    agents = [Agent(id=f"x{k}", labels={"rack": f"r{k % 2}"}, capacity={"cpu": 4})
              for k in range(4)]
    s = Snapshot(agents=agents, tasks=[task(f"t{k}", "g") for k in range(2)],
                 topology=Topology(groups=[Group(id="g", min_spread=2, spread_key="rack")]))
    p = compile_snapshot(s)
    same_rack = hand(("t0", "x0"), ("t1", "x2"))
    assert violations(p, schedule(s, same_rack)) == {"spread": ["t0", "t1"]}
    assert {v.kind for v in validate(s, same_rack)} == {"spread"}
    assert violations(p, schedule(s, hand(("t0", "x0"), ("t1", "x1")))) == {}


# -- the hard rules on hand-written plans -----------------------------------------------------

G_ANTI = [Group(id="web", anti_affinity=True)]
G_SPREAD = [Group(id="web", min_spread=2)]
G_DEP = [Group(id="web", depends_on=["db"]), Group(id="db")]
WEB3 = [task(f"w{k}", "web") for k in range(3)]

CHECKS = [
    pytest.param(topo_snap(WEB3, G_ANTI), hand(("w0", "a1"), ("w1", "a1"), ("w2", "b1")),
                 {"anti_affinity": ["w1"]}, {"anti_affinity"}, id="anti-affinity bites"),
    pytest.param(topo_snap(WEB3, G_ANTI), hand(("w0", "a1"), ("w1", "a2"), ("w2", "b1")),
                 {}, set(), id="anti-affinity slack: distinct agents"),
    pytest.param(topo_snap(WEB3, [Group(id="web")]),
                 hand(("w0", "a1"), ("w1", "a1"), ("w2", "a1")), {}, set(),
                 id="anti-affinity slack: group without it"),
    pytest.param(topo_snap(WEB3, G_SPREAD), hand(("w0", "a1"), ("w1", "a2"), ("w2", "a1")),
                 {"spread": ["w0", "w1", "w2"]}, {"spread"}, id="spread bites"),
    pytest.param(topo_snap(WEB3, G_SPREAD), hand(("w0", "a1"), ("w1", "a2"), ("w2", "b1")),
                 {}, set(), id="spread slack: two zones"),
    pytest.param(topo_snap(WEB3, G_SPREAD), hand(("w0", "a1")), {}, set(),
                 id="spread slack: one placed member needs one zone"),
    pytest.param(topo_snap([task("w", "web"), task("d", "db")], G_DEP),
                 hand(("w", "a1"), ("d", "a2")), {"dependency": ["w"]}, {"dependency"},
                 id="dependency bites: other neighbourhood"),
    pytest.param(topo_snap([task("w", "web"), task("d", "db")], G_DEP), hand(("w", "a1")),
                 {"dependency": ["w"]}, {"dependency"}, id="dependency bites: db left out"),
    pytest.param(topo_snap([task("w", "web"), task("d", "db")], G_DEP),
                 hand(("w", "a1"), ("d", "b1")), {}, set(),
                 id="dependency slack: same neighbourhood, other zone"),
    pytest.param(topo_snap([task("w", "web"), task("d", "db")], G_DEP), hand(("d", "a1")),
                 {}, set(), id="dependency slack: only the depended-on group placed"),
    pytest.param(topo_snap([task("x", demand={"cpu": 3}, current_agent="a1"),
                            task("y", demand={"cpu": 3}, current_agent="a2")], [],
                           transient=["cpu"]),
                 hand(("x", "a2"), ("y", "a1")), {"transient": ["a1", "a2"]}, {"transient"},
                 id="transient bites: a swap needs room at both ends"),
    pytest.param(topo_snap([task("x", demand={"cpu": 3}, current_agent="a1"),
                            task("y", demand={"cpu": 3}, current_agent="a2")], [],
                           transient=["mem"]),
                 hand(("x", "a2"), ("y", "a1")), {}, set(),
                 id="transient slack: the swapped resource is not transient"),
    pytest.param(topo_snap([task("x", demand={"cpu": 2}, current_agent="a1"),
                            task("y", demand={"cpu": 2}, current_agent="a2")], [],
                           transient=["cpu"]),
                 hand(("x", "a2"), ("y", "a1")), {}, set(),
                 id="transient slack: room at both ends"),
]


@pytest.mark.parametrize("s,plan,broken,kinds", CHECKS)
def test_checks_and_validator_agree(s: Snapshot, plan: Plan, broken: dict[str, list[str]],
                                    kinds: set[str]) -> None:
    p = compile_snapshot(s)
    assert violations(p, schedule(s, plan)) == broken
    assert {v.kind for v in validate(s, plan)} - {"missing_task"} == kinds
    assert assignment_feasible(p, schedule(s, plan).agent_of) is (not broken)


# -- every backend: refused by name, and never a plan that breaks a rule ----------------------

RULE_SNAPS = {
    "anti_affinity": topo_snap([task(f"w{k}", "web") for k in range(3)], G_ANTI),
    "spread": topo_snap([task(f"w{k}", "web") for k in range(3)], G_SPREAD),
    "dependency": topo_snap([task("w", "web"), task("d", "db", demand={"cpu": 1, "mem": 3})],
                            G_DEP),
    "transient": topo_snap([task(f"x{k}", demand={"cpu": 2}, current_agent="a1")
                            for k in range(2)], [], transient=["cpu"]),
}


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "greedy"])
@pytest.mark.parametrize("rule", sorted(RULE_SNAPS))
def test_backends_refuse_rules_they_do_not_model(backend: str, rule: str) -> None:
    with pytest.raises(UnsupportedError) as err:
        solve(RULE_SNAPS[rule], solver=backend, time_limit=1)
    assert rule in str(err.value) and "topology" in str(err.value)
    assert err.value.field == "options.solver"


def _zoned(cost_b: float = 5.0) -> list[Agent]:
    """cluster() with zone b dearer (cost_rate), so a placement by cost alone stays in a."""
    return [a.model_copy(update={"cost_rate": cost_b if a.zone == "b" else 0.0})
            for a in cluster()]


def _on(plan: Plan) -> dict[str, str]:
    return {a.task: a.agent for a in plan.assignments}


def test_greedy_places_under_anti_affinity_and_leaves_out_only_what_breaks_it() -> None:
    """Five members of an anti-affine group on four agents: four placed, one per agent;
    the fifth is left out naming the rule (it was: every non-topology backend refused)."""
    s = topo_snap([task(f"w{k}", "web") for k in range(5)], G_ANTI)
    plan = solve(s, solver="greedy", time_limit=1)
    assert validate(s, plan) == []
    assert sorted(_on(plan).values()) == ["a1", "a2", "b1", "b2"]
    assert [u.code for u in plan.unassigned] == [UnassignedReason.TOPOLOGY_RULE]


def test_greedy_spreads_a_group_into_a_dearer_zone_when_its_rule_says_so() -> None:
    s = Snapshot(agents=_zoned(), tasks=[task(f"w{k}", "web") for k in range(3)],
                 topology=Topology(groups=G_SPREAD), weights=Weights(cost=1))
    plan = solve(s, solver="greedy", time_limit=1)
    assert validate(s, plan) == [] and plan.unassigned == []
    assert {v[0] for v in _on(plan).values()} == {"a", "b"}  # both zones
    cheap = Snapshot(agents=_zoned(), tasks=s.tasks, weights=Weights(cost=1),
                     topology=Topology(groups=[Group(id="web")]))
    assert {v[0] for v in _on(solve(cheap, solver="greedy", time_limit=1)).values()} == {"a"}


def test_greedy_places_a_dependent_group_where_its_dependency_is() -> None:
    """db may only run in neighbourhood n2: web (listed first) follows it there."""
    tasks = [task(f"w{k}", "web") for k in range(2)] + [
        task(f"d{k}", "db", allowed_agents=["a2", "b2"]) for k in range(2)]
    s = topo_snap(tasks, G_DEP)
    plan = solve(s, solver="greedy", time_limit=1)
    assert validate(s, plan) == [] and plan.unassigned == []
    assert {_on(plan)["w0"], _on(plan)["w1"]} <= {"a2", "b2"}


def test_greedy_moves_a_task_only_where_the_move_has_room_at_both_ends() -> None:
    """x must leave a1 (forbidden there now); a2 holds y (cpu 3 of 4) so with cpu transient
    x cannot join it, and goes to zone b."""
    s = topo_snap([task("x", demand={"cpu": 3}, current_agent="a1", forbidden_agents=["a1"]),
                   task("y", demand={"cpu": 3}, current_agent="a2")], [], transient=["cpu"])
    s = s.model_copy(update={"agents": [a.model_copy(update={"cost_rate": 0.0})
                                        for a in _zoned(0.0)]})
    plan = solve(s, solver="greedy", time_limit=1)
    assert validate(s, plan) == [] and plan.unassigned == []
    assert _on(plan)["x"] in {"b1", "b2"} and _on(plan)["y"] == "a2"


@pytest.mark.parametrize("rule", sorted(RULE_SNAPS))
def test_auto_plans_rules_the_topology_search_cannot_take(rule: str) -> None:
    """A new task (no current agent) and an agent down: the machine-reassignment search
    cannot take the snapshot, and auto refused it ("every task needs a current agent");
    it now plans with the greedy, which keeps every rule."""
    base = RULE_SNAPS[rule]
    agents = [*base.agents[:-1], base.agents[-1].model_copy(update={"status": AgentStatus.DOWN})]
    tasks = [*base.tasks, task("new", demand={"mem": 1})]
    s = base.model_copy(update={"agents": agents, "tasks": tasks})
    s = Snapshot.model_validate(s.model_dump(mode="json"))
    plan = solve(s, solver="auto", time_limit=1)
    assert plan.solver == "greedy"
    assert validate(s, plan) == []
    assert plan.unassigned == []


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rule", sorted(RULE_SNAPS))
def test_backend_plans_keep_the_rule_even_called_directly(backend: str, rule: str) -> None:
    s = RULE_SNAPS[rule]
    p = compile_snapshot(s)
    plan = get_solver(backend)(p, budget=Budget(1.0), seed=0)
    assert validate(s, plan) == [], plan
    assert violations(p, schedule(s, plan)) == {}
    assert [t.name for t in plan.breakdown] == list(TERMS + TOPOLOGY_TERMS)


@pytest.mark.parametrize("backend", BACKENDS)
def test_soft_topology_alone_is_solved_by_every_backend(backend: str) -> None:
    agents = [Agent(id=f"x{k}", zone="z", capacity={"cpu": 4}, safety={"cpu": 2})
              for k in range(2)]
    s = Snapshot(agents=agents, tasks=[task(f"t{k}", demand={"cpu": 2}) for k in range(2)],
                 topology=Topology(load_cost={"cpu": 3}))
    plan = solve(s, solver=backend, time_limit=1)
    assert validate(s, plan) == []
    terms = {t.name: t.value for t in plan.breakdown}
    on = plan.agent_of()
    assert terms["safety"] == (0.0 if on["t0"] != on["t1"] else 6.0)


# -- the shared repair and the explainer -------------------------------------------------------

def _random_topology(rng: np.random.Generator) -> Snapshot:
    groups = [Group(id=f"g{k}", anti_affinity=bool(rng.random() < 0.6),
                    min_spread=int(rng.integers(0, 3)),
                    depends_on=[f"g{(k + 1) % 3}"] if rng.random() < 0.4 else [])
              for k in range(3)]
    agents = cluster()
    ts = [Task(id=f"t{j}", group=f"g{int(rng.integers(0, 3))}",
               demand={"cpu": float(rng.integers(1, 3))},
               current_agent=agents[int(rng.integers(0, 4))].id if rng.random() < 0.7 else None)
          for j in range(10)]
    return Snapshot(agents=agents, tasks=ts,
                    topology=Topology(groups=groups,
                                      transient=["cpu"] if rng.random() < 0.5 else []))


@pytest.mark.parametrize("seed", range(25))
def test_enforce_keeps_every_topology_rule(seed: int) -> None:
    rng = np.random.default_rng(seed)
    s = _random_topology(rng)
    p = compile_snapshot(s)
    raw = rng.integers(-1, p.m, size=p.n)
    fixed = enforce(p, raw)
    assert assignment_feasible(p, fixed)
    assert enforce(p, fixed).tolist() == fixed.tolist()
    plan = make_plan(p, raw, solver="hand", status=PlanStatus.FEASIBLE, budget=Budget(1.0))
    assert validate(s, plan) == []


@pytest.mark.parametrize("rule,s,agent_of", [
    pytest.param("anti_affinity", topo_snap([task(f"w{k}", "web") for k in range(5)], G_ANTI),
                 [0, 1, 2, 3, -1], id="anti-affinity"),
    pytest.param("dependency", topo_snap([task("w", "web"), task("d", "db")], G_DEP),
                 [-1, -1], id="dependency"),
    pytest.param("transient", topo_snap(
        [task("big", demand={"cpu": 3}, current_agent="a1"), task("f0", demand={"cpu": 2}),
         task("f2", demand={"cpu": 3}), task("f3", demand={"cpu": 3})], [], transient=["cpu"]),
        [-1, 0, 2, 3], id="transient: a2 has room, home a1 cannot hold it too"),
])
def test_explainer_names_the_topology_rule(rule: str, s: Snapshot, agent_of: list[int]) -> None:
    p = compile_snapshot(s)
    plan = make_plan(p, np.array(agent_of), solver="hand", status=PlanStatus.FEASIBLE,
                     budget=Budget(1.0))
    left = plan.unassigned[0]
    assert left.code == UnassignedReason.TOPOLOGY_RULE, left
    assert rule in left.reason


def test_explainer_does_not_blame_topology_when_an_agent_is_free() -> None:
    s = topo_snap([task(f"w{k}", "web") for k in range(2)], G_ANTI)
    p = compile_snapshot(s)
    plan = make_plan(p, np.array([0, -1]), solver="hand", status=PlanStatus.FEASIBLE,
                     budget=Budget(1.0))
    assert plan.unassigned[0].code != UnassignedReason.TOPOLOGY_RULE


# -- the soft terms ----------------------------------------------------------------------------

def test_soft_terms_on_a_hand_computed_case() -> None:
    agents = [Agent(id="a1", zone="a", capacity={"cpu": 10, "mem": 10},
                    safety={"cpu": 4, "mem": 8}, move_costs={"b1": 7}),
              Agent(id="a2", zone="a", capacity={"cpu": 10, "mem": 10}),
              Agent(id="b1", zone="b", capacity={"cpu": 10, "mem": 10})]
    ts = [Task(id="p", group="g", demand={"cpu": 6, "mem": 1}, current_agent="b1"),
          Task(id="q", group="g", demand={"cpu": 1, "mem": 9}, current_agent="a1"),
          Task(id="r", demand={"cpu": 1}, current_agent="a2")]
    topo = Topology(groups=[Group(id="g")], load_cost={"cpu": 2},
                    balances=[Balance(resource="cpu", against="mem", target=2, weight=3)],
                    zone_move_costs=[ZoneMoveCost(**{"from": "b", "to": "a", "cost": 5}),
                                     ZoneMoveCost(**{"from": "a", "to": "b", "cost": 11})],
                    group_move_weight=10, agent_move_weight=100)
    s = Snapshot(agents=agents, tasks=ts, topology=topo)
    p = compile_snapshot(s)
    # p: b1 -> a1 (zone cost b->a 5); q: a1 -> b1 (explicit pair 7, not zone 11); r stays.
    got = topology_terms(p, np.array([0, 2, 1]))
    # a1 holds cpu 6 (2 over safety 4, cost 2 each), mem 1 (under 8; mem has no load cost
    # listed, so 1 per unit, but nothing over).
    assert got["safety"] == 4.0
    # free (cpu, mem): a1 (4, 9), a2 (9, 10), b1 (9, 1): 3 x max(0, 2 cpu_free - mem_free).
    assert got["balance"] == 3 * (0 + 8 + 17)
    assert got["group_moves"] == 2.0
    assert got["agent_moves"] == 12.0
    plan = make_plan(p, np.array([0, 2, 1]), solver="hand", status=PlanStatus.FEASIBLE,
                     budget=Budget(1.0))
    terms = {t.name: t for t in plan.breakdown}
    assert terms["group_moves"].weighted == 20.0 and terms["agent_moves"].weighted == 1200.0
