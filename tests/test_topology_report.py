"""`allocator topology`: on a generated two-zone cluster with one zone overloaded, the
report names that zone hot, prices its safety capacity, names the binding rules, and
the re-solves say that moving a machine to it saves (> 0); plus the topology backend
on snapshots (routing, refusals, plans that pass the validator)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from allocator import solve, validate
from allocator.errors import UnsupportedError
from allocator.topology import NO_ZONE, analyse_topology, with_added, with_removed
from models import Agent, Group, Snapshot, Task, Topology, Weights, ZoneMoveCost

EXAMPLE = Path(__file__).resolve().parents[1] / "data" / "examples" / "topology-two-zone.json"


def two_zone_cluster(per_agent_hot: int = 4, agents_per_zone: int = 3,
                     seed: int = 0) -> Snapshot:
    """Zone `east` overloaded (above safety), zone `west` nearly idle; moves across zones
    are dear, so only capacity added to `east` relieves it.

    Groups g0..g{per_agent_hot - 1}: one task on each east agent, anti-affine; `db`: one
    task per zone, spread over 2 zones; g0 depends on `db` by neighbourhood (= zone here).
    """
    rng = np.random.default_rng(seed)
    agents = [Agent(id=f"{z}{i}", zone=z, neighbourhood=f"n-{z}",
                    capacity={"cpu": 10, "mem": 16}, safety={"cpu": 6, "mem": 12})
              for z in ("east", "west") for i in range(agents_per_zone)]
    tasks: list[Task] = []
    for g in range(per_agent_hot):
        for i in range(agents_per_zone):
            tasks.append(Task(id=f"g{g}-{i}", group=f"g{g}", current_agent=f"east{i}",
                              demand={"cpu": 2, "mem": int(rng.integers(1, 3))},
                              migration_cost=1))
    tasks += [Task(id=f"db-{z}", group="db", current_agent=f"{z}0",
                   demand={"cpu": 1, "mem": 1}, migration_cost=1) for z in ("east", "west")]
    groups = [Group(id=f"g{g}", anti_affinity=True, depends_on=["db"] if g == 0 else [])
              for g in range(per_agent_hot)]
    groups.append(Group(id="db", anti_affinity=True, min_spread=2))
    topo = Topology(groups=groups, load_cost={"cpu": 10, "mem": 1},
                    zone_move_costs=[ZoneMoveCost(**{"from": a, "to": b, "cost": 50})
                                     for a, b in (("east", "west"), ("west", "east"))])
    return Snapshot(agents=agents, tasks=tasks, topology=topo,
                    weights=Weights(cost=0, migrations=1), name="two-zone")


def test_the_example_file_is_the_generated_cluster() -> None:
    from allocator.io import read_snapshot

    assert read_snapshot(EXAMPLE) == two_zone_cluster()


def test_report_names_the_overloaded_zone_and_the_saving_of_moving_capacity() -> None:
    s = two_zone_cluster()
    report = analyse_topology(s, k=1, time_limit=1.0, seed=0)
    assert report.hot == ["east"] and report.cold == ["west"]
    east = next(z for z in report.zones if z["zone"] == "east")
    west = next(z for z in report.zones if z["zone"] == "west")
    # east0 also holds db-east (cpu 1).
    assert east["above_safety"]["cpu"] == 3 * (8 - 6) + 1 and west["above_safety"]["cpu"] == 0
    # The LP prices east's safety at its load cost (moving west costs more), west's at 0.
    assert east["shadow_price"]["safety"]["cpu"] == pytest.approx(10.0)
    assert west["shadow_price"]["safety"]["cpu"] == pytest.approx(0.0)
    assert {(b["group"], b["rule"]) for b in report.binding} == {("db", "spread"),
                                                                 ("g0", "dependency")}
    assert report.baseline["valid"] and report.baseline["solver"] == "topology"
    by = {(w.action, w.source, w.target): w for w in report.what_if}
    move = by[("move", "west", "east")]
    add = by[("add", None, "east")]
    assert move.valid and move.saving is not None and move.saving > 0
    assert add.valid and add.saving is not None and add.saving > 0
    assert by[("remove", "west", None)].valid
    json.dumps(report.to_dict())


def test_what_if_snapshots() -> None:
    s = two_zone_cluster()
    added = with_added(s, "east", 2)
    assert [a.id for a in added.agents][-2:] == ["new-east-0", "new-east-1"]
    assert all(a.zone == "east" for a in added.agents[-2:])
    removed, why, evacuation = with_removed(s, "west", 1)
    assert removed is not None and why == ""
    assert len(removed.agents) == len(s.agents) - 1
    assert evacuation == 0  # the least loaded west agent is empty: nothing moves
    plan = solve(removed, time_limit=0.5)
    assert validate(removed, plan) == []
    none, why, _ = with_removed(s, "west", 3)
    assert none is None and "3 agent" in why
    # Emptying an east agent moves its 4 tasks west: each pays its migration cost (1)
    # and the east -> west zone move cost (50), and the group term its most moved
    # group (1 task), before any re-solve.
    emptied, why, evacuation = with_removed(s, "east", 1)
    assert emptied is not None and why == ""
    moved = [t for t, u in zip(s.tasks, emptied.tasks, strict=True)
             if t.current_agent != u.current_agent]
    assert len(moved) == 4 and all(u.current_agent.startswith("west")
                                   for u in emptied.tasks if u.id in {t.id for t in moved})
    assert evacuation == pytest.approx(4 * (1 + 50) + 1)


def test_a_snapshot_without_zones_is_one_zone() -> None:
    """Agents with no zone are reported as the zone NO_ZONE and the what-ifs price it
    (they used to fail: `with_added` looked the label up as a real zone)."""
    c = two_zone_cluster()
    s = Snapshot(agents=[a.model_copy(update={"zone": None, "neighbourhood": None})
                         for a in c.agents],
                 tasks=[t.model_copy(update={"group": None}) for t in c.tasks],
                 weights=c.weights, name="no-zones")
    report = analyse_topology(s, k=1, time_limit=0.5, seed=0)
    assert [z["zone"] for z in report.zones] == [NO_ZONE]
    assert report.zones[0]["agents"] == len(s.agents)
    added = with_added(s, NO_ZONE, 1)
    assert len(added.agents) == len(s.agents) + 1 and added.agents[-1].zone is None
    removed, why, _ = with_removed(s, NO_ZONE, 1)
    assert removed is not None and why == "" and len(removed.agents) == len(s.agents) - 1
    by = {(w.action, w.source, w.target): w for w in report.what_if}
    assert by[("add", None, NO_ZONE)].valid


def test_cli_topology_json_and_table(tmp_path: Path) -> None:
    from allocator.cli import app

    r = CliRunner().invoke(app, ["topology", str(EXAMPLE), "--json", "--time-limit", "0.5"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["hot"] == ["east"]
    assert any(w["action"] == "move" and w["saving"] > 0 for w in out["what_if"])
    r = CliRunner().invoke(app, ["topology", str(EXAMPLE), "--no-what-if"])
    assert r.exit_code == 0, r.output
    assert "hot: east" in r.output
    r = CliRunner().invoke(app, ["topology", str(EXAMPLE), "--k", "0"])
    assert r.exit_code == 2


def test_plan_placement_is_analysed_and_checked(tmp_path: Path) -> None:
    from allocator.cli import app

    s = two_zone_cluster()
    plan = solve(s, time_limit=1.0)
    assert plan.solver == "topology" and validate(s, plan) == []
    report = analyse_topology(s, plan, what_if=False)
    assert report.placement == "plan"
    east = next(z for z in report.zones if z["zone"] == "east")
    assert east["above_safety"]["cpu"] <= 7  # crossing zones costs more than it saves
    bad = plan.model_copy(update={"assignments": plan.assignments[1:]})
    f = tmp_path / "plan.json"
    f.write_text(bad.model_dump_json())
    r = CliRunner().invoke(app, ["topology", str(EXAMPLE), "--plan", str(f), "--no-what-if"])
    assert r.exit_code == 2 and "plan" in r.output


# -- the topology backend ------------------------------------------------------------------

def test_auto_routes_topology_snapshots_and_plans_keep_the_rules() -> None:
    s = two_zone_cluster()
    for solver in ("auto", "topology"):
        plan = solve(s, solver=solver, time_limit=0.5, seed=1)
        assert plan.solver == "topology"
        assert validate(s, plan) == []
        assert not plan.unassigned
        assert plan.objective is not None
    # The greedy places under the rules itself (the fallback for what the topology
    # search cannot take): a plan that keeps every rule, not a refusal.
    plan = solve(s, solver="greedy", time_limit=0.5)
    assert plan.solver == "greedy" and validate(s, plan) == []


def test_topology_backend_refuses_what_it_cannot_express() -> None:
    s = two_zone_cluster()
    homeless = s.model_copy(update={"tasks": [*s.tasks, Task(id="new", group=None)]})
    with pytest.raises(UnsupportedError, match="current_agent"):
        solve(homeless, solver="topology", time_limit=0.5)


def test_topology_backend_is_deterministic_for_a_seed() -> None:
    s = two_zone_cluster()
    a = solve(s, solver="topology", time_limit=5, seed=3, deterministic=True)
    b = solve(s, solver="topology", time_limit=5, seed=3, deterministic=True)
    assert a.agent_of() == b.agent_of() and a.objective == b.objective


# -- the topology backend where each rule bites and where it does not ------------------------

def _cheap(zone_hood: dict[str, tuple[str, str]], cheap: set[str], tasks: list[Task],
           groups: list[Group], **topo_kw: object) -> Snapshot:
    """Agents with cpu capacity 4; safety 4 on the `cheap` ones, 0 elsewhere (load cost 10)."""
    agents = [Agent(id=a, zone=z, neighbourhood=h, capacity={"cpu": 4},
                    safety={"cpu": 4 if a in cheap else 0}) for a, (z, h) in zone_hood.items()]
    return Snapshot(agents=agents, tasks=tasks, weights=Weights(cost=0, migrations=1),
                    topology=Topology(groups=groups, load_cost={"cpu": 10}, **topo_kw))


FOUR = {"a1": ("a", "n1"), "a2": ("a", "n2"), "b1": ("b", "n1"), "b2": ("b", "n2")}


def _t(tid: str, group: str, home: str, cpu: float = 1, move: float = 1) -> Task:
    return Task(id=tid, group=group, current_agent=home, demand={"cpu": cpu},
                migration_cost=move)


RULE_CASES = {
    # Both replicas want the one cheap agent; anti-affinity lets one in.
    "anti_affinity": (
        _cheap(FOUR, {"a1"}, [_t("w0", "web", "a2"), _t("w1", "web", "b1")],
               [Group(id="web", anti_affinity=True)]),
        _cheap(FOUR, {"a1"}, [_t("w0", "web0", "a2"), _t("w1", "web1", "b1")],
               [Group(id="web0", anti_affinity=True), Group(id="web1", anti_affinity=True)])),
    # Both replicas want zone a; a spread of 2 keeps one in zone b.
    "spread": (
        _cheap(FOUR, {"a1", "a2"}, [_t("d0", "db", "b1"), _t("d1", "db", "b2")],
               [Group(id="db", anti_affinity=True, min_spread=2)]),
        _cheap(FOUR, {"a1", "a2"}, [_t("d0", "db", "b1"), _t("d1", "db", "b2")],
               [Group(id="db", anti_affinity=True, min_spread=1)])),
    # web wants a2 (neighbourhood n2) but its db stays in n1 (too dear to move).
    "dependency": (
        _cheap(FOUR, {"a2"}, [_t("w", "web", "b1"), _t("d", "db", "a1", move=1000)],
               [Group(id="web", anti_affinity=True, depends_on=["db"]),
                Group(id="db", anti_affinity=True)]),
        _cheap(FOUR, {"a2"}, [_t("w", "web", "b1"), _t("d", "db", "a1", move=1000)],
               [Group(id="web", anti_affinity=True), Group(id="db", anti_affinity=True)])),
}


@pytest.mark.parametrize("rule", sorted(RULE_CASES))
def test_topology_backend_where_the_rule_bites_and_where_it_does_not(rule: str) -> None:
    ruled, free = RULE_CASES[rule]
    with_rule = solve(ruled, solver="topology", time_limit=5, seed=0, deterministic=True)
    without = solve(free, solver="topology", time_limit=5, seed=0, deterministic=True)
    assert validate(ruled, with_rule) == [] and validate(free, without) == []
    assert with_rule.objective is not None and without.objective is not None
    # Where it bites the rule costs something ...
    assert with_rule.objective > without.objective
    # ... and the free optimum breaks it when read under the rule.
    assert rule in {v.kind for v in validate(ruled, without)}


def test_topology_backend_transient_bites_a_swap() -> None:
    agents = [Agent(id="x-home", capacity={"cpu": 3, "mem": 3}, safety={"cpu": 0, "mem": 3}),
              Agent(id="y-home", capacity={"cpu": 3, "mem": 3}, safety={"cpu": 3, "mem": 0})]
    tasks = [Task(id="x", current_agent="x-home", demand={"cpu": 3, "mem": 1}, migration_cost=0),
             Task(id="y", current_agent="y-home", demand={"cpu": 1, "mem": 3}, migration_cost=0)]
    for transient, swapped in ((["cpu"], False), ([], True)):
        s = Snapshot(agents=agents, tasks=tasks, weights=Weights(cost=0, migrations=0),
                     topology=Topology(transient=transient, load_cost={"cpu": 10, "mem": 10}))
        plan = solve(s, solver="topology", time_limit=5, seed=0, deterministic=True)
        assert validate(s, plan) == []
        assert (plan.agent_of() == {"x": "y-home", "y": "x-home"}) is swapped, plan.agent_of()
