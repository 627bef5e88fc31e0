"""The build guard: compiled online core only while its sources are the ones it was built from.

An editable install keeps mypyc's extension modules beside the sources, where
Python prefers them; allocator/_native.py must load the whole group from
source once a source changed, when asked to (ALLOCATOR_PURE_PYTHON), or when
the compiled build is incomplete or does not load. Checked on copies of the
package (fresh interpreters, since the choice is made once per process): with
stand-in extension files anywhere, and with this install's real compiled
build when it has one. The last test runs the same simulations on both builds.
"""

from __future__ import annotations

import enum
import importlib
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from allocator import _native
from allocator._native import GROUP, MYPYC, PURE, SHARED_LIB

ROOT = _native.package_root()
EXT = importlib.machinery.EXTENSION_SUFFIXES[0]
COMPILED = _native.decide(ROOT, {})[0].build == MYPYC

_PROBE = """
import json, sys
import allocator, allocator.online as online
from allocator._native import GROUP
b = online.native_build()
print(json.dumps({"build": b.build, "reason": b.reason, "allocator": allocator.__file__,
                  "files": {m: sys.modules[m].__file__ for m in GROUP if m in sys.modules}}))
"""


def copy_tree(dest: Path, *, with_build: bool) -> Path:
    """The allocator and models packages under `dest` (this install's build files or none)."""
    skip = ["__pycache__", "*.pyc"] + ([] if with_build else ["*.so", "*.pyd",
                                                               "_native_build.json"])
    for pkg in ("allocator", "models"):
        shutil.copytree(ROOT / pkg, dest / pkg, ignore=shutil.ignore_patterns(*skip))
    return dest


def stand_ins(root: Path) -> None:
    """Garbage extension files for the group, and a manifest of the sources as they are."""
    for mod in (*GROUP, SHARED_LIB):
        root.joinpath(*mod.split(".")).with_name(mod.rsplit(".", 1)[1] + EXT).write_bytes(
            b"not an extension module")
    _native.write_manifest(root, _native.build_manifest(root, mypy="test"))


