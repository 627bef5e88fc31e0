"""The ROADEF instance reader and the exact evaluator: the challenge's own figures
for set A, each hard rule where it bites and where it does not, each cost term,
and typed errors for malformed files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from allocator.errors import InvalidInputError
from allocator.roadef.evaluate import evaluate, is_valid, violations
from allocator.roadef.instance import (
    Balance,
    RoadefFormatError,
    assignment_path,
    read_assignment,
    read_instance,
    write_assignment,
)
from tests.roadef_helpers import ROADEF, SET_A, tiny

A = ROADEF / "A"

#: stats.html row label -> CostBreakdown field.
_TERMS = {"LoadCost": "load", "BalanceCost": "balance", "ProcessMoveCost": "process_move",
          "ServiceMoveCost": "service_move", "MachineMoveCost": "machine_move"}


def _stats_split() -> dict[str, dict[str, int]]:
    """The initial cost split by term, parsed from the challenge's stats.html."""
    text = re.sub(r"<[^>]+>", "\t", (A / "stats.html").read_text())
    rows = [[c.strip() for c in line.split("\t") if c.strip()]
            for line in re.split(r"\n", text)]
    rows = [r for r in rows if r]
    header = next(r for r in rows if r[:2] == ["a1_1", "a1_2"])
    out: dict[str, dict[str, int]] = {name: {} for name in header}
    for row in rows:
        if row[0] in _TERMS:
            cells = row[1:]
            assert len(cells) == len(header), row
            for name, cell in zip(header, cells, strict=True):
                value = re.search(r"\(([\d,]+)\)", cell)
                assert value is not None, cell
                out[name][_TERMS[row[0]]] = int(value.group(1).replace(",", ""))
    return out


@pytest.mark.parametrize("name", SET_A)
def test_evaluator_reproduces_the_challenge_costs(name: str) -> None:
    inst = read_instance(A / f"model_{name}.txt", A / f"assignment_{name}.txt")
    cost = evaluate(inst, inst.initial)
    assert cost.total == int((A / f"original_cost_{name}.txt").read_text())
    split = _stats_split()[name]
    assert set(split) == set(_TERMS.values())
    assert {k: getattr(cost, k) for k in split} == split
    assert violations(inst, inst.initial) == []


def test_stats_split_was_really_parsed() -> None:
    split = _stats_split()
    assert len(split) == 10
    assert split["a1_4"]["balance"] == 242_387_530  # a figure read by eye from stats.html
    assert sum(v["balance"] for v in split.values()) > 0


def test_instance_shapes_match_stats() -> None:
    inst = read_instance(A / "model_a2_3.txt", A / "assignment_a2_3.txt")
    assert (inst.n_processes, inst.n_machines, inst.n_resources, inst.n_services) == (
        1000, 100, 12, 129)
    assert (inst.n_neighbourhoods, inst.n_locations) == (5, 25)
    assert sum(len(d) for d in inst.dependencies) == 577
    assert inst.name == "a2_3"


# -- the hard rules ----------------------------------------------------------


def _rules(inst, assignment) -> list[str]:  # type: ignore[no-untyped-def]
    return [v.rule for v in violations(inst, np.asarray(assignment))]


def test_capacity_bites_and_not() -> None:
    inst = tiny(capacity=[[10], [10]], requirement=[[6], [5]], service=[0, 1], initial=[0, 1])
    assert _rules(inst, [0, 1]) == []
    v = violations(inst, np.array([0, 0]))
    assert [x.rule for x in v] == ["capacity"] and v[0].machine == 0 and v[0].resource == 0
    assert _rules(inst, [1, 1]) == ["capacity"]


def test_transient_bites_only_for_transient_resources() -> None:
    # p0 moves 0 -> 1 and p1 moves 1 -> 0: each fits where it lands, but with a
    # transient resource the mover still holds its origin.
    kw = dict(capacity=[[10], [10]], requirement=[[6], [6]], service=[0, 1], initial=[0, 1])
    assert _rules(tiny(**kw), [1, 0]) == []  # type: ignore[arg-type]
    v = violations(tiny(transient=[True], **kw), np.array([1, 0]))  # type: ignore[arg-type]
    assert sorted((x.rule, x.machine) for x in v) == [("transient", 0), ("transient", 1)]
    # a process that did not move is counted once
    assert _rules(tiny(transient=[True], **kw), [0, 1]) == []  # type: ignore[arg-type]


