"""The executor core and batch sweeps on a local Ray (2 CPUs, started once per module)."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")

from allocator.batch import run_batch  # noqa: E402
from allocator.distributed import LocalBackend, RayBackend, get_backend, ray_session  # noqa: E402
from allocator.distributed.driver import RayExecutor  # noqa: E402
from allocator.distributed.sweeps import run_batch_on  # noqa: E402
from allocator.distributed.work import fail_on, sleep_for, wait_for_file  # noqa: E402
from allocator.io import read_plan, write_json_atomic  # noqa: E402
from allocator.io.snapshots import dump_model  # noqa: E402
from allocator.online import BreakerConfig, Code  # noqa: E402
from allocator.online.events import TERMINAL, Instruction  # noqa: E402
from allocator.online.runtime import TaskFailedError  # noqa: E402
from allocator.validate import validate  # noqa: E402
from models import Agent, Snapshot, Task, Weights  # noqa: E402

TOKEN = Path.home() / ".ray" / "auth_token"


@pytest.fixture(scope="module")
def ray_cluster():
    had_token = TOKEN.exists()
    with ray_session(num_cpus=2, log_to_driver=False) as info:
        assert info.mode == "local" and info.temp_dir is not None
        assert len(info.temp_dir) < 40 and Path(info.temp_dir).is_dir()
        yield info
    assert not Path(info.temp_dir).exists(), "the local Ray temp dir is removed"
    assert TOKEN.exists() == had_token, "no token file written to the home directory"


class Terminals:
    """Counts terminal instructions per task, independently of the driver."""

    def __init__(self) -> None:
        self.ends: Counter[str] = Counter()
        self.kinds: list[Instruction] = []

    def __call__(self, ins: Instruction) -> None:
        self.kinds.append(ins)
        if isinstance(ins, TERMINAL):
            self.ends[ins.task_id] += 1  # type: ignore[attr-defined]


def agents(n: int, concurrency: int = 2) -> list[Agent]:
    return [Agent(id=f"a{i}", capacity={}, concurrency=concurrency) for i in range(n)]


def test_tasks_dispatched_to_actors_complete(ray_cluster) -> None:
    seen = Terminals()
    with RayExecutor(agents(3), "jsq", on_instruction=seen) as rx:
        futs = {f"t{i}": rx.submit(sleep_for, 0.02, i * i, id=f"t{i}", work=0.02)
                for i in range(24)}
        rx.join(timeout=60)
        stats = rx.actor_stats()
    assert {k: f.result() for k, f in futs.items()} == {f"t{i}": i * i for i in range(24)}
    assert set(seen.ends) == set(futs) and set(seen.ends.values()) == {1}
    assert rx.stats.dispatches == 24 and rx.stats.terminal == {"complete": 24}
    # Each actor ran at most its concurrency at once, and the work was spread.
    assert all(s["peak"] <= 2 for s in stats.values())
    assert sum(s["done"] for s in stats.values()) == 24
    assert sum(1 for s in stats.values() if s["done"]) >= 2


class Gate:
    """Tasks that wait at a gate (a file), each saying when it starts: a fault injected
    while a task surely runs. With short sleeping tasks, the kill could land after the
    agent's attempts had finished (their results already on the way): nothing to retry,
    and the test's race, not the executor, decided the outcome."""

    def __init__(self, tmp_path: Path) -> None:
        self.gate, self.started = tmp_path / "open", tmp_path / "started"
        self.started.mkdir()

    def submit(self, rx: RayExecutor, i: int) -> Any:
        return rx.submit(wait_for_file, str(self.gate), i, 60.0, str(self.started / f"t{i}"),
                         id=f"t{i}", work=0.1)

    def wait_running(self, rx: RayExecutor, agent: str, timeout: float = 30.0) -> set[str]:
        """Steps `rx` until a task of `agent` runs there; the tasks sent to it then."""
        t0 = time.monotonic()
        while not any((self.started / t).exists() for t in rx.core.agents[agent].running):
            rx.step(0.05)
            assert time.monotonic() - t0 < timeout, f"nothing ran on {agent}"
        return set(rx.core.agents[agent].running)

    def open_after_death(self, rx: RayExecutor, timeout: float = 30.0) -> None:
        t0 = time.monotonic()
        while rx.stats.actor_deaths == 0 and time.monotonic() - t0 < timeout:
            rx.step(0.1)
        self.gate.touch()


