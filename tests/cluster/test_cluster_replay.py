"""Wide-job replay: the independent checker on generated traces for every policy, the
EASY and conservative promises on hand-made cases, the reader's cleaning, the CLI row."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from allocator.cli import app
from allocator.cluster import ClusterJobs, policy_names, read_swf_cluster, simulate
from allocator.cluster.metrics import ROW_KEYS, replay_row
from allocator.cluster.validate import check_schedule
from allocator.errors import InvalidInputError

runner = CliRunner()


@st.composite
def wide_traces(draw: st.DrawFn) -> tuple[ClusterJobs, int]:
    """Small machines, widths up to the machine, ties in submit times, zero run times,
    estimates from exact to far too long, users and queues for the fair/priority orders."""
    procs = draw(st.integers(1, 12))
    n = draw(st.integers(1, 25))
    submit = sorted(draw(st.lists(st.integers(0, 60), min_size=n, max_size=n)))
    run = draw(st.lists(st.integers(0, 40), min_size=n, max_size=n))
    over = draw(st.lists(st.integers(0, 60), min_size=n, max_size=n))
    width = draw(st.lists(st.integers(1, procs), min_size=n, max_size=n))
    user = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    queue = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    est = [r + o for r, o in zip(run, over, strict=True)]
    return ClusterJobs.from_arrays(submit, run, width, est, user=user, group=user,
                                   klass=queue), procs


def check(jobs: ClusterJobs, procs: int, policy: str) -> np.ndarray:
    s = simulate(jobs, procs, policy)
    assert check_schedule(jobs.submit, jobs.run, jobs.width, procs, s.log_job, s.start,
                          s.end) == [], policy
    return s.start


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wide_traces())
def test_every_policy_gives_a_valid_schedule_and_keeps_its_promises(
        trace: tuple[ClusterJobs, int]) -> None:
    jobs, procs = trace
    for p in policy_names():
        s = simulate(jobs, procs, p)
        assert check_schedule(jobs.submit, jobs.run, jobs.width, procs, s.log_job, s.start,
                              s.end) == [], p
        promised = ~np.isnan(s.first_reservation)
        if p.endswith("conservative"):
            # every job is promised a start on arrival, and no promise is broken
            assert promised.all()
            assert (s.start <= s.first_reservation + 1e-9).all(), p
        if p in ("easy", "fcfs+easy"):
            # in FCFS order the head stays the head: its shadow time is never broken
            assert (s.start[promised] <= s.first_reservation[promised] + 1e-9).all()
    # same jobs, same schedule
    a = simulate(jobs, procs, "fair-user+easy")
    b = simulate(jobs, procs, "fair-user+easy")
    assert np.array_equal(a.start, b.start)


def test_the_checker_catches_each_kind_of_violation() -> None:
    sub, run, w = [0.0, 0.0], [10.0, 10.0], [3, 3]
    ok = check_schedule(sub, run, w, 6, [0, 1], [0.0, 0.0], [10.0, 10.0])
    assert ok == []
    assert "busy" in " ".join(check_schedule(sub, run, w, 5, [0, 1], [0, 0], [10, 10]))
    assert "more than once" in " ".join(check_schedule(sub, run, w, 6, [0, 1, 1], [0, 0],
                                                       [10, 10]))
    assert "never started" in " ".join(check_schedule(sub, run, w, 6, [0], [0, 0], [10, 10]))
    assert "before" in " ".join(check_schedule([0, 5], run, w, 6, [0, 1], [0, 0], [10, 10]))
    assert "run time" in " ".join(check_schedule(sub, run, w, 6, [0, 1], [0, 0], [10, 11]))
    # back to back on the same processors is fine: an end at t frees them for a start at t
    assert check_schedule(sub, run, [6, 6], 6, [0, 1], [0, 10], [10, 20]) == []


def hand_made() -> ClusterJobs:
    """P = 10. A (6 procs) runs 0..100; B (8) cannot start, so it is the head with the
    shadow time 100 and 2 extra processors; C (4, 200 s) fits now but would end after 100
    on processors B needs; D (2, 500 s) fits in the extra ones; E (2, 50 s) ends by 100."""
    return ClusterJobs.from_arrays(
        submit=[0, 1, 2, 3, 4], run=[100, 100, 200, 500, 50], width=[6, 8, 4, 2, 2],
        ids=list("ABCDE"))


def test_easy_keeps_the_head_reservation_and_backfills_small_jobs() -> None:
    jobs = hand_made()
    s = simulate(jobs, 10, "easy")
    start = dict(zip(jobs.ids, s.start.tolist(), strict=True))
    assert start["B"] == 100.0 == s.first_reservation[1]  # the head starts at its shadow
    assert start["D"] == 3.0  # on the extra processors
    assert start["E"] == 4.0  # ends (54) before the shadow time
    assert start["C"] >= 200.0  # would have taken processors B needs
    f = dict(zip(jobs.ids, simulate(jobs, 10, "fcfs").start.tolist(), strict=True))
    assert f["E"] > start["E"] and f["D"] > start["D"]  # no backfilling: both wait
    assert check_schedule(jobs.submit, jobs.run, jobs.width, 10, s.log_job, s.start,
                          s.end) == []


def test_easy_reservation_holds_when_estimates_are_too_long() -> None:
    # A is estimated at 300 s but runs 100: the head may start earlier, never later
    jobs = ClusterJobs.from_arrays(submit=[0, 1, 2], run=[100, 50, 30], width=[6, 8, 2],
                                   estimate=[300, 60, 290])
    s = simulate(jobs, 10, "easy")
    assert s.first_reservation[1] == 300.0 and s.start[1] == 100.0
    assert s.start[2] == 2.0  # 2 extra processors at the shadow time


def test_conservative_protects_every_queued_job_where_easy_protects_the_head() -> None:
    """A (6) runs 0..100; B (7) is the head (shadow 100, 3 extra); C (8) queues behind B,
    promised 200 by conservative; D (3, 1000 s) fits in EASY's 3 extra processors, and
    then holds them when C wants to start."""
    jobs = ClusterJobs.from_arrays(submit=[0, 1, 2, 3], run=[100, 100, 100, 1000],
                                   width=[6, 7, 8, 3])
    e = simulate(jobs, 10, "easy")
    c = simulate(jobs, 10, "conservative")
    assert e.start[3] == 3.0 and e.start[2] == 1003.0  # EASY: C waits for D
    assert c.first_reservation[2] == 200.0 == c.start[2]  # conservative: C as promised
    assert c.start[3] == 300.0  # D only where it delays no one
    for s in (e, c):
        assert check_schedule(jobs.submit, jobs.run, jobs.width, 10, s.log_job, s.start,
                              s.end) == []


def test_orders() -> None:
    # one processor busy until 10; then the queue order decides
    jobs = ClusterJobs.from_arrays(submit=[0, 1, 2, 3], run=[10, 30, 5, 20], width=[1] * 4,
                                   user=[0, 0, 1, 0])
    order = {p: np.argsort(simulate(jobs, 1, p).start, kind="stable").tolist()
             for p in ("fcfs", "sjf", "edf", "fair-user")}
    assert order["fcfs"] == [0, 1, 2, 3]
    assert order["sjf"] == [0, 2, 3, 1]
    assert order["edf"] == [0, 2, 3, 1]  # deadlines 31, 7, 23
    assert order["fair-user"][:2] == [0, 2]  # user 1 has used nothing


def swf_text(header: bool = True) -> str:
    lines = ["; MaxProcs: 8", "; MaxNodes: 4"] if header else ["; a log"]
    rows = [(1, 0, 5, 100, 4, 8, 200), (2, 10, 0, 50, 8, 8, 100), (3, 20, 0, 30, 2, 2, 20),
            (4, 30, 0, -1, 2, 2, 60), (5, 40, 0, 10, -1, -1, 60), (6, 50, 3, 10, 16, 16, 60),
            (7, 60, -1, 10, -1, 3, -1)]
    for j, sub, wait, run, procs, req, rt in rows:
        lines.append(f"{j} {sub} {wait} {run} {procs} -1 -1 {req} {rt} -1 1 1 1 -1 -1 -1 -1 -1")
    return "\n".join(lines) + "\n"


def test_reader_counts_what_it_drops_and_fills(tmp_path: Path) -> None:
    p = tmp_path / "t.swf.gz"
    p.write_bytes(gzip.compress(swf_text().encode()))
    tr = read_swf_cluster(p)
    assert tr.procs == 8 and tr.nodes == 4 and tr.procs_source.startswith("MaxProcs")
    assert tr.bad == {"unknown run time": 1}
    assert tr.jobs.dropped == {"width unknown (fields 5 and 8 are -1)": 1,
                               "wider than the machine (8 processors)": 1}
    assert tr.jobs.filled == {"width from requested processors": 1,
                              "estimate unknown (run time used)": 1,
                              "estimate below the run time (run time used)": 1}
    assert tr.jobs.ids == ["1", "2", "3", "7"]
    assert tr.jobs.estimate.tolist() == [200, 100, 30, 10]
    assert np.isnan(tr.jobs.recorded_wait[3])
    row = replay_row(tr.jobs, simulate(tr.jobs, tr.procs, "easy"))
    assert row["recorded_mean_wait"] == pytest.approx(5 / 3)
    assert row["valid"] is True
    with pytest.raises(InvalidInputError, match=r"neither MaxProcs nor MaxNodes.*--procs"):
        read_swf_cluster(swf_text(header=False).encode())
    zero = swf_text().replace("; MaxProcs: 8", "; MaxProcs: 0").replace("; MaxNodes: 4", "")
    with pytest.raises(InvalidInputError, match=r"MaxProcs: 0 is no machine size.*--procs"):
        read_swf_cluster(zero.encode())  # it said "gives neither MaxProcs nor MaxNodes"


def test_cli_rows_have_exactly_the_issue_fields(tmp_path: Path) -> None:
    p = tmp_path / "t.swf"
    p.write_text(swf_text())
    r = runner.invoke(app, ["replay", str(p), "-p", "fcfs", "-p", "easy", "-p",
                            "edf+conservative", "--json"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert [x["policy"] for x in rows] == ["fcfs", "easy", "edf+conservative"]
    for x in rows:
        assert tuple(x) == ROW_KEYS and x["valid"] is True and x["jobs"] == 4
        assert x["procs"] == 8
    r = runner.invoke(app, ["replay", str(p), "--procs", "16", "--by-width", "--json",
                            "-p", "sjf+easy", "--job-windows", "2"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert rows[0]["procs"] == 16 and rows[0]["jobs"] == 5
    assert {x["width"] for x in rows[1:]} == {"2-4", "5-16"}  # widths 4, 8, 2, 16, 3
    r = runner.invoke(app, ["replay", "--policies"])
    assert r.exit_code == 0 and "fcfs+easy" in r.output and "conservative" in r.output
    assert "jsq" in r.output
    r = runner.invoke(app, ["replay", str(p), "-p", "easy", "--agents", "3"])
    assert r.exit_code == 2 and "wide-job policy" in r.output
    r = runner.invoke(app, ["replay", str(p), "-p", "easy", "--procs", "2"])
    assert r.exit_code == 0  # wider jobs are dropped and counted
    assert "wider than the machine (2 processors)" in r.output


def test_a_log_with_nothing_to_replay_says_why_each_row_was_dropped(tmp_path: Path) -> None:
    """A log whose rows all lack a width (or are all too wide) names the reason, not just 'none'."""
    head = "; MaxProcs: 4\n"
    rows = [f"{j} {10 * j} 0 50 -1 -1 -1 -1 100 -1 1 1 1 -1 -1 -1 -1 -1" for j in (1, 2, 3)]
    p = tmp_path / "nowidth.swf"
    p.write_text(head + "\n".join(rows) + "\n")
    r = runner.invoke(app, ["replay", str(p), "-p", "easy"])
    assert r.exit_code == 2
    assert "no replayable jobs of 3 rows" in r.output
    assert "3 width unknown (fields 5 and 8 are -1)" in r.output
    r = runner.invoke(app, ["replay", str(p), "-p", "easy", "--procs", "2"])
    assert r.exit_code == 2 and "width unknown" in r.output


def test_capacity_on_a_wide_log_answers_in_processors_and_nodes(tmp_path: Path) -> None:
    # 2 processors per node; jobs of 4 processors arriving every 10 s, each running 30 s:
    # 12 processors keep up without waiting, fewer make them queue
    lines = ["; MaxProcs: 8", "; MaxNodes: 4"]
    lines += [f"{i + 1} {i * 10} 0 30 4 -1 -1 4 30 -1 1 1 1 -1 -1 -1 -1 -1" for i in range(40)]
    p = tmp_path / "w.swf"
    p.write_text("\n".join(lines) + "\n")
    r = runner.invoke(app, ["capacity", "--trace", str(p), "--sla", "mean_wait<=0",
                            "--curve-span", "1", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["procs"] == 12 and out["nodes"] == 6 and out["procs_per_node"] == 2
    assert out["policy"] == "easy" and out["sla_met"] is True
    assert out["log_machine"]["procs"] == 8 and out["log_machine"]["sla_met"] is False
    assert [c["procs"] for c in out["curve"]] == [10, 12, 14]
    assert all(c["valid"] == 1.0 for c in out["curve"])
    assert [c["sla_met"] for c in out["curve"]] == [False, True, True]
    r = runner.invoke(app, ["capacity", "--trace", str(p), "--sla", "miss_rate<=0.1"])
    assert r.exit_code == 2 and "not measured on a wide-job log" in r.output


def test_on_the_bundled_kth_log_backfilling_and_our_policies_beat_fcfs() -> None:
    """The issue's claim on real data (the first 5,000 KTH-SP2 jobs, 100 processors from
    the header; docs/benchmarks/replay-wide.md has the whole log): EASY's mean bounded
    slowdown is far below FCFS's, and fair share / EDF with EASY are at or below EASY."""
    root = Path(__file__).resolve().parents[2]
    tr = read_swf_cluster(root / "data" / "traces" / "KTH-SP2-1996-2.1-cln.swf.gz",
                          limit=5000)
    assert tr.procs == 100 and len(tr.jobs) == 5000
    rows = {p: replay_row(tr.jobs, simulate(tr.jobs, tr.procs, p))
            for p in ("fcfs", "easy", "fair-user+easy", "edf+easy")}
    assert all(r["valid"] for r in rows.values())
    bsld = {p: r["mean_bounded_slowdown"] for p, r in rows.items()}
    assert bsld["easy"] < bsld["fcfs"] / 10
    assert bsld["fair-user+easy"] <= bsld["easy"] and bsld["edf+easy"] <= bsld["easy"]
    assert rows["easy"]["recorded_mean_bounded_slowdown"] > bsld["easy"]


