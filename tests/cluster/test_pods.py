"""Alibaba pods on nodes (allocator.cluster.pods) checked by validate.check_pod_schedule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from allocator.cli import app
from allocator.cluster.pods import (
    DEFAULT_POD_POLICIES,
    POD_ROW_KEYS,
    NodeShape,
    PodJobs,
    pod_policy_names,
    pod_row,
    read_pods,
    simulate_pods,
)
from allocator.cluster.validate import check_pod_schedule
from allocator.errors import InvalidInputError

runner = CliRunner()
OPENB = Path(__file__).resolve().parents[2] / "data" / "traces" / "openb_pod_list_default.csv"
SMALL = NodeShape(cpu=10_000, memory=1_000, gpu=4)


def pods(rows: list[tuple[float, float, int, int, int, int]]) -> PodJobs:
    """(submit, run, cpu, memory, num_gpu, gpu_milli) per pod."""
    cols = list(zip(*rows, strict=True))
    return PodJobs.from_arrays(*cols)


def check(j: PodJobs, s: object) -> list[str]:
    return pod_row(j, s)["_problems"]  # type: ignore[arg-type]


def test_fragmentation_pod_fits_the_total_but_no_node_and_waits() -> None:
    # Two pods too big in cpu to share a node each take 2 of a node's 4 GPUs; at t=1
    # the cluster has 4 free GPUs, but 2 per node, so a 4-GPU pod waits until t=50.
    j = pods([(0, 100, 6000, 10, 2, 1000), (0, 50, 6000, 10, 2, 1000),
              (1, 10, 1000, 10, 4, 1000)])
    for p in DEFAULT_POD_POLICIES:
        s = simulate_pods(j, 2, SMALL, p)
        assert set(s.node[:2].tolist()) == {0, 1}
        assert s.start[2] == 50.0 and s.node[2] == int(s.node[1])
        assert not check(j, s)


def test_easy_backfills_a_short_pod_and_keeps_the_head_reservation() -> None:
    j = pods([(0, 100, 1000, 10, 3, 1000),   # holds 3 of the 4 GPUs until 100
              (1, 10, 1000, 10, 4, 1000),    # blocked head: reservation at 100
              (2, 50, 1000, 10, 1, 1000),    # ends at 52 <= 100: backfilled
              (3, 500, 1000, 10, 1, 1000)])  # would delay the head: waits
    fcfs = simulate_pods(j, 1, SMALL, "fcfs")
    easy = simulate_pods(j, 1, SMALL, "easy")
    assert fcfs.start.tolist() == [0, 100, 110, 110]
    assert easy.start.tolist() == [0, 100, 2, 110]
    assert not check(j, fcfs) and not check(j, easy)


def test_best_fit_packs_gpu_shares_and_leaves_room_first_fit_does_not() -> None:
    one_node = NodeShape(cpu=10_000, memory=1_000, gpu=2)
    j = pods([(0, 100, 10, 1, 1, 500), (0, 100, 10, 1, 1, 700),
              (0, 100, 10, 1, 1, 300), (0, 100, 10, 1, 1, 500)])
    ff = simulate_pods(j, 1, one_node, "fcfs:first-fit")
    bf = simulate_pods(j, 1, one_node, "fcfs:best-fit")
    assert ff.gpus[2] == (0,) and ff.start[3] == 100
    assert bf.gpus[2] == (1,) and bf.start[3] == 0
    assert not check(j, ff) and not check(j, bf)


def test_checker_catches_over_packed_nodes_and_shared_gpus() -> None:
    j = pods([(0, 100, 6000, 10, 1, 600), (0, 100, 6000, 10, 1, 600)])
    s = simulate_pods(j, 2, SMALL, "fcfs")
    assert not check(j, s)
    shape = (SMALL.cpu, SMALL.memory, SMALL.gpu)
    packed = s.node.copy()
    packed[1] = packed[0]
    probs = check_pod_schedule(j.submit, j.run, j.cpu, j.memory, j.num_gpu, j.gpu_milli, 2,
                               shape, s.log_job, packed, s.gpus, s.start, s.end)
    assert any("cpu holds 12000 of 10000" in p for p in probs)
    gpus = [(0,), (0,)]
    probs = check_pod_schedule(j.submit, j.run, [10, 10], j.memory, j.num_gpu, j.gpu_milli, 2,
                               shape, s.log_job, [0, 0], gpus, s.start, s.end)
    assert any("GPU 0 holds 1200 of 1000" in p for p in probs)
    probs = check_pod_schedule(j.submit, j.run, j.cpu, j.memory, j.num_gpu, j.gpu_milli, 2,
                               shape, s.log_job, s.node, [(0, 1), (7,)], s.start, s.end)
    assert any("distinct GPUs" in p for p in probs)
    probs = check_pod_schedule(j.submit, j.run, j.cpu, j.memory, j.num_gpu, j.gpu_milli, 2,
                               shape, s.log_job, s.node, s.gpus, s.start - 1, s.end - 1)
    assert any("before they were submitted" in p for p in probs)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_policy_valid_on_generated_pod_traces(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 150
    k = rng.choice([0, 1, 1, 1, 2, 4], size=n)
    gm = np.where(k == 1, rng.choice([100, 250, 500, 1000], size=n), np.where(k > 1, 1000, 0))
    j = PodJobs.from_arrays(np.sort(rng.uniform(0, 2000, n)), rng.exponential(120, n).round(),
                            rng.integers(500, 9000, n), rng.integers(1, 900, n), k, gm)
    for p in pod_policy_names():
        s = simulate_pods(j, 3, SMALL, p)
        row = pod_row(j, s)
        assert row["valid"], (p, row["_problems"])
        assert row["mean_wait"] > 0  # the generated load queues
        if p.startswith("fcfs"):  # nobody overtakes under FCFS
            assert (np.diff(s.start) >= 0).all()
        again = simulate_pods(j, 3, SMALL, p)
        assert np.array_equal(again.start, s.start) and again.gpus == s.gpus


def test_node_shape_errors_name_the_field() -> None:
    for bad in ("cpu=1,memory=2", "cpu=x,memory=1,gpu=1", "cpu=0,memory=1,gpu=1", "gpu"):
        with pytest.raises(InvalidInputError) as e:
            NodeShape.parse(bad)
        assert e.value.field == "node_shape"
    j = pods([(0, 1, 20_000, 1, 0, 0)])
    with pytest.raises(InvalidInputError):
        simulate_pods(j, 1, SMALL, "fcfs")
    with pytest.raises(InvalidInputError):
        simulate_pods(pods([(0, 1, 1, 1, 0, 0)]), 1, SMALL, "sjf+easy")


def test_openb_window_replays_valid_and_cli_rows() -> None:
    shape = NodeShape.parse("cpu=96000,memory=786432,gpu=8")
    j = read_pods(OPENB, shape, limit=400)
    assert len(j) == 400 and j.dropped["never scheduled (Pending)"] > 0
    assert np.nanmin(j.recorded_wait) >= 0
    r = runner.invoke(app, ["replay", str(OPENB), "--limit", "400", "--nodes", "2", "--json",
                            "-p", "fcfs", "-p", "easy:best-fit", "-p", "greedy:best-fit"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert [x["policy"] for x in rows] == ["fcfs", "easy:best-fit", "greedy:best-fit"]
    assert all(list(x) == list(POD_ROW_KEYS) and x["valid"] and x["nodes"] == 2 for x in rows)
    bad = runner.invoke(app, ["replay", str(OPENB), "--node-shape", "cpu=1"])
    assert bad.exit_code != 0 and "node_shape" in bad.output + str(bad.stderr)
    bad = runner.invoke(app, ["replay", str(OPENB), "--nodes", "2", "--agents", "3"])
    assert bad.exit_code != 0


def test_time_and_arrival_scale_apply_to_the_pod_replay() -> None:
    """--time-scale and --arrival-scale used to be ignored on a pod CSV (the same rows for any
    factor, even 0); they scale the pod replay as they do the executor's."""
    def row(*extra: str) -> dict[str, float]:
        r = runner.invoke(app, ["replay", str(OPENB), "--limit", "40", "--nodes", "2",
                                "-p", "easy", "--json", *extra])
        assert r.exit_code == 0, r.output
        return json.loads(next(x for x in r.stdout.splitlines() if x.startswith("{")))

    base = row()
    assert base["mean_wait"] > 0
    double = row("--time-scale", "2")
    assert double["mean_wait"] == pytest.approx(2 * base["mean_wait"])
    assert double["recorded_mean_wait"] == pytest.approx(2 * base["recorded_mean_wait"])
    assert row("--arrival-scale", "0.5")["mean_wait"] > base["mean_wait"]  # denser arrivals
    for flag in ("--time-scale", "--arrival-scale"):
        bad = runner.invoke(app, ["replay", str(OPENB), "--nodes", "2", flag, "0"])
        assert bad.exit_code == 2 and flag.strip("-").replace("-", "_") in bad.output


def test_non_finite_numbers_are_bad_rows_and_an_empty_replay_says_why(tmp_path: Path) -> None:
    head = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,creation_time,deletion_time,scheduled_time"
    rows = ["p0,1000,10,0,0,0,50,5", "p1,nan,10,0,0,1,50,5", "p2,1000,inf,0,0,2,50,5",
            "p3,1000,10,0,0,3,nan,5"]
    p = tmp_path / "pods.csv"
    p.write_text("\n".join([head, *rows]) + "\n")
    j = read_pods(p, SMALL)
    # NaN sorts above every node size: it was dropped as "larger than a node"
    assert len(j) == 1 and j.dropped == {"bad number (cpu, memory, gpu or times)": 3}
    p.write_text("\n".join([head, "p0,1000,10,0,0,10,5,8"]) + "\n")
    r = runner.invoke(app, ["replay", str(p), "--nodes", "2"])
    assert r.exit_code == 2
    assert "no replayable pods (dropped: 1 deleted before scheduled" in r.output