def test_actor_killed_mid_run_loses_and_duplicates_nothing(ray_cluster, tmp_path: Path) -> None:
    seen = Terminals()
    n = 30
    gate = Gate(tmp_path)
    with RayExecutor(agents(3), "round-robin", on_instruction=seen, put_payloads=True) as rx:
        futs = {f"t{i}": gate.submit(rx, i) for i in range(n)}
        victims = gate.wait_running(rx, "a0")
        ray.kill(rx.actor("a0"))
        gate.open_after_death(rx)
        rx.join(timeout=60)
        histories = {t: rx.core.history(t) for t in victims}
    assert victims
    # Nothing lost: every task ended, with its own value; nothing duplicated.
    assert {k: f.result() for k, f in futs.items()} == {f"t{i}": i for i in range(n)}
    assert set(seen.ends) == set(futs) and set(seen.ends.values()) == {1}
    assert rx.stats.actor_deaths == 1
    assert rx.core.agents["a0"].status.value == "down"
    assert rx.core.metrics.breaker_opens >= 1  # the dead actor's breaker opened
    # Every task on a0 when it died was retried elsewhere with the reason, once.
    for t, h in histories.items():
        assert "Retry" in h and "agent a0 failed mid-task: actor died" in h, h
        assert f"Complete task_id={t} agent=a0" not in h


def test_killed_actor_without_retries_fails_with_a_reason(ray_cluster, tmp_path: Path) -> None:
    seen = Terminals()
    gate = Gate(tmp_path)
    with RayExecutor(agents(2, concurrency=1), "round-robin", on_instruction=seen,
                     max_retries=0) as rx:
        futs = {f"t{i}": gate.submit(rx, i) for i in range(8)}
        victims = gate.wait_running(rx, "a0")
        ray.kill(rx.actor("a0"))
        gate.open_after_death(rx)
        rx.join(timeout=60)
    assert victims and set(seen.ends.values()) == {1} and set(seen.ends) == set(futs)
    for t in victims:
        with pytest.raises(TaskFailedError) as e:
            futs[t].result()
        assert e.value.code is Code.AGENT_FAILED and "actor died" in e.value.reason
    others = set(futs) - victims
    assert all(futs[t].result() == int(t[1:]) for t in others)


def test_task_errors_open_the_breaker_and_work_moves(ray_cluster) -> None:
    seen = Terminals()
    breaker = BreakerConfig(window=4, min_calls=2, failure_rate=0.5, open_timeout=60.0)
    with RayExecutor(agents(2, concurrency=1), "round-robin", on_instruction=seen,
                     breaker=breaker, max_retries=3) as rx:
        futs = [rx.submit(fail_on, "a1", 0.01, i, work=0.01) for i in range(10)]
        rx.join(timeout=60)
    assert [f.result() for f in futs] == list(range(10))  # all done by a0 in the end
    assert rx.stats.breaker_opened == 1 and rx.stats.failed_attempts >= 2
    assert set(seen.ends.values()) == {1}
    assert rx.core.agents["a1"].breaker.state.value == "open"


# ------------------------------------------------------------------ sweeps


