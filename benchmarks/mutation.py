"""Mutation testing of the core modules, one module at a time against its fast tests.

Drives mutmut 3 (``make mutation``). For each module a scratch directory
``.mutation/<module>/`` gets a copy of the package holding the module and a
``pyproject.toml`` whose ``[tool.mutmut]`` section mutates only that module
and runs only that module's test selection, so a run never pays for the
slow end-to-end suites and one module's survivors are not killed by tests
that merely happen to import it. mutmut itself runs only the tests that
cover each mutated function.

Prints one table (module, mutants, killed, timeout, survived, no tests,
score %) and the surviving mutants (with ``--diff``, their diffs). The
score is (killed + timeout) / mutants: a timeout counts as killed (as
mutmut's own badge does) and a mutant no selected test reaches ("no
tests") counts as not killed.

    python benchmarks/mutation.py                 # every module
    python benchmarks/mutation.py allocator/online/breaker.py --diff
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = ROOT / ".mutation"

#: Module -> its fast tests (pytest arguments). Each list is the tests written
#: for that module's rules; end-to-end suites (servers, NSGA-II runs) stay out.
MODULES: dict[str, list[str]] = {
    "allocator/validate.py": ["tests/test_validate.py", "tests/test_validate_rules.py"],
    "allocator/objectives.py": ["tests/test_objectives.py"],
    "allocator/constraints.py": ["tests/test_constraint_rules.py", "tests/test_constraints.py",
                                 "-k", "not nsga2 and not cli"],
    "allocator/online/state.py": ["tests/online/test_state.py", "tests/online/test_core.py",
                                  "tests/online/test_properties.py"],
    "allocator/online/queues.py": ["tests/online/test_queues.py",
                                   "tests/online/test_disciplines.py"],
    "allocator/online/breaker.py": ["tests/online/test_breaker.py"],
    "allocator/online/admission.py": [
        "tests/online/test_admission.py", "tests/online/test_core.py",
        "tests/online/test_admission_extra.py"
        "::test_throttle_sheds_low_classes_under_overload_and_recovers"],
    "allocator/online/ratelimit.py": ["tests/online/test_ratelimit.py"],
    # The route walks (an app per test, every route) check the wiring of the routers'
    # key dependency, not this module's code: they stay out of its mutation run.
    "api/security.py": ["tests/api/test_security.py", "-k", "not route"],
}

#: mutmut exit codes -> our columns (see mutmut.stats.status_by_exit_code).
KILLED = {1, 3, 37}
#: Timeouts count as killed (as mutmut's badge does) but are shown apart: mutmut's
#: timeout is wall-clock, so on a loaded machine a slow survivor could hide here.
TIMEOUT = {36, -24, 24, 152, 255}
SURVIVED = {0}
NO_TESTS = {5, 33}


@dataclass
class Row:
    module: str
    mutants: int
    killed: int
    timeout: int
    survived: int
    no_tests: int
    other: int
    seconds: float
    survivors: list[str]

    @property
    def score(self) -> float:
        # Mutants no selected test reaches count against the score: they would survive.
        return 100.0 * (self.killed + self.timeout) / self.mutants if self.mutants else 100.0


def _tests_for(module: str) -> list[str]:
    """The module's pytest arguments, leaving out test files that do not exist (yet)."""
    return [a for a in MODULES[module]
            if not a.startswith("tests/") or (ROOT / a.split("::")[0]).exists()]


def _prepare(module: str) -> Path:
    """A fresh scratch directory for one module, with its own [tool.mutmut] section."""
    work = SCRATCH / module.replace("/", "_").removesuffix(".py")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    package = module.split("/")[0]
    shutil.copytree(ROOT / package, work / package,
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "tests", work / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    (work / "data").symlink_to(ROOT / "data")
    base = (ROOT / "pyproject.toml").read_text()
    base = re.sub(r"(?ms)^\[tool\.mutmut\].*?(?=^\[|\Z)", "", base)
    selection = json.dumps(_tests_for(module))
    base += (
        "\n[tool.mutmut]\n"
        f'source_paths = ["{package}"]\n'
        f'only_mutate = ["{module}"]\n'
        f"pytest_add_cli_args_test_selection = {selection}\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-o", "addopts=", "-q"]\n'
        'also_copy = ["data"]\n'
        "timeout_multiplier = 5.0\n"
        "use_git_change_detection = false\n"
    )
    (work / "pyproject.toml").write_text(base)
    return work


