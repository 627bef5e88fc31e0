"""The ledger keeps finished attempts as flat doubles; rows and arrays come back typed and equal."""

from __future__ import annotations

import math

import numpy as np

from allocator.online.metrics import Ledger
from allocator.online.simulator import Simulator
from allocator.online.workload import WorkloadConfig, generate


def test_rows_come_back_with_their_types_and_the_array_matches() -> None:
    led = Ledger()
    assert len(led) == 0 and led.rows == [] and led.array().shape == (0, 8)
    rows = [(3, 0.5, 1.25, True, 2, math.nan, -1, 0.0),
            (0, 1.25, 2.0, False, 0, 7.5, 4, 0.25)]
    for r in rows:
        led.add(r)
    got = led.rows
    assert len(led) == 2 and len(got) == 2
    for want, row in zip(rows, got, strict=True):
        assert [type(x) for x in row] == [int, float, float, bool, int, float, int, float]
        assert repr(row) == repr(want)  # (nan prints alike; == would not hold for it)
    arr = led.array()
    assert arr.shape == (2, 8)
    assert np.array_equal(arr, np.array(rows, dtype=float), equal_nan=True)
    led.add(rows[0])  # the array is a copy: the ledger still grows
    assert len(led) == 3 and arr.shape == (2, 8)


def test_a_simulation_writes_one_row_per_finished_attempt() -> None:
    wl = generate(WorkloadConfig(tasks=300, agents=4, seed=1, task_failure=0.1))
    res = Simulator(wl, "edf+stealing", seed=1).run()
    rows = res.executor.metrics.ledger.rows
    done = sum(1 for r in rows if r[3])
    assert done == res.row["completed"] == 300
    assert len(rows) == done + res.row["retries"] + res.row["failed"]


def test_rows_waits_and_latencies_cross_chunk_boundaries_in_order() -> None:
    # Values wait in a list and move to the arrays a chunk (CHUNK values) at a time:
    # reads in between, and the ends of partial chunks, must see every value in order.
    from allocator.online.metrics import CHUNK, LEDGER_WIDTH, OnlineMetrics

    led = Ledger()
    n = CHUNK // LEDGER_WIDTH * 2 + 5
    want = [(k % 7, k * 0.5, k * 0.5 + 1.0, k % 3 == 0, k % 4, math.nan if k % 5 else k * 1.0,
             -1 if k % 2 else k % 11, 0.25 * (k % 3)) for k in range(n)]
    for k, r in enumerate(want):
        led.add(r)
        if k in (3, CHUNK // LEDGER_WIDTH - 1, CHUNK // LEDGER_WIDTH + 2):
            assert len(led) == k + 1 and len(led.rows) == k + 1  # a read mid-chunk
    assert len(led) == n and repr(led.rows) == repr(want)
    assert np.array_equal(led.array(), np.array(want, dtype=float), equal_nan=True)
    m = OnlineMetrics()
    xs = [k / 3 for k in range(2 * CHUNK + 17)]
    for k, x in enumerate(xs):
        m.add_wait(x)
        m.add_latency(-x)
        if k == CHUNK + 1:
            assert list(m.waits) == xs[:k + 1]  # a read mid-chunk
    assert list(m.waits) == xs and list(m.latencies) == [-x for x in xs]