def test_time_and_arrival_scale_apply_to_the_wide_job_replay(tmp_path: Path) -> None:
    """--time-scale and --arrival-scale used to be ignored on an SWF log (the same rows for
    any factor, even 0); they scale the wide-job replay as they do the executor's."""
    p = tmp_path / "t.swf"
    p.write_text(swf_text())

    def row(*extra: str) -> dict[str, float]:
        r = runner.invoke(app, ["replay", str(p), "-p", "easy", "--json", *extra])
        assert r.exit_code == 0, r.output
        return json.loads(next(x for x in r.stdout.splitlines() if x.startswith("{")))

    base = row()
    assert base["mean_wait"] > 0
    double = row("--time-scale", "2")  # every time doubled: the same schedule, twice as long
    assert double["mean_wait"] == pytest.approx(2 * base["mean_wait"])
    assert double["recorded_mean_wait"] == pytest.approx(2 * base["recorded_mean_wait"])
    assert double["utilisation"] == pytest.approx(base["utilisation"])
    sparse = row("--arrival-scale", "100")  # arrivals 100x apart: nobody waits
    assert sparse["mean_wait"] == 0 and sparse["utilisation"] < base["utilisation"]
    tr = read_swf_cluster(p, time_scale=3.0, arrival_scale=0.5)
    assert tr.jobs.submit.tolist() == [0, 15, 30, 90]  # submits 0, 10, 20, 60 x 1.5
    assert tr.jobs.run.tolist() == [300, 150, 90, 30]
    for bad in ("0", "-1", "nan", "inf", "1e308"):
        for flag in ("--time-scale", "--arrival-scale"):
            r = runner.invoke(app, ["replay", str(p), "-p", "easy", flag, bad])
            assert r.exit_code == 2, (flag, bad, r.output)
            assert flag.strip("-").replace("-", "_") in r.output
    r = runner.invoke(app, ["capacity", "--trace", str(p), "--sla", "mean_wait<=0",
                            "--time-scale", "0"])  # the wide-job capacity planner too
    assert r.exit_code == 2 and "time_scale" in r.output


