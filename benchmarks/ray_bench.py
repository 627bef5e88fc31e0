"""The executor and sweeps on Ray versus their baselines, measured in the same run.

1. Per-task overhead (no-op tasks, one local Ray session):
   * `ray task`   - plain Ray task submission, `ray.get([noop.remote(i) ...])`;
   * `ray actor`  - plain calls to the same agent actors the driver uses
     (round robin, no scheduling core);
   * `driver`     - `RayExecutor`: the executor core decides every dispatch,
     completions come back as events;
   * `core only`  - the core's own cost per task (submit, dispatch,
     complete) with no Ray at all.
   Printed: microseconds per task and the ratio to plain Ray tasks.

2. Sweep wall time: the same greedy solves (seeded scenarios) on the local
   backend and on the ray backend (first call: workers start and import the
   engine; second call: warm workers). The answers are checked identical.

   Also the capacity planner (`plan_capacity`, its simulated runs on the
   backend: seeds of one mix together, the curve's mixes in one batch).

3. Projected scaling of the sweep on P free cores (one worker each) from
   the measured per-item solve time `s`, the per-item Ray cost `o` (a plain
   Ray task's overhead from part 1 plus pickling one job and its answer,
   measured) and the start-up (cold minus warm wall):
   T(P) = max(ceil(K/P) * (s + o), K * d) + start, where d is the part the
   driver does serially per item (submitting the task, pickling the job,
   unpickling the answer): past P = (s + o) / d workers the driver is the
   bottleneck, not the cluster. It assumes free cores; on this shared
   machine the measured local/ray ratio also pays for everyone else's load,
   which is printed.

    .venv/bin/python benchmarks/ray_bench.py [--tasks 500] [--items 6]

The machine is shared and has 2 cores: read the ratios, not the absolute times.
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from allocator.distributed import LocalBackend, RayBackend, ray_session
from allocator.distributed.driver import RayExecutor
from allocator.distributed.sweeps import SolveAnswer, SolveJob, solve_job
from allocator.distributed.work import noop
from allocator.distributed.worker import AgentWorker
from allocator.online import Executor
from allocator.online.events import Dispatch, TaskCompleted, TaskSpec, TaskSubmitted
from models import Agent, Snapshot, Task, Weights


def best_of(n: int, fn: Callable[[], float]) -> float:
    return min(fn() for _ in range(n))


def scenario(seed: int, m: int, n: int) -> Snapshot:
    rng = random.Random(seed)
    ags = [Agent(id=f"a{i}", capacity={"cpu": 64}, speed=rng.choice([1.0, 2.0]),
                 cost_rate=rng.uniform(0.5, 2.0)) for i in range(m)]
    tasks = [Task(id=f"t{j}", work=float(rng.randint(1, 9)), demand={"cpu": rng.randint(1, 3)})
             for j in range(n)]
    return Snapshot(agents=ags, tasks=tasks, name=f"s{seed}",
                    weights=Weights(cost=1, makespan=1))


def core_only(n: int, agents: list[Agent]) -> float:
    ex = Executor("jsq", agents=agents, log=0, retain_finished=False)
    t0 = time.perf_counter()
    for i in range(n):
        for ins in ex.handle(TaskSubmitted(task=TaskSpec(id=f"t{i}", work=0.0), time=float(i))):
            if isinstance(ins, Dispatch):
                ex.handle(TaskCompleted(task_id=ins.task_id, agent=ins.agent,
                                        attempt=ins.attempt, time=float(i)))
    return (time.perf_counter() - t0) / n


def overhead(ray: Any, n: int, agents: list[Agent], reps: int) -> list[tuple[str, float]]:
    remote_noop = ray.remote(noop)  # default options: 1 CPU per task
    ray.get([remote_noop.remote(i) for i in range(50)])  # warm the worker pool

    def plain_tasks() -> float:
        t0 = time.perf_counter()
        ray.get([remote_noop.remote(i) for i in range(n)])
        return (time.perf_counter() - t0) / n

    actor_cls = ray.remote(AgentWorker)
    actors = [actor_cls.options(max_concurrency=a.concurrency).remote(a.id, a.concurrency)
              for a in agents]
    payload = ray.put((noop, (0,)))
    ray.get([a.ping.remote() for a in actors])

    def plain_actors() -> float:
        t0 = time.perf_counter()
        ray.get([actors[i % len(actors)].run.remote(payload, f"t{i}", 1) for i in range(n)])
        return (time.perf_counter() - t0) / n

    rx = RayExecutor(agents, "jsq", log=0)
    rx.start()
    for i in range(50):
        rx.submit(noop, i)
    rx.join()

    def driver() -> float:
        t0 = time.perf_counter()
        for i in range(n):
            rx.submit(noop, i)
        rx.join()
        return (time.perf_counter() - t0) / n

    rows = [("ray task", best_of(reps, plain_tasks)), ("ray actor", best_of(reps, plain_actors)),
            ("driver", best_of(reps, driver)), ("core only", best_of(reps, lambda: core_only(
                n, agents)))]
    rx.close()
    for a in actors:
        ray.kill(a)
    return rows


def sweep(items: int, m: int, n: int) -> tuple[list[tuple[str, float]], float, float]:
    jobs = [SolveJob(scenario(seed, m, n), "greedy", None) for seed in range(items)]
    t0 = time.perf_counter()
    local = LocalBackend().map(solve_job, jobs)
    t_local = time.perf_counter() - t0
    backend = RayBackend()
    with backend:
        t0 = time.perf_counter()
        cold = backend.map(solve_job, jobs)
        t_cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        warm = backend.map(solve_job, jobs)
        t_warm = time.perf_counter() - t0

    def key(answers: list[SolveAnswer]) -> list[Any]:
        return [(a.plan.objective, a.plan.assignments) if a.plan else a.error for a in answers]

    assert key(local) == key(cold) == key(warm), "ray answers differ from local"
    per_item = statistics.mean(a.wall_s for a in local)
    ser = drv = 0.0
    for job, ans in zip(jobs, local, strict=True):
        t0 = time.perf_counter()
        blob = pickle.dumps(job, protocol=5)  # driver
        t1 = time.perf_counter()
        pickle.loads(blob)  # worker
        blob = pickle.dumps(ans, protocol=5)  # worker
        t2 = time.perf_counter()
        pickle.loads(blob)  # driver
        t3 = time.perf_counter()
        ser += t3 - t0
        drv += (t1 - t0) + (t3 - t2)
    rows = [("local", t_local), ("ray (cold)", t_cold), ("ray (warm)", t_warm)]
    return rows, per_item, t_cold - t_warm, ser / len(jobs), drv / len(jobs)


def capacity(tasks: int, seeds: int) -> list[tuple[str, float, int]]:
    from allocator.planning.capacity import ClassForecast, Forecast, plan_capacity

    fc = Forecast([ClassForecast(rate=8.0, size_mean=1.0, size_cv=1.0)], tasks=tasks)
    kw: dict[str, Any] = dict(forecast=fc, seeds=tuple(range(seeds)), curve_span=2)
    t0 = time.perf_counter()
    local = plan_capacity("mean_wait<=0.4", **kw)
    t_local = time.perf_counter() - t0
    with RayBackend() as backend:
        t0 = time.perf_counter()
        remote = plan_capacity("mean_wait<=0.4", backend=backend, **kw)
        t_ray = time.perf_counter() - t0
    assert remote.to_json() == local.to_json(), "ray capacity answer differs from local"
    return [("local", t_local, local.simulations), ("ray (warm)", t_ray, remote.simulations)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=500, help="no-op tasks per overhead run")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--agents", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--items", type=int, default=6, help="scenarios in the sweep")
    ap.add_argument("--m", type=int, default=10, help="agents per scenario")
    ap.add_argument("--n", type=int, default=500, help="tasks per scenario")
    ap.add_argument("--cap-tasks", type=int, default=8000, help="tasks per capacity run")
    ap.add_argument("--cap-seeds", type=int, default=4, help="capacity runs per mix")
    args = ap.parse_args()
    agents = [Agent(id=f"a{i}", capacity={}, concurrency=args.concurrency)
              for i in range(args.agents)]
    with ray_session(num_cpus=2, log_to_driver=False):
        import ray

        cpus = int(ray.cluster_resources().get("CPU", 1))
        rows = overhead(ray, args.tasks, agents, args.reps)
        base = rows[0][1]
        print(f"\nPer-task overhead ({args.tasks} no-op tasks, best of {args.reps}; "
              f"{args.agents} agents x {args.concurrency} slots)")
        print(f"| {'path':<10} | {'us/task':>9} | {'x ray task':>10} |")
        print(f"|{'-' * 12}|{'-' * 11}|{'-' * 12}|")
        for name, per in rows:
            print(f"| {name:<10} | {per * 1e6:9.0f} | {per / base:10.2f} |")
        srows, per_item, start, ser, drv = sweep(args.items, args.m, args.n)
        crows = capacity(args.cap_tasks, args.cap_seeds)
    t_local = srows[0][1]
    print(f"\nSweep: {args.items} greedy solves of {args.m} agents x {args.n} tasks "
          f"(answers identical: yes; {cpus} CPUs)")
    print(f"| {'backend':<11} | {'wall s':>7} | {'x local':>7} |")
    print(f"|{'-' * 13}|{'-' * 9}|{'-' * 9}|")
    for name, wall in srows:
        print(f"| {name:<11} | {wall:7.2f} | {wall / t_local:7.2f} |")
    print(f"\nCapacity planner: M/M/c forecast, {args.cap_tasks} tasks/run, "
          f"{args.cap_seeds} seeds, curve +-2 (answers identical: yes)")
    print(f"| {'backend':<11} | {'wall s':>7} | {'runs':>5} | {'x local':>7} |")
    print(f"|{'-' * 13}|{'-' * 9}|{'-' * 7}|{'-' * 9}|")
    for name, wall, runs in crows:
        print(f"| {name:<11} | {wall:7.2f} | {runs:5d} | {wall / crows[0][1]:7.2f} |")
    o = base + ser
    d = base + drv
    load = os.getloadavg()[0]
    print(f"(load average during the run: {load:.1f} on {os.cpu_count()} cores)")
    print(f"\nProjection: s = {per_item:.3f} s/item (local), o = {o * 1e3:.1f} ms/item "
          f"(Ray task {base * 1e3:.1f} + pickling {ser * 1e3:.1f}), "
          f"start = {start:.1f} s (cold - warm); driver d = {d * 1e3:.1f} ms/item serial, "
          f"so at most ~{(per_item + o) / d:.0f} workers keep busy")
    print(f"| {'workers':>7} | {'items':>6} | {'T local s':>9} | {'T ray s':>8} "
          f"| {'speed-up':>8} |")
    print(f"|{'-' * 9}|{'-' * 8}|{'-' * 11}|{'-' * 10}|{'-' * 10}|")
    for p, k in [(2, 500), (8, 500), (32, 500), (128, 500), (128, 5000)]:
        t_loc = k * per_item
        t_ray = max(math.ceil(k / p) * (per_item + o), k * d) + start
        print(f"| {p:7d} | {k:6d} | {t_loc:9.1f} | {t_ray:8.1f} | {t_loc / t_ray:8.1f} |")


if __name__ == "__main__":
    main()
