"""A second LNS in a child process on an idle core, while the annealing thread sleeps.

On a2_2 and a2_3 (a transient resource and machines without safety capacity) the
annealing thread sleeps through its first walk (`solver._Search.first_walk_idle`): its
walk from the initial placement never helped there. On an idle two-core machine that
leaves a core unused for half the budget. Where a run ends on those instances is
decided early, by which large processes leave the zero-safety machines
(docs/benchmarks/roadef.md); two independent LNS runs over that window, the better
one kept, cut the runs that started down a bad path. The second one runs in a child
process (the LNS holds the GIL while it builds its sub-models), started only when the
machine shows a spare core: under load it would take CPU from the solve itself.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np

from allocator.roadef.instance import RoadefInstance

log = logging.getLogger(__name__)

#: Idle cores the machine must show when the solve starts (both: one for the solve's
#: LNS thread, one for the child).
MIN_IDLE_CORES = 1.6
#: Seconds over which the machine's idle time is measured.
PROBE_SECONDS = 0.2
#: The child must have at least this many seconds of search left after its start-up.
MIN_CHILD_SECONDS = 5.0
#: While the child runs, the solve's LNS thread must keep this share of a core, measured
#: over windows of WATCH_SECONDS: a machine that got busy after the probe (another solve
#: started beside this one, both probed an idle machine at once) stops the child, which
#: would otherwise take the solve's own CPU.
MIN_SHARE = 0.8
WATCH_SECONDS = 2.0
#: Seconds past the child's deadline the waking annealing thread waits for its result.
RESULT_GRACE = 2.0


#: The clocks of `ChildLns.watch` (wall, and the calling thread's CPU): injectable.
_wall = time.perf_counter
_thread_cpu = time.thread_time


def _cpu_times() -> tuple[float, float] | None:
    """(idle, total) jiffies of the whole machine from /proc/stat, or None elsewhere."""
    try:
        with open("/proc/stat") as fh:
            parts = fh.readline().split()
    except OSError:
        return None
    if not parts or parts[0] != "cpu":
        return None
    values = [float(v) for v in parts[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
    return idle, sum(values[:8])


def idle_cores(seconds: float = PROBE_SECONDS) -> float:
    """Cores the machine left idle over the next `seconds` (0 when it cannot tell)."""
    first = _cpu_times()
    if first is None:
        return 0.0
    time.sleep(seconds)
    second = _cpu_times()
    if second is None or second[1] <= first[1]:
        return 0.0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    return cores * (second[0] - first[0]) / (second[1] - first[1])


def _child_main(argv: list[str]) -> int:
    """`python -m allocator.roadef.portfolio FD_IN FD_OUT`: reads (instance, start, seed,
    deadline) pickled from FD_IN, runs the LNS thread's search (steepest start, local
    search, LNS) until `deadline` (time.time()), writes its best (cost, placement)
    pickled to FD_OUT (None when it failed)."""
    import pickle
    import threading

    fd_in, fd_out = int(argv[0]), int(argv[1])
    # read first: the parent's write blocks until the pipe is drained (a2_2's input is
    # 180 kB), and importing the solver (CP-SAT, the compiled kernels) takes a while
    with os.fdopen(fd_in, "rb") as fh:
        inst, start, seed, deadline = pickle.load(fh)

    from allocator.roadef.solver import _Search
    from allocator.solvers.context import SolveContext

    out: tuple[int, np.ndarray] | None = None
    try:
        ctx = SolveContext(time_limit=max(0.05, deadline - time.time()), workers=1,
                           seed=seed, stop=threading.Event())
        search = _Search(inst, ctx, None, start)
        search.steepest_start()
        search.run()
        out = (int(search.best_cost), search.best)
    except Exception:  # the parent's own search stands
        log.exception("roadef portfolio: the child search failed")
    with os.fdopen(fd_out, "wb") as fh:
        pickle.dump(out, fh, protocol=pickle.HIGHEST_PROTOCOL)
    return 0


class ChildLns:
    """One child-process LNS over the window ending at `deadline` (time.time()).

    A plain `python -m` subprocess, not multiprocessing: spawn would re-import the
    caller's main module (a user's script without a main guard would run again), and
    fork is unsafe beside the solve's threads. Input and result go over two pipes; the
    child's stdout is discarded (an MCP server's stdout is its protocol stream).
    """

    def __init__(self, inst: RoadefInstance, start: np.ndarray | None, seed: int,
                 deadline: float) -> None:
        import pickle
        import subprocess
        import sys
        from pathlib import Path

        import allocator

        self.deadline = deadline
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        root = str(Path(allocator.__file__).resolve().parents[1])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "allocator.roadef.portfolio", str(in_r), str(out_w)],
                pass_fds=(in_r, out_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                env=env)
        finally:
            os.close(in_r)
            os.close(out_w)
        self._out = os.fdopen(out_r, "rb")
        #: (wall, thread CPU) at the start of the current watch window; stopped by `watch`
        self._mark: tuple[float, float] | None = None
        self.stopped = False
        try:
            with os.fdopen(in_w, "wb") as fh:
                pickle.dump((inst, start, seed, deadline), fh,
                            protocol=pickle.HIGHEST_PROTOCOL)
        except OSError:
            self.close()
            raise

    def result(self, grace: float | None = None) -> tuple[int, np.ndarray] | None:
        """The child's (cost, placement), waiting at most until its deadline + `grace`
        (default RESULT_GRACE)."""
        import pickle
        import select

        if grace is None:
            grace = RESULT_GRACE
        try:
            wait = max(0.0, self.deadline - time.time()) + grace
            ready, _, _ = select.select([self._out], [], [], wait)
            if ready:
                got: Any = pickle.load(self._out)
                if got is not None:
                    return int(got[0]), np.asarray(got[1])
        except (EOFError, OSError, pickle.UnpicklingError, ValueError):
            pass
        finally:
            self.close()
        return None

    def watch(self) -> None:
        """Stop the child when the calling thread (the solve's LNS thread) got less than
        MIN_SHARE of a core over the last WATCH_SECONDS. Call it from that thread only."""
        now, cpu = _wall(), _thread_cpu()
        if self._mark is None:
            self._mark = (now, cpu)
            return
        t0, c0 = self._mark
        if now - t0 < WATCH_SECONDS:
            return
        self._mark = (now, cpu)
        if (cpu - c0) / (now - t0) < MIN_SHARE and self.proc.poll() is None:
            self.stopped = True
            self.proc.terminate()

    def close(self) -> None:
        """Stop the child (when still running) and release its pipe."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=2.0)
        except Exception:
            self.proc.kill()
            self.proc.wait()
        self._out.close()


if __name__ == "__main__":
    import sys

    raise SystemExit(_child_main(sys.argv[1:]))
