"""Sizes a machine cannot hold are refused up front, naming the field: before, each of
these ran for minutes towards the out-of-memory killer."""

from __future__ import annotations

import pytest

from allocator import limits
from allocator.errors import InvalidInputError
from allocator.online.workload import WorkloadConfig, generate
from allocator.planning.forecast import ClassForecast, Forecast
from allocator.roadef.generate import generate_instance


@pytest.fixture
def eight_gib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "_physical_memory", lambda: 8 * 2**30)


def one_class(tasks: int) -> Forecast:
    return Forecast([ClassForecast(rate=1.0, size_mean=1.0, size_cv=1.0)], tasks=tasks)


@pytest.mark.usefixtures("eight_gib")
def test_forecast_and_simulation_sizes() -> None:
    with pytest.raises(InvalidInputError, match=r"8\.0 GiB") as e:
        one_class(100_000_000)  # `allocator capacity --tasks 1e8`
    assert e.value.field == "tasks"
    with pytest.raises(InvalidInputError, match="simulated tasks") as e:
        WorkloadConfig(tasks=100_000_000)  # `allocator simulate --tasks 1e8`: 3.3 GB in 25 s
    assert e.value.field == "tasks"
    with pytest.raises(InvalidInputError, match="simulated agents") as e:
        WorkloadConfig(agents=10_000_000, tasks=100)  # 1e6 agents: 4.4 GB, over a minute
    assert e.value.field == "agents"
    one_class(1_000_000)  # what fits is kept
    WorkloadConfig(tasks=1_000_000, agents=100_000)


@pytest.mark.usefixtures("eight_gib")
def test_generated_roadef_sizes() -> None:
    with pytest.raises(InvalidInputError, match="at most about 40,132") as e:
        generate_instance(10, 60_000, 2)  # the M x M move costs alone: 13.4 GiB
    assert e.value.field == "machines"
    with pytest.raises(InvalidInputError, match="at most 10,000,000") as e:
        generate_instance(100_000_000, 10, 2)  # what the model reader accepts
    assert e.value.field == "processes"
    assert generate_instance(200, 20, 3, seed=1).n_processes == 200


def test_failures_a_run_cannot_hold() -> None:
    """mtbf = mttr = 1e-4 on 1,000 tasks drew 2 GB of failures in a minute."""
    with pytest.raises(InvalidInputError, match="agent failures") as e:
        generate(WorkloadConfig(tasks=1_000, mtbf=1e-4, mttr=1e-4))
    assert e.value.field == "mtbf"
    w = generate(WorkloadConfig(tasks=1_000, mtbf=50.0, mttr=5.0))
    assert w.failures  # a sane failure rate still fails agents
