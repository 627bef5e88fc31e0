"""Human tables (units, separators, no scientific notation) and JSON without float noise."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from typer.testing import CliRunner

from allocator.cli import app
from allocator.cli.app import json_ready, to_json
from allocator.cli.tune import improvement_line
from allocator.report import units

ROOT = Path(__file__).resolve().parents[1]
KTH = ROOT / "data" / "traces" / "KTH-SP2-1996-2.1-cln.swf.gz"
SCIENTIFIC = re.compile(r"\d[eE][+-]?\d")


def test_json_output_rounds_float_noise_and_writes_standard_json() -> None:
    assert 0.1 + 0.2 + 0.3 == 0.6000000000000001  # the noise this removes
    text = to_json({"a": 0.1 + 0.2 + 0.3, "b": float("nan"), "c": [float("inf"), 2, "x"],
                    "d": (1 / 3,), "e": 123456789.125})
    assert json.loads(text) == {"a": 0.6, "b": None, "c": [None, 2, "x"],
                                "d": [0.333333333333], "e": 123456789.125}
    assert "NaN" not in text and "Infinity" not in text


def test_json_rounding_keeps_every_real_digit() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        v = rng.uniform(-1, 1) * 10 ** rng.randint(-6, 12)
        assert abs(json_ready(v) - v) <= abs(v) * 1e-11


def test_numbers_never_print_in_scientific_notation() -> None:
    rng = random.Random(3)
    for _ in range(3000):
        v = rng.uniform(0, 1) * 10 ** rng.randint(-6, 10)
        for f in (units.decimal, units.percent, units.count):
            assert not SCIENTIFIC.search(f(v)), (f.__name__, v, f(v))
    assert units.decimal(68150.3) == "68,150"
    assert units.decimal(45.71) == "45.7" and units.decimal(0.4081) == "0.408"
    assert units.count(27992) == "27,992" and units.percent(0.0283) == "2.8 %"
    assert units.decimal(float("inf")) == "-" and units.decimal(None) == "-"


def test_headers_and_inline_values_carry_their_unit() -> None:
    assert units.header("p95_wait") == "p95 wait (s)"
    assert units.header("pred mean_wait") == "pred mean wait (s)"
    assert units.header("miss_rate") == "miss rate"
    assert units.cell("p95_wait", 2.18) == "2.18 s"
    assert units.cell("utilisation", 0.667) == "66.7 %"


def test_tune_words_an_improvement_as_better() -> None:
    line = improvement_line("cost", 0.553, 0.538, (0.553 - 0.538) / 0.553)
    assert line == "cost 0.553 \u2192 0.538, 2.7 % better than the default settings"
    assert "worse" in improvement_line("cost", 0.5, 0.6, -0.2)
    assert "no change" in improvement_line("cost", 0.5, 0.5, 0.0)


def test_replay_table_has_units_and_no_scientific_notation() -> None:
    r = CliRunner().invoke(app, ["replay", str(KTH), "--limit", "400", "-p", "fifo"])
    assert r.exit_code == 0, r.output
    table = r.stdout
    assert "p95 wait (s)" in table and "span (s)" in table and " %" in table
    assert not SCIENTIFIC.search(table), table


def test_replay_of_a_file_whose_name_does_not_tell_points_at_format(tmp_path: Path) -> None:
    f = tmp_path / "tasks.json"
    f.write_text("arrival,work\n0,1\n1,2\n")
    r = CliRunner().invoke(app, ["replay", str(f), "-p", "fifo"])
    assert r.exit_code == 2
    assert "--format csv" in r.stderr and "format='csv'" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = CliRunner().invoke(app, ["replay", str(f), "-p", "fifo", "--format", "csv",
                                 "--agents", "1", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.splitlines()[0])["tasks"] == 2


def test_ids_that_look_like_rich_markup_print_as_they_are(tmp_path: Path) -> None:
    """An agent id '[/bold]' (a valid id) made every table command fail with rich's
    MarkupError, and a task id '[red]t[/red]' lost its brackets; ids are data, not markup."""
    snap = {
        "name": "[/] night run",
        "agents": [{"id": "[/bold]", "capacity": {"cpu": 2}},
                   {"id": ":smile: b", "capacity": {"cpu": 2}}],
        "tasks": [{"id": "[red]t[/red]", "work": 2, "demand": {"cpu": 1},
                   "current_agent": "[/bold]"},
                  {"id": "u", "work": 1, "demand": {"cpu": 1}, "current_agent": "[/bold]"},
                  {"id": "[x]", "work": 1, "demand": {"cpu": 5}}],
        "weights": {"cost": 0, "makespan": 1},
    }
    p = tmp_path / "markup.json"
    p.write_text(json.dumps(snap))
    for cmd in (["solve", str(p), "--solver", "greedy"],
                ["rebalance", str(p), "--time-limit", "2"],
                ["bottlenecks", str(p), "--solver", "greedy"]):
        r = CliRunner().invoke(app, cmd, env={"COLUMNS": "200"})
        assert r.exit_code == 0, (cmd, r.stderr)
        if cmd[0] != "bottlenecks":
            assert "[/bold]" in r.stdout and ":smile: b" in r.stdout, (cmd, r.stdout)
        if cmd[0] != "rebalance":
            assert "[x]" in r.stdout, (cmd, r.stdout)
        if cmd[0] == "solve":
            assert "[/] night run" in r.stdout, r.stdout
