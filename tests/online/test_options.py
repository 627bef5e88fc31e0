"""The knobs of an online run through `allocator simulate`, `allocator replay` and the
HTTP simulate body (one parser: allocator.online.options)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

import allocator.cli.simulate  # noqa: F401  (registers the command)
from allocator.cli.app import app
from allocator.errors import InvalidInputError
from allocator.online.options import OnlineOptions, parse_flaky
from allocator.usecases import SimulateParams, simulate_uc
from api.schemas import SimulateRequest
from models import Priority

NEW_KEYS = {"per_agent", "per_tenant", "per_class", "rejected_after_burst",
            "steal_interval_mean"}


def test_simulate_flags_reach_the_run_and_the_json_row() -> None:
    r = CliRunner().invoke(app, [
        "simulate", "-n", "4", "-m", "1500", "-p", "wfq", "-p", "jsq", "--seed", "2",
        "--flaky", "1:0.9:50", "--tenants", "1,3", "--skill-groups", "3", "--admission",
        "throttle", "--class-weights", "8,4,2,1", "--aging", "20", "--arrival", "bursty",
        "--param", "steal.margin_frac=0.2", "--json"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.output.splitlines()]
    for row in rows:
        assert set(row) >= NEW_KEYS
        assert row["lost"] == 0 and row["duplicated"] == 0
        assert [a["agent"] for a in row["per_agent"]] == ["a0", "a1", "a2", "a3"]
        assert sum(a["completed"] for a in row["per_agent"]) == row["completed"]
        assert {t["tenant"]: t["weight"] for t in row["per_tenant"]} == {
            "tenant0": 1.0, "tenant1": 3.0}
        assert [c["weight"] for c in row["per_class"]] == [8.0, 4.0, 2.0, 1.0]
        assert sum(t["service_share"] for t in row["per_tenant"]) == pytest.approx(1.0)


@pytest.mark.parametrize(("args", "field"), [
    (["--flaky", "2:1.5:10"], "flaky"), (["--flaky", "x"], "flaky"),
    (["--tenants", "1,-3"], "tenants"), (["--class-weights", "1,2,3"], "class_weights"),
    (["--admission", "maybe"], "admission"), (["--param", "nope=1"], "param"),
    (["--flaky", "9:0.5:10"], "flaky"),
])
def test_bad_flags_are_typed_errors_naming_the_field(args: list[str], field: str) -> None:
    r = CliRunner().invoke(app, ["simulate", "-n", "4", "-m", "50", "-p", "fifo", *args])
    assert r.exit_code != 0
    assert field in r.output
    assert "Traceback" not in r.output


def test_options_build_policies() -> None:
    o = OnlineOptions.from_text(tenants="2,1", class_weights="8,1,1,1", aging=7.0,
                                params=["steal_threshold=0.3"])
    p = o.policy("cfs+stealing")
    assert p.flow_weights == {"tenant0": 2.0, "tenant1": 1.0}
    assert p.priority.weights[Priority.HIGH] == 1.0 and p.priority.aging[Priority.LOW] == 7.0
    assert p.steal.margin_frac == 0.3
    assert parse_flaky("3:0.25:100") == (3, 0.25, 100.0)
    with pytest.raises(InvalidInputError):
        OnlineOptions(admission="x")


def test_http_simulate_body_carries_the_options() -> None:
    body = SimulateRequest.model_validate({
        "workload": {"tasks": 600, "agents": 3, "skill_groups": 2, "flaky": "1:0.9:30"},
        "policies": ["wfq"], "options": {"tenants": [1, 3], "admission": "throttle",
                                         "class_weights": [8, 4, 2, 1], "aging": 10}})
    d = body.model_dump()
    out = simulate_uc(SimulateParams(workload=d["workload"], policies=d["policies"],
                                     options=d["options"]))
    row = out.rows[0]
    assert row["lost"] == 0 and set(row) >= NEW_KEYS
    assert [t["weight"] for t in row["per_tenant"]] == [1.0, 3.0]
    with pytest.raises(ValidationError):
        SimulateRequest.model_validate({"options": {"class_weights": [1, 2]}})
    with pytest.raises(ValidationError):
        SimulateRequest.model_validate({"options": {"admission": "sometimes"}})


@pytest.mark.parametrize("every", [float("nan"), -5.0, float("inf")])
def test_a_bad_solve_interval_is_an_error_not_silently_off(every: float) -> None:
    """`--mode coordinated --coordinate-every -5` (or nan) ran without a coordinator."""
    with pytest.raises(InvalidInputError, match="coordinate_every"):
        simulate_uc(SimulateParams(workload={"tasks": 50, "agents": 2}, policies=["fifo"],
                                   modes=["coordinated"], intervals=[every]))


@pytest.mark.parametrize(("param", "field"), [
    ("steal.backoff=0", "steal.backoff"), ("steal.backoff=-1", "steal.backoff"),
    ("steal.backoff=nan", "steal.backoff"), ("steal.margin_frac=nan", "steal.margin_frac"),
    ("steal.victims=-1", "steal.victims"), ("steal.latency=-1", "steal.latency"),
    ("flow_weight.tenant0=0", "flow_weights.tenant0"), ("weight.low=-1", "priority.weights.low"),
    ("weight.low=0", "priority.weights.low"), ("aging=-5", "priority.aging.high"),
])
def test_a_bad_policy_parameter_is_exit_2_naming_it(param: str, field: str) -> None:
    # --param values reached the policy unchecked: steal.backoff=0 (or < 0) made an idle
    # thief re-poll at the same instant forever (the run hung), flow_weight=0 raised
    # ZeroDivisionError, negative or NaN weights and limits ran with nonsense.
    r = CliRunner().invoke(app, ["simulate", "-n", "3", "-m", "200", "-p", "stealing",
                                 "-p", "wfq", "--param", param])
    assert r.exit_code == 2, r.output
    assert field in r.output


def test_policy_fields_are_checked_however_the_policy_is_built() -> None:
    from allocator.online import StealConfig, make_policy

    with pytest.raises(InvalidInputError) as err:
        make_policy("stealing", steal=StealConfig(backoff=0.0))
    assert err.value.field == "steal.backoff"
    with pytest.raises(InvalidInputError) as err:
        make_policy("wfq", flow_weights={"a": float("inf")})
    assert err.value.field == "flow_weights.a"
    assert make_policy("stealing", steal=StealConfig(overflow_wait=float("inf"))).stealing