def scenario(seed: int) -> Snapshot:
    rng = random.Random(seed)
    ags = [Agent(id=f"a{i}", capacity={"cpu": 8}, speed=rng.choice([1.0, 2.0]),
                 cost_rate=rng.uniform(0.5, 2.0)) for i in range(4)]
    tasks = [Task(id=f"t{j}", work=float(rng.randint(1, 9)), demand={"cpu": rng.randint(1, 3)})
             for j in range(20)]
    return Snapshot(agents=ags, tasks=tasks, name=f"s{seed}",
                    weights=Weights(cost=1, makespan=1))


def sweep_point(seed: int) -> tuple[int, float, int]:
    from allocator.engine import solve

    snap = scenario(seed)
    plan = solve(snap, solver="greedy")
    assert not validate(snap, plan)
    return seed, round(plan.objective or 0.0, 9), len(plan.assignments)


def test_backend_map_matches_local(ray_cluster) -> None:
    seeds = list(range(6))
    order: list[int] = []
    remote = RayBackend().map(sweep_point, seeds, on_done=lambda i, r: order.append(i))
    assert remote == LocalBackend().map(sweep_point, seeds)
    assert sorted(order) == seeds
    assert get_backend("local").name == "local"


def _scenario_files(tmp_path: Path, n: int) -> list[Path]:
    """n scenario snapshots written as batch inputs."""
    inputs = []
    for seed in range(n):
        p = tmp_path / "in" / f"s{seed}.json"
        p.parent.mkdir(exist_ok=True)
        write_json_atomic(p, dump_model(scenario(seed)))
        inputs.append(p)
    return inputs


def test_batch_on_ray_gives_the_local_answer(ray_cluster, tmp_path: Path) -> None:
    inputs = _scenario_files(tmp_path, 3)
    inputs.append(tmp_path / "in" / "missing.json")
    local = run_batch(inputs, tmp_path / "local", solver="greedy")
    with RayBackend() as backend:
        remote = run_batch_on(backend, inputs, tmp_path / "ray", solver="greedy")
        again = run_batch_on(backend, inputs, tmp_path / "ray", solver="greedy")
    assert [r.outcome for r in remote] == [r.outcome for r in local] == [
        "solved", "solved", "solved", "failed"]
    assert [r.outcome for r in again] == ["skipped"] * 3 + ["failed"]
    assert remote[3].error == local[3].error
    for a, b in zip(local[:3], remote[:3], strict=True):
        assert (a.status, a.objective, a.assigned, a.valid) == (
            b.status, b.objective, b.assigned, b.valid)
        la, ra = (tmp_path / d / f"{a.stem}.assignments.csv" for d in ("local", "ray"))
        assert la.read_bytes() == ra.read_bytes()
        lm, rm = (json.loads((tmp_path / d / f"{a.stem}.done.json").read_text())
                  for d in ("local", "ray"))
        assert lm == rm
        lp, rp = (read_plan(tmp_path / d / f"{a.stem}.plan.json") for d in ("local", "ray"))
        assert lp.assignments == rp.assignments and lp.objective == rp.objective