def test_conflict_bites_and_not() -> None:
    inst = tiny(capacity=[[10], [10]], requirement=[[1], [1]], service=[0, 0], initial=[0, 1])
    assert _rules(inst, [0, 1]) == []
    v = violations(inst, np.array([1, 1]))
    assert [(x.rule, x.service, x.machine) for x in v] == [("conflict", 0, 1)]


def test_spread_bites_and_not() -> None:
    inst = tiny(capacity=[[10]] * 3, requirement=[[1], [1]], service=[0, 0], initial=[0, 2],
                location=[0, 0, 1], spread_min=[2])
    assert _rules(inst, [0, 2]) == []
    assert _rules(inst, [0, 1]) == ["spread"]


def test_dependency_bites_and_not() -> None:
    # service 0 depends on service 1; neighbourhoods {m0, m1} and {m2}
    inst = tiny(capacity=[[10]] * 3, requirement=[[1], [1]], service=[0, 1], initial=[0, 1],
                neighbourhood=[0, 0, 1], dependencies=[[1], []])
    assert _rules(inst, [0, 1]) == []
    v = violations(inst, np.array([2, 1]))
    assert [(x.rule, x.service, x.neighbourhood) for x in v] == [("dependency", 0, 1)]
    # the reverse direction is not required: service 1 alone in a neighbourhood is fine
    assert _rules(inst, [0, 2]) == ["dependency"]
    assert _rules(inst, [2, 2]) == []


# -- the cost terms ------------------------------------------------------------


def test_each_cost_term_by_hand() -> None:
    inst = tiny(capacity=[[10, 10], [10, 10]], safety=[[5, 8], [5, 8]],
                requirement=[[4, 2], [3, 1], [2, 2]], service=[0, 0, 1], initial=[0, 1, 1],
                load_weight=[10, 100], process_move_cost=[7, 1, 3],
                machine_move_cost=[[0, 2], [5, 0]],
                balances=[Balance(r1=0, r2=1, target=2, weight=3)], weights=(11, 13, 17))
    c0 = evaluate(inst, inst.initial)
    # m0: use (4,2) free (6,8); m1: use (5,3) free (5,7); load: m1 r0 0 over 5
    assert (c0.load, c0.balance) == (0, 3 * ((2 * 6 - 8) + (2 * 5 - 7)))
    assert (c0.process_move, c0.service_move, c0.machine_move) == (0, 0, 0)
    c1 = evaluate(inst, np.array([0, 1, 0]))  # process 2 moves 1 -> 0
    # m0: use (6,4) over (1,0) free (4,6); m1: use (3,1) free (7,9)
    assert c1.load == 10 * 1
    assert c1.balance == 3 * ((2 * 4 - 6) + (2 * 7 - 9))
    assert (c1.process_move, c1.service_move, c1.machine_move) == (11 * 3, 13 * 1, 17 * 5)
    c2 = evaluate(inst, np.array([1, 0, 1]))  # both processes of service 0 move
    assert c2.service_move == 13 * 2 and c2.process_move == 11 * 8
    assert c2.machine_move == 17 * (2 + 5)
    assert c2.total == sum(v for k, v in c2.as_dict().items() if k != "total")


def test_bad_assignment_array_is_a_typed_error() -> None:
    inst = tiny(capacity=[[10]], requirement=[[1]], service=[0], initial=[0])
    with pytest.raises(InvalidInputError, match="machine 3 does not exist"):
        evaluate(inst, np.array([3]))
    with pytest.raises(InvalidInputError, match="expected 1"):
        is_valid(inst, np.array([0, 0]))


# -- files ---------------------------------------------------------------------