@pytest.mark.parametrize("flag", [["--report", "REPORT"], ["--speeds", "2"],
                                  ["--deadline", "none"],
                                  ["--flaky", "1:0.5:10"], ["--on-bad", "raise"]])
def test_executor_only_options_are_refused_on_a_wide_job_log(tmp_path: Path,
                                                              flag: list[str]) -> None:
    """They were silently ignored: --report wrote no report, --speeds changed nothing."""
    p = tmp_path / "t.swf"
    p.write_text(swf_text())
    args = [str(tmp_path / "rep") if a == "REPORT" else a for a in flag]
    r = runner.invoke(app, ["replay", str(p), "-p", "easy", *args])
    assert r.exit_code == 2, r.output
    assert flag[0] in r.output and "--agents" in r.output
    assert not (tmp_path / "rep").exists()


def test_a_seed_is_harmless_on_a_wide_job_log(tmp_path: Path) -> None:
    """The wide-job replay is deterministic: a seed (simulate --trace passes its own)
    changes nothing, so it is not refused."""
    p = tmp_path / "t.swf"
    p.write_text(swf_text())
    a = runner.invoke(app, ["replay", str(p), "-p", "easy", "--json"])
    b = runner.invoke(app, ["replay", str(p), "-p", "easy", "--json", "--seed", "5"])
    assert a.exit_code == b.exit_code == 0, b.output
    rows = [[x for x in r.stdout.splitlines() if x.startswith("{")] for r in (a, b)]
    strip = [[json.loads(x) for x in rs] for rs in rows]
    for ra, rb in zip(*strip, strict=True):
        ra.pop("wall_s", None), rb.pop("wall_s", None)
        assert ra == rb


@pytest.mark.parametrize("flag", [["--what-if", "agents+1"], ["--plot", "PLOT"],
                                  ["--seeds", "5"], ["--estimator", "stationary"]])
def test_executor_planner_options_are_refused_by_the_wide_job_planner(
        tmp_path: Path, flag: list[str]) -> None:
    """`capacity --trace LOG.swf` silently ignored them: no what-if rows, no PNG."""
    lines = ["; MaxProcs: 8"] + [f"{i + 1} {i * 10} 0 30 4 -1 -1 4 30 -1 1 1 1 -1 -1 -1 -1 -1"
                                 for i in range(10)]
    p = tmp_path / "w.swf"
    p.write_text("\n".join(lines) + "\n")
    args = [str(tmp_path / "c.png") if a == "PLOT" else a for a in flag]
    r = runner.invoke(app, ["capacity", "--trace", str(p), "--sla", "mean_wait<=0", *args])
    assert r.exit_code == 2, r.output
    assert flag[0] in r.output and "-p fifo" in r.output
    assert not (tmp_path / "c.png").exists()
