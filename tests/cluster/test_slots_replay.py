"""The executor replay with multi-slot agents: a task holds its width of one agent's slots."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocator.errors import InvalidInputError
from allocator.workloads import Trace
from allocator.workloads.replay import make_agents, replay


def workload(arrival: list[float], work: list[float], width: list[int]) -> Trace:
    n = len(arrival)
    return Trace(tasks=pl.DataFrame({
        "id": [f"j{i}" for i in range(n)], "arrival": [float(x) for x in arrival],
        "work": [float(x) for x in work], "demand": [float(x) for x in width],
        "deadline": [None] * n, "priority": ["normal"] * n, "tenant": [None] * n,
    }, schema_overrides={"deadline": pl.Float64, "tenant": pl.String}))


def max_held(rec: pl.DataFrame, width: dict[str, float]) -> dict[str, float]:
    """Most slots held at once on each agent (ends before starts at one instant)."""
    out = {}
    for (agent,), g in rec.filter(pl.col("agent").is_not_null()).group_by(["agent"]):
        w = np.array([width[i] for i in g["id"]])
        t = np.concatenate([g["start"].to_numpy(), g["end"].to_numpy()])
        d = np.concatenate([w, -w])
        out[str(agent)] = float(np.cumsum(d[np.lexsort((d, t))]).max())
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(1, 20), st.integers(1, 6)),
                min_size=1, max_size=25),
       st.sampled_from(["fifo", "jsq", "p2c", "edf+stealing", "wfq"]))
def test_no_agent_holds_more_slots_than_it_has(jobs: list[tuple[int, int, int]],
                                              policy: str) -> None:
    jobs.sort()
    w = workload(*map(list, zip(*jobs, strict=True)))  # type: ignore[arg-type]
    r = replay(w, policy, agents=2, slots=4, samples=0)
    rec = r.records
    width = dict(zip(w.tasks["id"], w.tasks["demand"], strict=True))
    assert all(v <= 4 for v in max_held(rec, width).values())
    done = rec.filter(pl.col("outcome") == "complete")
    assert ((done["end"] - done["start"] - done["work"]).abs() < 1e-9).all()
    assert (done["start"] >= done["arrival"]).all()
    # every task ends exactly once: wider than a node -> rejected, the rest complete
    wide = {i for i, x in width.items() if x > 4}
    assert set(rec.filter(pl.col("outcome") == "reject")["id"]) == wide
    assert done.height + len(wide) == rec.height
    assert r.row()["lost"] == 0 and r.row()["duplicated"] == 0


def test_two_narrow_tasks_share_a_node_a_wide_one_waits() -> None:
    # one node of 4 slots: two 2-wide tasks run side by side, the 4-wide waits for both
    w = workload([0, 0, 1], [10, 10, 5], [2, 2, 4])
    rec = replay(w, "fifo", agents=1, slots=4, samples=0).records.sort("id")
    assert rec["start"].to_list() == [0.0, 0.0, 10.0]
    r = replay(w, "fifo", agents=1, slots=4, samples=0).row()
    assert r["utilisation"] == pytest.approx((20 + 20 + 20) / (4 * 15))
    with pytest.raises(InvalidInputError, match="slots"):
        make_agents(2, slots=0)


def test_cli_slots(tmp_path: object) -> None:
    import json
    from pathlib import Path

    from typer.testing import CliRunner

    from allocator.cli import app

    p = Path(str(tmp_path)) / "t.swf"
    p.write_text("".join(f"{i + 1} {i * 5} 0 20 {1 + i % 6} -1 -1 -1 -1 -1 1 1 1 -1 -1 -1 -1 -1\n"
                         for i in range(30)))
    r = CliRunner().invoke(app, ["replay", str(p), "--agents", "2", "--slots", "4", "-p",
                                 "fifo", "--json"])
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout.strip().splitlines()[-1])
    assert row["rejected"] == 10 and row["completed"] == 20  # widths 5 and 6 do not fit
    assert "2 agents of 4 slots" in r.output
    r = CliRunner().invoke(app, ["replay", str(p), "--slots", "4", "-p", "fifo"])
    assert r.exit_code == 2 and "--slots needs --agents" in r.output