def test_write_read_round_trip(tmp_path: Path) -> None:
    inst = read_instance(A / "model_a1_2.txt", A / "assignment_a1_2.txt")
    rng = np.random.default_rng(3)
    a = rng.integers(0, inst.n_machines, inst.n_processes)
    write_assignment(tmp_path / "sol.txt", a)
    back = read_assignment(tmp_path / "sol.txt", inst.n_processes, inst.n_machines)
    assert np.array_equal(back, a) and back.dtype == np.int64
    assert assignment_path(A / "model_a1_2.txt") == A / "assignment_a1_2.txt"


def _model(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "model_x.txt"
    p.write_text(text)
    return p


GOOD = "1\n0 1\n2\n0 0 10 8 0 1\n0 1 10 8 1 0\n1\n1 0\n2\n0 3 1\n0 4 1\n0\n1 1 1\n"


def test_good_small_model_parses(tmp_path: Path) -> None:
    m = _model(tmp_path, GOOD)
    (tmp_path / "assignment_x.txt").write_text("0 1\n")
    inst = read_instance(m, assignment_path(m))
    assert inst.name == "x" and inst.capacity.tolist() == [[10], [10]]
    assert inst.spread_min.tolist() == [1] and inst.requirement.tolist() == [[3], [4]]


@pytest.mark.parametrize(("text", "pattern"), [
    (GOOD.replace("0 3 1", "0 3x 1"), r"line 9: not an integer: '3x'"),
    (GOOD.replace("0 3 1", "0 3.5 1"), r"line 9: not an integer"),
    (GOOD.replace("0 3 1", "0 -3 1"), r"line 9: process \(service requirement"),
    (GOOD.replace("0 3 1", "4 3 1"), r"process 0 service: service 4 does not exist"),
    (GOOD.replace("0 1\n2\n", "2 1\n2\n", 1), r"line 2: resource transient: must be 0 or 1"),
    (GOOD[:GOOD.index("1\n1 0\n2")] + "1\n", r"line 6: service 0 spreadMin: file ends"),
    (GOOD.replace("1 0\n2", "1 1 7\n2"), r"service 0 dependencies: 7 is above 0"),
    (GOOD + "5\n", r"unexpected numbers"),
    ("", r"resources: file ends"),
])
def test_malformed_models_name_file_field_and_line(tmp_path: Path, text: str,
                                                    pattern: str) -> None:
    m = _model(tmp_path, text)
    with pytest.raises(RoadefFormatError, match=pattern) as err:
        read_instance(m, tmp_path / "assignment_x.txt")
    assert str(m) in str(err.value)


def test_malformed_assignments(tmp_path: Path) -> None:
    m = _model(tmp_path, GOOD)
    a = tmp_path / "assignment_x.txt"
    a.write_text("0 2\n")
    with pytest.raises(RoadefFormatError, match="assignment machine: 2 is above 1"):
        read_instance(m, a)
    a.write_text("0\n")
    with pytest.raises(RoadefFormatError, match="1 machine indices for 2 processes"):
        read_instance(m, a)
    with pytest.raises(RoadefFormatError, match="file not found"):
        read_instance(m, tmp_path / "nope.txt")
    with pytest.raises(RoadefFormatError, match="not named model_"):
        assignment_path(tmp_path / "x.txt")


@pytest.mark.parametrize("name", ["a2_2", "a2_3"])
def test_diagnosis_bound_lies_between_the_file_bound_and_the_best_known(name: str) -> None:
    """benchmarks/roadef_diagnose.py: processes that no other machine's static transient
    room holds stay on a zero-safety machine, so their full load is a lower bound; the
    bound must not exceed the winning team's result (a bug would) and beats the file's
    on these two instances."""
    import csv
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "benchmarks" / "roadef_diagnose.py"),
                          str(A / f"model_{name}.txt"), "--json"],
                         capture_output=True, text=True, check=True)
    row = json.loads(out.stdout)
    with (ROADEF / "best_known.csv").open() as f:
        known = {r["instance"]: r for r in csv.DictReader(f)}[name]
    assert row["stuck_processes"]
    assert (int(known["lower_bound"]) < row["zero_safety_lower_bound"]
            <= int(known["best_known_300s"]))
    assert row["initial"]["cost"]["total"] == int(known["original_cost"])
    zero = row["initial"]["load_on_zero_safety_machines"]
    assert zero + row["initial"]["load_on_other_machines"] == row["initial"]["cost"]["load"]