def test_cli_batch_backend_ray(ray_cluster, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from allocator.cli import app

    p = tmp_path / "s7.json"
    write_json_atomic(p, dump_model(scenario(7)))
    r = CliRunner().invoke(app, ["batch", str(p), "--out", str(tmp_path / "out"), "--backend",
                                 "ray", "--solver", "greedy"])
    assert r.exit_code == 0, r.output
    assert "solved 1, skipped 0, failed 0" in r.output
    assert read_plan(tmp_path / "out" / "s7.plan.json").assignments


def test_coordinator_plans_reach_the_actors(ray_cluster) -> None:
    from allocator.online.coordinator import Coordinator

    seen = Terminals()
    with RayExecutor(agents(3, concurrency=1), "stealing", on_instruction=seen,
                     coordinate_every=0.2) as rx:
        rx.coordinator = Coordinator(rx.core, every=0.2, solver="greedy", time_limit=1.0)
        futs = [rx.submit(sleep_for, 0.05, i, work=0.05, home="a0") for i in range(16)]
        rx.join(timeout=60)
    assert [f.result() for f in futs] == list(range(16))
    assert set(seen.ends.values()) == {1} and len(seen.ends) == 16
    assert rx.coordinator.solves >= 1  # type: ignore[attr-defined]
    assert rx.stats.migrations + rx.stats.steals > 0  # work left a0's deque


def test_rate_limited_agent_settles_reported_usage(ray_cluster) -> None:
    from allocator.distributed.work import reported
    from allocator.online.events import RateLimit

    limit = RateLimit(tokens_per_min=100_000, requests_per_min=6_000)
    with RayExecutor([(Agent(id="llm", capacity={}, concurrency=3), limit)], "fifo") as rx:
        futs = [rx.submit(reported, i, 10.0 + i, tokens=5.0) for i in range(6)]
        rx.join(timeout=60)
        limiter = rx.core.agents["llm"].limiter
    assert [f.result() for f in futs] == list(range(6))
    assert limiter is not None and limiter.requests_used == 6
    assert limiter.tokens_used == sum(10.0 + i for i in range(6))


def test_capacity_sweep_on_ray_gives_the_local_answer(ray_cluster) -> None:
    from allocator.planning.capacity import ClassForecast, Forecast, plan_capacity

    fc = Forecast([ClassForecast(rate=4.0, size_mean=1.0, size_cv=1.0)], tasks=1500)
    kw = dict(forecast=fc, seeds=(0, 1), curve_span=1, what_if=["agents-1"])
    local = plan_capacity("mean_wait<=0.5", **kw).to_json()  # type: ignore[arg-type]
    with RayBackend() as backend:
        remote = plan_capacity("mean_wait<=0.5", backend=backend, **kw)  # type: ignore[arg-type]
    assert remote.to_json() == local
    assert remote.simulations == local["simulations"] > 2


def test_cli_capacity_backend_ray(ray_cluster) -> None:
    from typer.testing import CliRunner

    from allocator.cli import app

    args = ["capacity", "--rate", "3", "--size-mean", "1", "--size-cv", "1", "--tasks", "800",
            "--sla", "mean_wait<=0.5", "--seeds", "2", "--curve-span", "1", "--json"]
    runner = CliRunner()
    local = runner.invoke(app, args)
    remote = runner.invoke(app, [*args, "--backend", "ray"])
    assert local.exit_code == 0 and remote.exit_code == 0, remote.output
    assert json.loads(remote.stdout) == json.loads(local.stdout)


def test_restarted_actor_rejoins(ray_cluster, tmp_path: Path) -> None:
    seen = Terminals()
    gate = Gate(tmp_path)
    with RayExecutor(agents(2), "round-robin", on_instruction=seen, max_restarts=1,
                     rejoin_after=0.2) as rx:
        futs = {f"t{i}": gate.submit(rx, i) for i in range(20)}
        gate.wait_running(rx, "a0")
        ray.kill(rx.actor("a0"), no_restart=False)  # Ray restarts it
        gate.open_after_death(rx)
        rx.join(timeout=60)
        t0 = time.monotonic()
        while rx.stats.rejoins == 0 and time.monotonic() - t0 < 30:
            rx.step(0.1)
        later = [rx.submit(sleep_for, 0.01, i, work=0.01) for i in range(8)]
        rx.join(timeout=60)
        restarted = rx.actor_stats()["a0"]  # the new incarnation's own counters
    assert restarted["done"] >= 1  # the rejoined agent takes work again
    assert {k: f.result() for k, f in futs.items()} == {f"t{i}": i for i in range(20)}
    assert [f.result() for f in later] == list(range(8))
    assert set(seen.ends.values()) == {1}
    assert rx.stats.actor_deaths == 1 and rx.stats.rejoins == 1
    assert rx.core.agents["a0"].status.value == "up"


def test_actor_restarted_while_idle_is_counted(ray_cluster) -> None:
    """Killed with nothing in flight, the actor comes back before any call fails: the
    driver sees only a new process answering. It must still count the restart (it used
    to report `actor_deaths == 0` for a death that happened), and lose nothing."""
    seen = Terminals()
    with RayExecutor(agents(2), "round-robin", on_instruction=seen, max_restarts=1) as rx:
        first = [rx.submit(sleep_for, 0.01, i, id=f"f{i}", work=0.01) for i in range(4)]
        rx.join(timeout=60)
        before = rx.actor_stats()["a0"]["incarnation"]
        ray.kill(rx.actor("a0"), no_restart=False)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30:  # Ray restarts it; calls wait for the new one
            try:
                if ray.get(rx.actor("a0").ping.remote(), timeout=5) != before:
                    break
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                time.sleep(0.1)
        later = [rx.submit(sleep_for, 0.01, i, id=f"l{i}", work=0.01) for i in range(4)]
        rx.join(timeout=60)
        after = rx.actor_stats()["a0"]
    assert after["incarnation"] != before and after["done"] >= 1
    assert [f.result() for f in first + later] == [0, 1, 2, 3] * 2
    assert set(seen.ends.values()) == {1}
    assert rx.stats.actor_deaths == 1 and rx.stats.rejoins == 1


def test_cli_ray_run_kill_reports_failover_or_says_it_never_happened(ray_cluster) -> None:
    """`ray run --kill`: the killed actor's tasks finish elsewhere, none lost or doubled; a run
    that ends before --kill-after says so on stderr instead of reporting a clean failover."""
    from typer.testing import CliRunner

    from allocator.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["ray", "run", "--agents", "3", "--tasks", "4", "--seconds", "0.01",
                            "--kill", "a0", "--kill-after", "60", "--json"])
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout)
    assert row["killed"] is None and row["completed"] == 4 and row["lost"] == 0
    assert "no actor was killed" in r.stderr
    r = runner.invoke(app, ["ray", "run", "--agents", "3", "--tasks", "120", "--seconds", "0.03",
                            "--kill", "a0", "--kill-after", "0.3", "--json"])
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout)
    assert row["killed"] == "a0" and row["actor_deaths"] >= 1
    assert row["lost"] == 0 and row["duplicated"] == 0
    assert row["completed"] + row["failed"] + row["rejected"] == 120
    assert "no actor was killed" not in r.stderr