def _collect(module: str, work: Path, seconds: float) -> Row:
    meta = work / "mutants" / (module + ".meta")
    codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"] \
        if meta.exists() else {}
    killed = sum(1 for c in codes.values() if c in KILLED)
    timeout = sum(1 for c in codes.values() if c in TIMEOUT)
    survivors = sorted(k for k, c in codes.items() if c in SURVIVED)
    survivors += sorted(f"{k} (no test reaches it)" for k, c in codes.items() if c in NO_TESTS)
    no_tests = sum(1 for c in codes.values() if c in NO_TESTS)
    other = len(codes) - killed - timeout - len(survivors)
    return Row(module, len(codes), killed, timeout, len(survivors) - no_tests, no_tests, other,
               seconds,
               survivors)


def run_module(module: str, max_children: int, mutants: list[str] | None = None) -> Row:
    work = _prepare(module)
    mutmut = Path(sys.executable).parent / "mutmut"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    t0 = time.monotonic()
    log = work / "mutmut.log"
    with log.open("w") as out:
        rc = subprocess.call([str(mutmut), "run", "--max-children", str(max_children),
                              *(mutants or [])],
                             cwd=work, stdout=out, stderr=subprocess.STDOUT, env=env)
    seconds = time.monotonic() - t0
    if rc != 0:
        tail = log.read_text()[-2000:]
        print(f"mutmut failed on {module} (exit {rc}); log {log}:\n{tail}", flush=True)
    return _collect(module, work, seconds)


def diff_of(module: str, name: str) -> str:
    work = SCRATCH / module.replace("/", "_").removesuffix(".py")
    mutmut = Path(sys.executable).parent / "mutmut"
    return subprocess.run([str(mutmut), "show", name], cwd=work, capture_output=True,
                          text=True).stdout


def table(rows: list[Row]) -> str:
    head = ("module", "mutants", "killed", "timeout", "survived", "no tests", "other",
            "score %", "time s")
    fields = ("mutants", "killed", "timeout", "survived", "no_tests", "other")
    n = {f: sum(getattr(r, f) for r in rows) for f in fields}
    tot = Row("**total**", n["mutants"], n["killed"], n["timeout"], n["survived"],
              n["no_tests"], n["other"], sum(r.seconds for r in rows), [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in [*rows, tot]:
        cells = [r.module, *(str(getattr(r, f)) for f in fields), f"{r.score:.1f}",
                 f"{r.seconds:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("modules", nargs="*", help=f"default: all of {', '.join(MODULES)}")
    p.add_argument("--max-children", type=int, default=2, help="parallel mutant workers")
    p.add_argument("--diff", action="store_true", help="print each survivor's diff")
    p.add_argument("--min-score", type=float, default=0.0,
                   help="exit 1 when a module scores below this (percent)")
    p.add_argument("--json", type=Path, help="also write the rows here")
    p.add_argument("--mutants", nargs="+", metavar="NAME",
                   help="run only these mutants (mutmut names or globs, e.g. the survivors "
                        "of an earlier run); the others are reported as not checked")
    args = p.parse_args(argv)
    modules = args.modules or list(MODULES)
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        p.error(f"unknown module(s) {unknown}; known: {list(MODULES)}")
    rows: list[Row] = []
    for m in modules:
        print(f"mutating {m} against {' '.join(_tests_for(m))} ...", flush=True)
        rows.append(run_module(m, args.max_children, args.mutants))
        r = rows[-1]
        print(f"  {r.mutants} mutants, {r.killed} killed, {r.timeout} timed out, "
              f"{r.survived} survived, "
              f"{r.score:.1f}% in {r.seconds:.0f} s", flush=True)
    print()
    print(table(rows))
    print()
    for r in rows:
        for name in r.survivors:
            print(f"survived: {name}")
            if args.diff and not name.endswith(")"):
                print(diff_of(r.module, name))
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=1))
    low = [r.module for r in rows if r.score < args.min_score or not r.mutants]
    if low:
        print(f"below {args.min_score:g}%: {', '.join(low)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
