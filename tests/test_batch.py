"""Batch jobs: table input, atomic outputs, skip/force, isolated failures, the periodic loop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from allocator import batch as batch_mod
from allocator.batch import Watcher, latest_input, parse_duration, run_batch
from allocator.cli import app
from allocator.errors import InvalidInputError
from allocator.io import read_plan, read_snapshot, write_json_atomic
from allocator.io.tables import read_input, read_tables
from allocator.validate import validate
from models import Snapshot
from tests.conftest import EXAMPLES, ROOT

AGENTS_CSV = """id,capacity.cpu,capacity.mem,speed,skills,labels,status
a1,4,16,1,python;sql,zone=eu-1a;tier=gold,up
a2,4,16,2,python,zone=eu-1b,
a3,2,8,1,,,draining
"""
TASKS_CSV = """id,work,demand.cpu,demand.mem,priority,skills,current_agent,deadline,allowed_agents
t1,4,1,2,high,python,a1,,
t2,2.5,2,,,sql;python,a3,10,a1;a2
t3,6,1,4,low,,,,
"""


def write_tables(d: Path, *, parquet: bool = False, settings: dict | None = None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "agents.csv").write_text(AGENTS_CSV)
    (d / "tasks.csv").write_text(TASKS_CSV)
    if parquet:
        for name in ("agents", "tasks"):
            pl.read_csv(d / f"{name}.csv", infer_schema_length=0).write_parquet(
                d / f"{name}.parquet")
            (d / f"{name}.csv").unlink()
    if settings is not None:
        (d / "snapshot.json").write_text(json.dumps(settings))
    return d


# ------------------------------------------------------------------ tables


@pytest.mark.parametrize("parquet", [False, True], ids=["csv", "parquet"])
def test_tables_column_mapping(tmp_path: Path, parquet: bool) -> None:
    d = write_tables(tmp_path / "cluster", parquet=parquet,
                     settings={"name": "tables", "weights": {"cost": 0, "makespan": 1}})
    snap = read_input(d)
    assert snap.name == "tables" and snap.weights.makespan == 1
    a1, a2, a3 = snap.agents
    assert a1.capacity == {"cpu": 4, "mem": 16} and a1.skills == ["python", "sql"]
    assert a1.labels == {"zone": "eu-1a", "tier": "gold"}
    assert a2.speed == 2 and a2.status == "up" and a3.status == "draining" and a3.skills == []
    t1, t2, t3 = snap.tasks
    assert t1.priority == "high" and t1.demand == {"cpu": 1, "mem": 2}
    assert t2.work == 2.5 and t2.skills == ["sql", "python"] and t2.deadline == 10
    assert t2.allowed_agents == ["a1", "a2"] and t2.priority == "normal"
    assert t3.current_agent is None and t3.allowed_agents is None and t3.deadline is None


def test_table_errors_name_the_column_and_row(tmp_path: Path) -> None:
    d = write_tables(tmp_path / "x")
    (d / "tasks.csv").write_text("id,wrok\nt1,3\n")
    with pytest.raises(InvalidInputError, match="unknown column 'wrok'"):
        read_input(d)
    (d / "tasks.csv").write_text("id,work\nt1,3\nt2,-1\n")
    with pytest.raises(InvalidInputError, match=r"row 2 \(id 't2'\)\.work"):
        read_input(d)
    (d / "tasks.csv").write_text("id,work,current_agent\nt1,3,zz\n")
    with pytest.raises(InvalidInputError, match="unknown agent 'zz'"):
        read_input(d)
    with pytest.raises(InvalidInputError, match="no such file"):
        read_tables(d / "agents.csv", d / "nope.csv")


# ------------------------------------------------------------------ batch


def copy_example(name: str, dest: Path) -> Path:
    dest.write_text((EXAMPLES / name).read_text())
    return dest


def greedy_batch(inputs: list[Path], out: Path, **kw: object) -> list[batch_mod.BatchResult]:
    return run_batch(inputs, out, solver="greedy", time_limit=2, **kw)  # type: ignore[arg-type]


def test_batch_solves_skips_and_forces(tmp_path: Path) -> None:
    a = copy_example("seed-overloaded.json", tmp_path / "seed.json")
    b = write_tables(tmp_path / "cluster")
    out = tmp_path / "out"
    first = greedy_batch([a, b], out, fmt="parquet")
    assert [r.outcome for r in first] == ["solved", "solved"]
    for stem, src in (("seed", a), ("cluster", b)):
        plan = read_plan(out / f"{stem}.plan.json")
        assert validate(read_input(src), plan) == []
        table = pl.read_parquet(out / f"{stem}.assignments.parquet")
        assert table.height == len(plan.assignments) + len(plan.unassigned)
        assert json.loads((out / f"{stem}.done.json").read_text())["status"] == plan.status
    stamp = (out / "seed.plan.json").stat().st_mtime_ns

    again = greedy_batch([a, b], out, fmt="parquet")
    assert [r.outcome for r in again] == ["skipped", "skipped"]
    assert (out / "seed.plan.json").stat().st_mtime_ns == stamp

    forced = greedy_batch([a], out, fmt="parquet", force=True)
    assert forced[0].outcome == "solved"
    # A changed input is solved again without --force.
    snap = read_snapshot(a)
    a.write_text(snap.model_copy(update={"tasks": snap.tasks[1:]}).model_dump_json())
    assert greedy_batch([a, b], out, fmt="parquet")[0].outcome == "solved"
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_bad_input_is_isolated(tmp_path: Path) -> None:
    good = copy_example("priorities.json", tmp_path / "good.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"agents": [{"id": "a", "speed": -1}]}')
    out = tmp_path / "out"
    res = greedy_batch([bad, tmp_path / "missing.json", good], out)
    assert [r.outcome for r in res] == ["failed", "failed", "solved"]
    assert "speed" in (res[0].error or "") and "no such file" in (res[1].error or "")
    assert (out / "good.plan.json").is_file() and not (out / "bad.plan.json").exists()


def test_crash_before_manifest_means_solve_again(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    a = copy_example("priorities.json", tmp_path / "p.json")
    out = tmp_path / "out"
    greedy_batch([a], out)
    old = (out / "p.plan.json").read_text()
    calls = {"n": 0}
    real_replace = os.replace

    def failing_replace(src: str, dst: str | Path) -> None:
        calls["n"] += 1
        if str(dst).endswith("p.plan.json"):
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    (out / "p.done.json").unlink()
    res = greedy_batch([a], out)
    assert res[0].outcome == "failed" and "disk full" in (res[0].error or "")
    # The old plan is intact, no temporary file is left, and no manifest was written.
    assert (out / "p.plan.json").read_text() == old
    assert not list(out.glob(".*")) and not (out / "p.done.json").exists()
    monkeypatch.setattr(os, "replace", real_replace)
    assert greedy_batch([a], out)[0].outcome == "solved"


def test_write_json_atomic_keeps_old_file_on_failure(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "x.json"
    write_json_atomic(p, '{"v": 1}')

    def boom(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(KeyboardInterrupt):
        write_json_atomic(p, '{"v": 2}')
    assert json.loads(p.read_text()) == {"v": 1} and list(tmp_path.iterdir()) == [p]


def test_cli_batch_summary_and_exit_code(tmp_path: Path) -> None:
    good = copy_example("priorities.json", tmp_path / "good.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    runner = CliRunner()
    out = tmp_path / "out"
    r = runner.invoke(app, ["batch", str(good), str(bad), "--out", str(out), "--solver",
                            "greedy"])
    assert r.exit_code == 1
    assert "solved 1, skipped 0, failed 1" in r.stdout and "invalid JSON" in r.stderr
    r = runner.invoke(app, ["batch", str(good), "--out", str(out), "--solver", "greedy"])
    assert r.exit_code == 0 and "skipped 1" in r.stdout
    assert (out / "good.assignments.csv").read_text().startswith("task,agent,start,end,reason")


# ------------------------------------------------------------------ the periodic loop


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("250ms", 0.25), ("2.5", 2.5)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0s", "-1s", "soon", "5 days"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_duration(text)


class FakeClock:
    """Time moves only in sleep(); hooks run at given times, like files arriving."""

    def __init__(self, hooks: dict[float, object] | None = None) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []
        self.hooks = dict(hooks or {})

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float, stop: threading.Event) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        for at in sorted(self.hooks):
            if at <= self.t:
                self.hooks.pop(at)(stop)  # type: ignore[operator]


def edited(snap: Snapshot, k: int) -> Snapshot:
    """Drop the first k tasks (a small change)."""
    return snap.model_copy(update={"tasks": snap.tasks[k:], "time": snap.time + 1})


def test_watch_loop_on_a_fake_clock(tmp_path: Path) -> None:
    watch, out = tmp_path / "in", tmp_path / "in" / "plans"
    watch.mkdir()
    snap = read_snapshot(EXAMPLES / "seed-overloaded.json")
    (watch / "s1.json").write_text(snap.model_dump_json())
    os.utime(watch / "s1.json", (1, 1))

    def new_snapshot(stop: threading.Event) -> None:
        (watch / "s2.json").write_text(edited(snap, 1).model_dump_json())
        os.utime(watch / "s2.json", (2, 2))

    def stop_now(stop: threading.Event) -> None:
        stop.set()

    clock = FakeClock({30.0: new_snapshot, 90.0: stop_now})
    w = Watcher(watch, out, every=30, clock=clock, solver="greedy", time_limit=2)
    ticks = w.run(threading.Event())
    assert [(t.at, t.action) for t in ticks] == [(0, "solved"), (30, "solved"),
                                                 (60, "unchanged")]
    assert clock.sleeps == [30, 30, 30] and clock.t == 90
    assert not ticks[0].warm and ticks[1].warm and ticks[1].input.endswith("s2.json")
    assert sorted(p.name for p in out.iterdir()) == [
        "latest.plan.json", "migrations-00001.json", "migrations-00002.json",
        "plan-00001.json", "plan-00002.json"]
    plan2 = read_plan(out / "plan-00002.json")
    assert validate(edited(snap, 1), plan2) == []
    moves = json.loads((out / "migrations-00002.json").read_text())
    assert moves["warm"] is True and len(moves["migrations"]) == len(plan2.migrations)
    assert read_plan(out / "latest.plan.json") == plan2

    # A restarted loop starts warm from latest.plan.json, does not solve the unchanged
    # input again, counts only its own solves and continues the numbering.
    w2 = Watcher(watch, out, every=30, clock=FakeClock(), solver="greedy", time_limit=2)
    assert w2.previous == plan2
    (t,) = w2.run(threading.Event(), max_ticks=1)
    assert t.action == "unchanged" and w2.solves == 0
    (watch / "s2.json").write_text(edited(snap, 2).model_dump_json())
    (t,) = w2.run(threading.Event(), max_ticks=1)
    assert t.action == "solved" and t.warm and t.plan is not None
    assert t.plan.endswith("plan-00003.json") and w2.solves == 1


def test_watch_loop_survives_a_bad_snapshot_and_skips_missed_ticks(tmp_path: Path) -> None:
    watch = tmp_path / "in"
    watch.mkdir()
    (watch / "bad.json").write_text("{")

    class SlowClock(FakeClock):
        def now(self) -> float:  # every look at the clock costs 50 s: ticks overrun
            self.t += 50
            return self.t

    clock = SlowClock()
    w = Watcher(watch, tmp_path / "out", every=30, clock=clock, solver="greedy")
    ticks = w.run(threading.Event(), max_ticks=2)
    assert [t.action for t in ticks] == ["failed", "failed"]
    assert "invalid JSON" in (ticks[0].error or "")
    assert clock.sleeps == [0.0]  # overran: the next tick starts at once
    assert latest_input(tmp_path / "out") is None


def test_run_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    watch = tmp_path / "in"
    watch.mkdir()
    (watch / "s.json").write_text((EXAMPLES / "priorities.json").read_text())
    exe = Path(sys.executable).parent / "allocator"
    proc = subprocess.Popen(
        [str(exe), "run", "--watch", str(watch), "--every", "1s", "--solver", "greedy"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while not (watch / "plans" / "plan-00001.json").exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "stopped after" in stdout and "solved" in stdout


def test_watch_takes_a_file_only_once_complete(tmp_path: Path) -> None:
    """A half-written snapshot is never solved: settle time, or the .ready marker."""
    watch, out = tmp_path / "in", tmp_path / "out"
    watch.mkdir()
    text = (EXAMPLES / "priorities.json").read_text()
    now = [1000.0]
    w = Watcher(watch, out, every=1, clock=FakeClock(), solver="greedy", time_limit=2,
                settle=2.0, wall=lambda: now[0])
    path = watch / "s.json"
    path.write_text(text[: len(text) // 2])  # half written, just now
    os.utime(path, (now[0], now[0]))
    assert w.tick().action == "incomplete"
    now[0] += 1.0  # still within the settle time
    assert w.tick().action == "incomplete"
    path.write_text(text)  # the writer finishes
    os.utime(path, (now[0], now[0]))
    now[0] += 1.0
    assert w.tick().action == "incomplete"  # changed 1 s ago: not settled yet
    now[0] += 1.5
    t = w.tick()
    assert t.action == "solved", t
    assert w.solves == 1

    # The .ready marker: taken at once, however fresh.
    other = watch / "t.json"
    other.write_text(text)
    os.utime(other, (now[0] + 10, now[0] + 10))
    assert w.tick().action == "incomplete"
    (watch / "t.json.ready").write_text("")
    assert w.tick().action == "solved"


def test_a_fifo_or_device_input_is_refused_not_read(tmp_path: Path) -> None:
    """`allocator batch` hashed its input before checking it was a regular file: a FIFO
    blocked forever and /dev/zero read until memory ran out."""
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    results: list[object] = []
    t = threading.Thread(target=lambda: results.append(
        run_batch([fifo, Path("/dev/zero")], tmp_path / "out")), daemon=True)
    t.start()
    t.join(20)
    assert results, "batch blocked reading a FIFO"
    (res,) = results
    assert isinstance(res, list)
    assert [r.outcome for r in res] == ["failed", "failed"]
    assert all("not a regular file" in (r.error or "") for r in res), res