# ------------------------------------------------------------------ faults found by a hunt


def test_task_raising_systemexit_fails_and_its_agent_goes_on(ray_cluster) -> None:
    """A task raising SystemExit (or KeyboardInterrupt) stopped its actor's event loop
    without killing the actor: the task and everything later sent to that agent never
    ended, and `join` waited for ever. It is the task's own error like any other."""

    def exits(code: int) -> None:
        raise SystemExit(code)

    def interrupted() -> None:
        raise KeyboardInterrupt

    seen = Terminals()
    with RayExecutor(agents(1), "fifo", on_instruction=seen, max_retries=0) as rx:
        bad = rx.submit(exits, 3, id="exits")
        kbi = rx.submit(interrupted, id="interrupted")
        good = [rx.submit(sleep_for, 0.0, i, id=f"t{i}") for i in range(3)]
        rx.join(timeout=60)
    for fut, what in ((bad, "SystemExit: 3"), (kbi, "KeyboardInterrupt")):
        with pytest.raises(TaskFailedError) as e:
            fut.result()
        assert e.value.code is Code.RETRIES_EXHAUSTED and what in e.value.reason
    assert [f.result() for f in good] == [0, 1, 2]
    assert set(seen.ends.values()) == {1} and len(seen.ends) == 5
    assert rx.stats.actor_deaths == 0