def probe(root: Path, **env: str) -> tuple[dict[str, object], str]:
    """native_build() and the group's files in a fresh interpreter on `root`; and its stderr."""
    full = {k: v for k, v in os.environ.items() if k != _native.ENV_PURE}
    full.update(PYTHONPATH=str(root), **env)
    proc = subprocess.run([sys.executable, "-c", _PROBE], cwd=root, env=full,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(out["allocator"]).is_relative_to(root)  # the copy, not the install
    return out, proc.stderr


def edit(path: Path) -> None:
    path.write_text(path.read_text() + "\n# edited after the build\n")


def test_a_tree_without_compiled_modules_is_pure_and_says_so(tmp_path: Path) -> None:
    root = copy_tree(tmp_path, with_build=False)
    assert _native.decide(root, {}) == (
        (PURE, "not compiled (no mypyc build installed)"), False)
    _native.write_manifest(root, _native.pure_manifest("no working C compiler"))
    assert _native.decide(root, {}) == (
        (PURE, "installed without compiling: no working C compiler"), False)


def test_unchanged_sources_choose_the_compiled_build(tmp_path: Path) -> None:
    root = copy_tree(tmp_path, with_build=False)
    stand_ins(root)
    (build, reason), warn = _native.decide(root, {})
    assert (build, warn) == (MYPYC, False) and "mypyc test" in reason


@pytest.mark.parametrize("changed", ["allocator/online/core.py", "allocator/online/stealing.py",
                                     "allocator/online/events.py", "models/__init__.py"])
def test_an_edited_source_or_dependency_chooses_the_pure_build(tmp_path: Path,
                                                                changed: str) -> None:
    root = copy_tree(tmp_path, with_build=False)
    stand_ins(root)
    edit(root / changed)
    (build, reason), warn = _native.decide(root, {})
    assert (build, warn) == (PURE, True)
    assert reason.startswith("source changed since the compiled build: " + changed)


def test_the_manifest_covers_the_group_and_what_it_imports() -> None:
    deps = _native.dependencies(ROOT)
    assert {"allocator/online/admission.py", "allocator/online/policies.py",
            "models/__init__.py"} <= set(deps)
    assert not any(d.endswith(("core.py", "queues.py", "simulator.py", "events.py"))
                   for d in deps)


def test_an_incomplete_or_unrecorded_build_chooses_the_pure_build(tmp_path: Path) -> None:
    root = copy_tree(tmp_path, with_build=False)
    stand_ins(root)
    (root / "allocator/online" / ("queues" + EXT)).unlink()
    (build, reason), warn = _native.decide(root, {})
    assert (build, warn) == (PURE, True) and "allocator.online.queues" in reason
    stand_ins(root)
    (root / _native.MANIFEST).unlink()
    (build, reason), warn = _native.decide(root, {})
    assert (build, warn) == (PURE, True) and "without a build manifest" in reason


@pytest.mark.parametrize("value, pure", [("1", True), ("yes", True), ("0", False),
                                         ("", False), ("off", False)])
def test_the_environment_variable(tmp_path: Path, value: str, pure: bool) -> None:
    root = copy_tree(tmp_path, with_build=False)
    stand_ins(root)
    choice, warn = _native.decide(root, {_native.ENV_PURE: value})
    assert choice.build == (PURE if pure else MYPYC) and not warn
    if pure:
        assert choice.reason == f"ALLOCATOR_PURE_PYTHON={value}"


def test_edited_source_loads_every_module_of_the_group_from_source(tmp_path: Path) -> None:
    """The stand-in extensions cannot load: importing one would fail the probe."""
    root = copy_tree(tmp_path, with_build=False)
    stand_ins(root)
    edit(root / "allocator/online/placement.py")
    out, err = probe(root)
    assert out["build"] == PURE and "allocator/online/placement.py" in str(out["reason"])
    files = out["files"]
    assert isinstance(files, dict) and set(files) == set(GROUP) - {"allocator.online.simulator"}
    assert all(str(f).endswith(".py") for f in files.values())
    assert err.count("running the pure-Python core") == 1  # warned once, via logging


def test_a_build_that_does_not_load_falls_back_to_source(tmp_path: Path) -> None:
    root = copy_tree(tmp_path, with_build=False)
    stand_ins(root)
    out, err = probe(root)
    assert out["build"] == PURE and "does not load" in str(out["reason"])
    assert err.count("running the pure-Python core") == 1


def test_the_variable_loads_the_source_without_a_warning(tmp_path: Path) -> None:
    root = copy_tree(tmp_path, with_build=False)
    stand_ins(root)
    out, err = probe(root, ALLOCATOR_PURE_PYTHON="1")
    assert (out["build"], out["reason"]) == (PURE, "ALLOCATOR_PURE_PYTHON=1")
    assert "running the pure-Python core" not in err


needs_build = pytest.mark.skipif(not COMPILED, reason="this install has no mypyc build of "
                                 "the online core (pure install, or sources edited since)")


@needs_build
def test_the_real_build_runs_compiled_until_a_source_changes(tmp_path: Path) -> None:
    root = copy_tree(tmp_path, with_build=True)
    out, err = probe(root)
    assert out["build"] == MYPYC, out
    files = out["files"]
    assert isinstance(files, dict) and files and not any(
        str(f).endswith(".py") for f in files.values())
    assert "running the pure-Python core" not in err
    edit(root / "allocator/online/core.py")
    out, err = probe(root)
    assert out["build"] == PURE and "allocator/online/core.py" in str(out["reason"])
    assert isinstance(out["files"], dict)
    assert all(str(f).endswith(".py") for f in out["files"].values())


_SIM = """
import json
from allocator.online import native_build
from allocator.online.simulator import simulate
from allocator.online.workload import WorkloadConfig, generate
rows = {}
for policy in ("fifo", "edf+stealing", "priority", "wfq", "jsq", "p2c"):
    wl = generate(WorkloadConfig(tasks=600, agents=5, skew=1.2, seed=4, mtbf=150.0,
                                 task_failure=0.03, skill_share=0.2, arrival="bursty"))
    row = simulate(wl, policy, seed=2)
    for k in ("wall_s", "events_per_s"):
        row.pop(k)
    rows[policy] = row
print(json.dumps({"build": native_build().build, "rows": rows}, sort_keys=True, default=str))
"""


@needs_build
def test_both_builds_make_the_same_decisions() -> None:
    out = {}
    for env in ({}, {_native.ENV_PURE: "1"}):
        full = {k: v for k, v in os.environ.items() if k != _native.ENV_PURE} | env
        proc = subprocess.run([sys.executable, "-c", _SIM], env=full, capture_output=True,
                              text=True, timeout=300, check=True)
        got = json.loads(proc.stdout.strip().splitlines()[-1])
        out[got["build"]] = got["rows"]
    assert set(out) == {MYPYC, PURE}
    assert out[MYPYC] == out[PURE]


def _setup_module() -> Any:
    """setup.py as a module (its `setup()` call runs only as __main__, as the backend runs it)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "allocator_setup_under_test", Path(__file__).resolve().parents[2] / "setup.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_setup_skips_the_compile_without_a_compiler_or_when_asked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    setup = _setup_module()
    monkeypatch.delenv(_native.ENV_PURE, raising=False)
    monkeypatch.setenv("CC", str(Path("/nonexistent/cc")))
    problem = setup.compiler_problem()
    assert problem and problem.startswith("no working C compiler")
    assert setup.plan() == ([], problem)
    monkeypatch.setenv(_native.ENV_PURE, "1")
    assert setup.plan() == ([], "ALLOCATOR_PURE_PYTHON=1 at build time")


def test_build_artefacts_are_ignored_by_git() -> None:
    """An install must leave `git status` clean: the extensions, the manifest, mypyc's C."""
    repo = Path(__file__).resolve().parents[2]
    if not (repo / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    paths = [f"allocator/online/core{EXT}", f"allocator/online/_core__mypyc{EXT}",
             _native.MANIFEST, "build/mypyc/allocator/online/__native__core.c"]
    proc = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=repo,
                          capture_output=True, text=True, timeout=60)
    assert sorted(proc.stdout.split()) == sorted(paths), proc.stderr


#: Py_TPFLAGS_MANAGED_DICT (CPython 3.11+): the instances of such a type keep their
#: `__dict__` before the object header, at a negative `__dictoffset__`.
_MANAGED_DICT = 1 << 4


def _group_classes() -> list[tuple[str, type]]:
    """The classes defined in the group's modules (enums left out: mypyc builds them as
    ordinary Python classes)."""
    out = []
    for name in GROUP:
        mod = importlib.import_module(name)
        out += [(f"{name}.{attr}", cls) for attr, cls in vars(mod).items()
                if isinstance(cls, type) and cls.__module__ == name
                and not issubclass(cls, enum.Enum)]
    return out


def test_no_group_class_inherits_an_interpreted_class_with_a_managed_dict() -> None:
    """Such a base (prometheus_client's Collector was one, in metrics.py) is laid out by
    mypyc differently from build to build: one fresh build of the same source gave
    the subclass the base's negative dict offset and a weak reference offset on its
    vtable pointer (SystemError in dictobject.c, then a segfault in the garbage
    collector). Such classes belong outside the group (allocator/online/prom.py)."""
    bad = [f"{qual} <- {b.__module__}.{b.__qualname__}"
           for qual, cls in _group_classes() for b in cls.__mro__[1:]
           if b.__module__ not in GROUP and b.__flags__ & _MANAGED_DICT]
    assert not bad, bad


def test_compiled_classes_keep_their_dict_and_weakref_slots_inside_the_object() -> None:
    """The layout of this install's compiled classes: a `__dict__` or weak reference slot
    outside the object (or on the vtable) is the memory corruption above."""
    import allocator.online as online

    if online.native_build().build != MYPYC:
        pytest.skip("this process runs the group from source")
    bad = []
    for qual, cls in _group_classes():
        size, dic, weak = cls.__basicsize__, cls.__dictoffset__, cls.__weakrefoffset__
        if not (0 <= dic < size and 0 <= weak < size) or (weak and weak < 24) or (dic and dic < 24):
            bad.append(f"{qual}: basicsize {size}, dictoffset {dic}, weakrefoffset {weak}")
    assert not bad, bad

