"""The shell and Python examples of README.md, docs/*.md and benchmarks/README.md run,
as a newcomer would copy them.

Every fenced block tagged bash/sh/console/shell (or untagged but starting with
`allocator`, `make`, `curl`, `jq` or `python`) is an example. Each one runs as a bash
script (`set -euo pipefail`) in a fresh directory that has the repository's
`data/` and `benchmarks/`, and the installed `allocator` and the project's
`python` on PATH, so a renamed flag, a moved file
or a changed output fails here instead of on a reader's machine. A block tagged
python runs the same way, as the script of `python -` (docs/roadef.md's and
docs/distributed.md's were never run and the latter used names it never defined).

Small sizes: time limits above 2 s are cut to 2 s (`--time-limit 10` ->
`--time-limit 2`, `time_limit=10` -> `time_limit=2`); the examples are written
small otherwise. Examples that use Ray (`allocator ray`, `allocator.distributed`)
are skipped where the optional extra is not installed.

A block that cannot run offline, is long, or is a synopsis with placeholders
carries a marker on the line just above its fence, with the reason:

    <!-- docs-test: skip (synopsis: INPUT and DIR are placeholders) -->

Blocks that talk to `localhost:8000` run against an `allocator serve` the test
starts on 127.0.0.1 (a free port replaces 8000).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
        ROOT / "benchmarks" / "README.md"]
SHELL_LANGS = {"bash", "sh", "console", "shell"}
PYTHON_LANGS = {"python"}
COMMANDS = ("allocator", "make", "curl", "jq", "python")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)[ \t]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
MARKER = re.compile(r"<!--\s*docs-test:\s*(?P<what>[\w-]+)\s*(?:\((?P<why>[^)]*)\))?\s*-->")
TIME_LIMIT = re.compile(r"(--time-limit|--exact-time-limit|\btime_limit)(\s+|=)(\d+(?:\.\d+)?)")
RAY = re.compile(r"\ballocator ray\b|\ballocator\.distributed\b|--backend ray\b")
#: Seconds one example may take (about 2-4 s each on an idle machine, all of them ~30 s).
PER_EXAMPLE_TIMEOUT = 120


@dataclass(frozen=True)
class Example:
    doc: Path
    line: int
    lang: str
    body: str
    marker: str | None
    reason: str | None

    @property
    def id(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"

    @property
    def needs_server(self) -> bool:
        return "localhost:8000" in self.body

    @property
    def needs_ray(self) -> bool:
        return RAY.search(self.body) is not None

    def script(self, port: int | None) -> str:
        text = TIME_LIMIT.sub(lambda m: f"{m[1]}{m[2]}{min(float(m[3]), 2.0):g}", self.body)
        if port is not None:
            text = text.replace("localhost:8000", f"127.0.0.1:{port}")
        if self.lang in PYTHON_LANGS:
            return f"python - <<'__DOCS_PYTHON__'\n{text}__DOCS_PYTHON__\n"
        return text


def first_command(body: str) -> str:
    for ln in body.splitlines():
        ln = ln.strip().removeprefix("$ ")
        if ln and not ln.startswith("#"):
            return ln.split()[0]
    return ""


def examples(doc: Path) -> Iterator[Example]:
    text = doc.read_text()
    for m in FENCE.finditer(text):
        lang, body = m["lang"].lower(), m["body"]
        if lang not in SHELL_LANGS | PYTHON_LANGS and not (
                lang == "" and first_command(body) in COMMANDS):
            continue
        before = [ln for ln in text[:m.start()].splitlines() if ln.strip()]
        mk = MARKER.search(before[-1]) if before else None
        yield Example(doc, text[:m.start()].count("\n") + 1, lang, body,
                      mk["what"] if mk else None, (mk["why"] or "").strip() if mk else None)


ALL = [e for d in DOCS for e in examples(d)]
RUNNABLE = [e for e in ALL if e.marker is None]


def test_the_docs_have_examples_and_most_run() -> None:
    """Synopses are skipped, so each documented command also has a concrete example."""
    assert len(ALL) >= 10
    assert len(RUNNABLE) >= 8, [e.id for e in ALL if e.marker]


@pytest.mark.parametrize("ex", ALL, ids=lambda e: e.id)
def test_every_example_is_tagged_and_every_skip_says_why(ex: Example) -> None:
    assert ex.lang in SHELL_LANGS | PYTHON_LANGS, \
        f"{ex.id}: tag the fence (```bash) so readers and this test know it is a shell example"
    assert ex.marker in (None, "skip"), f"{ex.id}: unknown marker {ex.marker!r}"
    if ex.marker == "skip":
        assert ex.reason, f"{ex.id}: write the reason: <!-- docs-test: skip (why) -->"
    # `make test` would run this suite inside itself; `make demo` installs a venv.
    assert ex.marker == "skip" or "make" not in {first_command(ln) for ln in
                                                 ex.body.splitlines()}, \
        f"{ex.id}: a make example cannot run here; mark it skip with the reason"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh directory with the repository's data/ and benchmarks/ (read-only use), as a
    reader's clone has."""
    d = tmp_path_factory.mktemp("docs")
    (d / "data").symlink_to(ROOT / "data")
    (d / "benchmarks").symlink_to(ROOT / "benchmarks")
    return d


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    from tests.api.server import Server

    s = Server(tmp_path_factory.mktemp("docs-api") / "jobs.db",
               ALLOCATOR_SYNC_TIME_LIMIT="5", ALLOCATOR_JOB_TIME_LIMIT="5",
               ALLOCATOR_MAX_BODY_BYTES="1048576").start()
    try:
        yield s.port
    finally:
        s.stop()


def env_for(workdir: Path) -> dict[str, str]:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PATH": path, "COLUMNS": "120", "NO_COLOR": "1",
           "MPLBACKEND": "Agg", "HOME": str(workdir)}
    env.pop("ALLOCATOR_PLUGINS", None)
    return env


@pytest.mark.parametrize("ex", RUNNABLE, ids=lambda e: e.id)
def test_the_example_runs(ex: Example, workdir: Path, request: pytest.FixtureRequest) -> None:
    for tool in ("curl", "jq"):
        if re.search(rf"(^|[|;&(]\s*|\n\s*){tool}\b", ex.body) and shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    if ex.needs_ray and importlib.util.find_spec("ray") is None:
        pytest.skip("the ray extra is not installed")
    port = request.getfixturevalue("server") if ex.needs_server else None
    proc = subprocess.run(["bash", "-c", "set -euo pipefail\n" + ex.script(port)],
                          cwd=workdir, env=env_for(workdir), capture_output=True, text=True,
                          timeout=PER_EXAMPLE_TIMEOUT, check=False)
    assert proc.returncode == 0, (
        f"{ex.id} exited {proc.returncode}\n--- script\n{ex.script(port)}\n--- stdout\n"
        f"{proc.stdout[-2000:]}\n--- stderr\n{proc.stderr[-2000:]}")
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