def test_submit_refuses_bad_fields_and_known_ids_before_the_core(ray_cluster) -> None:
    """A finished task's id, an unknown priority or a non-string id were taken by `submit`
    and made the core raise later, in `join`: the other submissions of the same batch were
    dropped unrun and `join` (and `close`) waited for ever. Negative work, NaN times and
    negative demands were taken as given. Each is now a typed error naming the field."""
    from allocator.errors import InvalidInputError

    seen = Terminals()
    with RayExecutor(agents(2), "jsq", on_instruction=seen) as rx:
        first = rx.submit(sleep_for, 0.0, "first", id="t1")
        rx.join(timeout=60)
        bad: list[tuple[dict[str, object], str]] = [
            ({"id": "t1"}, "id"), ({"id": 5}, "id"), ({"priority": "urgent"}, "priority"),
            ({"work": float("nan")}, "work"), ({"work": -1.0}, "work"),
            ({"tokens": -5.0}, "tokens"), ({"timeout": -1.0}, "timeout"),
            ({"deadline": float("nan")}, "deadline"), ({"max_retries": -1}, "max_retries"),
            ({"demand": (("cpu", -1.0),)}, "demand"), ({"skills": "gpu"}, "skills"),
            ({"bogus": 1}, "bogus"), ({"home": 3}, "home")]
        for fields, field in bad:
            with pytest.raises(InvalidInputError) as e:
                rx.submit(sleep_for, 0.0, None, **fields)
            assert e.value.field == field, (fields, e.value)
        later = [rx.submit(sleep_for, 0.0, i, id=f"u{i}", priority="high") for i in range(4)]
        rx.join(timeout=60)
    assert first.result() == "first" and [f.result() for f in later] == [0, 1, 2, 3]
    assert set(seen.ends) == {"t1", "u0", "u1", "u2", "u3"} and set(seen.ends.values()) == {1}


def test_a_result_ray_cannot_send_back_fails_with_the_reason(ray_cluster) -> None:
    """A task whose value cannot be pickled failed with the reason `ray: RayTaskError(
    TypeError): ray::AgentWorker.run() (pid=...)` in terminal colours: Ray's header,
    not what went wrong."""

    def lock() -> object:
        import threading

        return threading.Lock()

    with RayExecutor(agents(1), "fifo", max_retries=0) as rx:
        fut = rx.submit(lock, id="lock")
        rx.join(timeout=60)
    with pytest.raises(TaskFailedError) as e:
        fut.result()
    assert "cannot pickle" in e.value.reason and "lock" in e.value.reason, e.value.reason
    assert "\x1b[" not in e.value.reason and "pid=" not in e.value.reason


def test_a_bad_usage_report_fails_its_task_only(ray_cluster) -> None:
    """A `Reported` usage the core cannot take (a string, NaN, a negative, not a dict)
    reached the core as is: a string made it raise in `join`, dropping the other results
    of that batch, so `join` waited for ever; NaN or a negative broke the token quota.
    As in the asyncio runtime, the task fails (not retried) with the field named."""
    from allocator.online.runtime import Reported

    def report(usage: object) -> object:
        return Reported("v", usage=usage)  # type: ignore[arg-type]

    seen = Terminals()
    with RayExecutor(agents(2), "jsq", on_instruction=seen) as rx:
        bad = {str(u): rx.submit(report, u) for u in
               ({"tokens": "many"}, {"tokens": float("nan")}, {"tokens": -1.0}, [1, 2])}
        good = [rx.submit(report, {"tokens": 2.0}) for _ in range(4)]
        rx.join(timeout=60)
        limiter_ok = all(a.limiter is None for a in rx.core.agents.values())
    for u, fut in bad.items():
        with pytest.raises(TaskFailedError) as e:
            fut.result()
        assert "usage" in e.value.reason, (u, e.value.reason)
        assert e.value.code is not Code.RETRIES_EXHAUSTED  # not retried: the report is bad
    assert [f.result() for f in good] == ["v"] * 4
    assert limiter_ok and set(seen.ends.values()) == {1} and len(seen.ends) == 8


