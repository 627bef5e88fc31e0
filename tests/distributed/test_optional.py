"""Ray is optional: everything imports without it and asking for it is a typed error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from allocator.cli import app
from allocator.distributed import RayUnavailableError, get_backend, require_ray
from allocator.errors import AllocatorError, InvalidInputError
from tests.conftest import EXAMPLES, ROOT


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError


def test_everything_imports_without_ray() -> None:
    code = ("import sys; sys.modules['ray'] = None\n"
            "import allocator.cli, allocator.distributed, allocator.distributed.driver\n"
            "import allocator.distributed.sweeps, allocator.distributed.worker\n"
            "from allocator.distributed import ray_available; assert not ray_available()\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)


def test_ray_requested_without_ray_is_a_typed_error(no_ray: None) -> None:
    with pytest.raises(RayUnavailableError, match=r"pip install 'allocator\[ray\]'"):
        require_ray()
    with pytest.raises(RayUnavailableError):
        get_backend("ray")
    assert issubclass(RayUnavailableError, AllocatorError)
    from allocator.distributed.driver import RayExecutor

    with pytest.raises(RayUnavailableError):
        RayExecutor([])


def test_unknown_backend() -> None:
    with pytest.raises(InvalidInputError, match="unknown backend"):
        get_backend("spark")


def test_cli_backend_ray_without_ray(no_ray: None, tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["batch", str(EXAMPLES / "priorities.json"), "--out",
                            str(tmp_path / "out"), "--backend", "ray"])
    assert r.exit_code == 2
    assert "ray backend needs the optional extra" in r.output
    assert not (tmp_path / "out" / "priorities.plan.json").exists()
    r = runner.invoke(app, ["ray", "run", "--tasks", "1"])
    assert r.exit_code == 2 and "optional extra" in r.output


@pytest.mark.parametrize("args", [["--seconds", "-1"], ["--seconds", "nan"],
                                  ["--kill", "a0", "--kill-after", "nan"],
                                  ["--num-cpus", "0"], ["--requests-per-min", "-5"]])
def test_ray_run_refuses_flags_it_cannot_run_with_before_starting_ray(args: list[str]) -> None:
    """--seconds -1 ran 90 s failing every task; --requests-per-min -5 and --num-cpus 0 hung
    with Ray crashing. Checked before Ray starts (this test needs no Ray)."""
    r = CliRunner().invoke(app, ["ray", "run", "--agents", "2", "--tasks", "3", *args])
    assert r.exit_code == 2, r.output
    assert "must be" in r.output or "need a finite number" in r.output


def test_an_address_nobody_answers_on_is_a_one_line_error(tmp_path: Path) -> None:
    """`allocator ray run --address 127.0.0.1:1` (nothing listening) retried inside
    `ray.init` for ever (still at it after 4 minutes); now exit 2, one line, in seconds.
    Needs Ray installed (no cluster)."""
    pytest.importorskip("ray")
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for cmd in (["ray", "run", "--tasks", "1", "--address", f"127.0.0.1:{port}"],
                ["batch", str(EXAMPLES / "priorities.json"), "--out", str(tmp_path), "--backend",
                 "ray", "--address", f"ray://127.0.0.1:{port}"]):
        r = CliRunner().invoke(app, cmd)
        assert r.exit_code == 2, r.output
        assert "cannot reach a Ray cluster" in r.output and "address" in r.output
        assert "Traceback" not in r.output
