"""`allocator topology`: on a generated two-zone cluster with one zone overloaded, the
report names that zone hot, prices its safety capacity and names the binding rules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from allocator.topology import analyse_topology, with_added, with_removed
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


def test_report_names_the_overloaded_zone_prices_and_binding_rules() -> None:
    s = two_zone_cluster()
    report = analyse_topology(s, what_if=False)
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
    json.dumps(report.to_dict())


def test_what_if_snapshots() -> None:
    s = two_zone_cluster()
    added = with_added(s, "east", 2)
    assert [a.id for a in added.agents][-2:] == ["new-east-0", "new-east-1"]
    assert all(a.zone == "east" for a in added.agents[-2:])
    removed, why = with_removed(s, "west", 1)
    assert removed is not None and why == ""
    assert len(removed.agents) == len(s.agents) - 1
    gone = {a.id for a in s.agents} - {a.id for a in removed.agents}
    assert not any(t.current_agent in gone for t in removed.tasks)
    none, why = with_removed(s, "west", 3)
    assert none is None and "3 agent" in why


def test_cli_topology_table_and_errors(tmp_path: Path) -> None:
    from allocator.cli import app

    r = CliRunner().invoke(app, ["topology", str(EXAMPLE), "--no-what-if"])
    assert r.exit_code == 0, r.output
    assert "hot: east" in r.output
    r = CliRunner().invoke(app, ["topology", str(EXAMPLE), "--no-what-if", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["cold"] == ["west"]
    r = CliRunner().invoke(app, ["topology", str(EXAMPLE), "--k", "0"])
    assert r.exit_code == 2