def test_a_task_whose_arguments_cannot_be_sent_fails_alone(ray_cluster) -> None:
    """Arguments Ray cannot pickle (a lock) made `actor.run.remote` raise inside `join`:
    the task stayed running in the core for ever, holding its agent's slot (join never
    returned), and the instructions after its Dispatch in that batch were dropped."""
    import threading

    seen = Terminals()
    with RayExecutor(agents(2, concurrency=1), "jsq", on_instruction=seen) as rx:
        before = [rx.submit(sleep_for, 0.02, i, id=f"a{i}") for i in range(3)]
        bad = rx.submit(sleep_for, 0.0, threading.Lock(), id="lock")
        after = [rx.submit(sleep_for, 0.02, i, id=f"b{i}") for i in range(3)]
        rx.join(timeout=60)
    with pytest.raises(TaskFailedError) as e:
        bad.result()
    assert "cannot send" in e.value.reason and "lock" in e.value.reason, e.value.reason
    assert [f.result() for f in before + after] == [0, 1, 2, 0, 1, 2]
    assert set(seen.ends.values()) == {1} and len(seen.ends) == 7


def test_close_that_runs_out_of_time_still_ends_every_task(ray_cluster) -> None:
    """`close(timeout=)` that expired raised and left every unfinished task's future
    pending for ever (the executor closed, nothing would resolve them). Now the queued
    ones are returned unrun and the running ones cancelled, each with its reason, and
    then the timeout is raised."""
    from allocator.errors import AllocatorError
    from allocator.online.runtime import TaskRejectedError

    seen = Terminals()
    rx = RayExecutor(agents(1, concurrency=1), "fifo", on_instruction=seen)
    futs = [rx.submit(sleep_for, 5.0, i, id=f"t{i}", work=5.0) for i in range(4)]
    run_started = time.monotonic()
    while not rx.core.agents["a0"].running:
        rx.step(0.05)
        assert time.monotonic() - run_started < 30, "nothing started"
    with pytest.raises(AllocatorError, match="still live"):
        rx.close(timeout=0.2)
    assert all(f.done() for f in futs)
    with pytest.raises(TaskFailedError) as e:
        futs[0].result()
    assert e.value.code is Code.CANCELLED and e.value.reason
    for f in futs[1:]:
        with pytest.raises(TaskRejectedError) as r:
            f.result()
        assert r.value.code is Code.SHUTDOWN and r.value.reason
    assert set(seen.ends.values()) == {1} and len(seen.ends) == 4


class _CrashOnS1(RayBackend):
    """Kills the Ray worker solving the input named s1 (a SIGKILL, an OOM kill)."""

    def map(self, fn, items, *, on_done=None, on_error=None):  # type: ignore[no-untyped-def]
        def crashing(job):  # type: ignore[no-untyped-def]
            if job.snapshot.name == "s1":
                import os

                os._exit(1)
            return fn(job)

        kw = {} if on_error is None else {"on_error": on_error}
        return super().map(crashing, items, on_done=on_done, **kw)


def test_batch_on_ray_goes_on_when_a_worker_dies(ray_cluster, tmp_path: Path) -> None:
    """A Ray worker killed mid-solve raised WorkerCrashedError out of `run_batch_on`: the
    whole batch stopped and the other inputs' results were dropped. Now that input fails
    with the reason and the others are solved, as in the local batch."""
    inputs = _scenario_files(tmp_path, 3)
    with _CrashOnS1() as backend:
        res = run_batch_on(backend, inputs, tmp_path / "out", solver="greedy")
    assert [r.outcome for r in res] == ["solved", "failed", "solved"]
    assert "internal error" in (res[1].error or "") and "s1.json" in (res[1].error or "")
    assert not (tmp_path / "out" / "s1.done.json").exists()
    assert (tmp_path / "out" / "s2.done.json").exists()
