"""Which build of the online core runs: the mypyc-compiled one or the Python source.

setup.py compiles the online core's hot modules (`GROUP`) with mypyc into one
shared library when a C compiler works, and writes a manifest (`MANIFEST`)
of the hashes of their sources and of the project modules they import. An
editable install (`pip install -e`, what `make` and every worktree use)
leaves the compiled `.so` files beside the `.py` files, where Python's import
system prefers them: edit core.py and the old compiled code would still run.

So before the first of them is imported (allocator/online/__init__.py calls
`activate`), this module checks that every source still hashes as it did at
build time. If one changed, if the build is incomplete or does not load, or if
`ALLOCATOR_PURE_PYTHON=1`, the whole group loads from its `.py` files (mypyc
modules of one group call each other natively, so a mix would still run the
stale code) and a warning says why, once per process.

Standard library only, and nothing here imports the group: setup.py loads this
file by path, and `allocator --version` reports the build without paying for
the online core's import.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

log = logging.getLogger("allocator.online")

#: The modules every decision runs through, compiled together (one group), and
#: the objects the core reads and writes on every event (events and instructions,
#: counters and the ledger, breakers, the event log): compiled beside it, the
#: core reads their fields as struct fields instead of through getattr (~40 such
#: reads and writes per task). The runtime (it subclasses asyncio.Future, which
#: mypyc cannot compile) stays Python, as do policies and admission (compiled,
#: AdmissionConfig's checks would raise mypyc's TypeError before its own error).
#: No class here may subclass an interpreted class whose instances have a managed
#: `__dict__` (mypyc's layout of such a subclass varies between builds; the
#: Prometheus collector is in prom.py for that reason; tests/online/test_native.py).
GROUP = ("allocator.online.core", "allocator.online.placement", "allocator.online.queues",
         "allocator.online.state", "allocator.online.stealing", "allocator.online.simulator",
         "allocator.online.events", "allocator.online.metrics", "allocator.online.breaker",
         "allocator.online.log")
#: mypyc's group name; its shared library is `<GROUP_NAME>__mypyc`, inside the package.
GROUP_NAME = "allocator.online._core"
SHARED_LIB = f"{GROUP_NAME}__mypyc"
#: Written at build time beside the compiled modules (git-ignored).
MANIFEST = "allocator/online/_native_build.json"
#: Set (to anything but 0/false/no/off) at build time: do not compile; at run
#: time: load the Python source even if a compiled build is installed.
ENV_PURE = "ALLOCATOR_PURE_PYTHON"
#: Top-level packages of this project (imports of others are not hashed).
FIRST_PARTY = ("allocator", "models")

MYPYC, PURE = "mypyc", "pure"


class NativeBuild(NamedTuple):
    """The build of the online core in use: `build` is "mypyc" or "pure"; `reason` says why."""

    build: str
    reason: str

    def __str__(self) -> str:
        return f"{self.build} ({self.reason})"


def package_root() -> Path:
    """The directory holding the `allocator` and `models` packages (a tree or site-packages)."""
    return Path(__file__).resolve().parent.parent


def module_path(root: Path, module: str) -> Path | None:
    """The source file of a first-party module under `root`, or None."""
    base = root.joinpath(*module.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def dependencies(root: Path) -> list[str]:
    """First-party modules the group imports directly (their source, relative to `root`).

    Why hash them too: compiled code bakes in some facts about what it imports
    (a `Final` constant's value, a class's layout as mypy saw it), so an edit
    there can make the compiled group stale as well.
    """
    found: set[str] = set()
    for mod in GROUP:
        src = module_path(root, mod)
        if src is None:
            continue
        for node in ast.walk(ast.parse(src.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in FIRST_PARTY and name not in GROUP:
                    dep = module_path(root, name)
                    if dep is not None:
                        found.add(_rel(root, dep))
    return sorted(found)


def digest(path: Path) -> str:
    """sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_manifest(root: Path, **info: Any) -> dict[str, Any]:
    """The manifest of a mypyc build of `root`'s group (written by setup.py after a compile)."""
    sources = {}
    for mod in GROUP:
        src = module_path(root, mod)
        if src is None:
            raise FileNotFoundError(f"{mod}: no source under {root}")
        sources[_rel(root, src)] = digest(src)
    deps = {rel: digest(root / rel) for rel in dependencies(root)}
    return {"build": MYPYC, "group": list(GROUP), "shared_lib": SHARED_LIB,
            "sources": sources, "dependencies": deps,
            "python": sys.version.split()[0],
            "ext_suffix": importlib.machinery.EXTENSION_SUFFIXES[0], **info}


def pure_manifest(reason: str) -> dict[str, Any]:
    """The manifest of a build that did not compile the group, with the reason."""
    return {"build": PURE, "reason": reason}


def write_manifest(root: Path, manifest: Mapping[str, Any]) -> Path:
    path = root / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


def compiled_files(root: Path, suffixes: Sequence[str] | None = None) -> dict[str, Path]:
    """Module -> compiled extension file under `root` that this interpreter would import."""
    sfx = list(importlib.machinery.EXTENSION_SUFFIXES if suffixes is None else suffixes)
    out: dict[str, Path] = {}
    for mod in (*GROUP, SHARED_LIB):
        base = root.joinpath(*mod.split("."))
        for s in sfx:
            cand = base.parent / (base.name + s)
            if cand.is_file():
                out[mod] = cand
                break
    return out


def pure_requested(environ: Mapping[str, str]) -> bool:
    value = environ.get(ENV_PURE, "").strip().lower()
    return value not in ("", "0", "false", "no", "off")


def decide(root: Path | None = None, environ: Mapping[str, str] | None = None
           ) -> tuple[NativeBuild, bool]:
    """Which build to load, and whether the reason deserves a warning.

    Reads files only (the manifest, the sources' hashes): importing nothing of
    the group, it can run before the group's first import.
    """
    root = package_root() if root is None else root
    environ = os.environ if environ is None else environ
    if pure_requested(environ):
        return NativeBuild(PURE, f"{ENV_PURE}={environ[ENV_PURE]}"), False
    exts = compiled_files(root)
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = None
    if not exts:
        if manifest and manifest.get("build") == PURE:
            return NativeBuild(PURE, f"installed without compiling: {manifest['reason']}"), False
        return NativeBuild(PURE, "not compiled (no mypyc build installed)"), False
    missing = [m for m in (*GROUP, SHARED_LIB) if m not in exts]
    if missing:
        return NativeBuild(PURE, "incomplete compiled build (missing "
                           + ", ".join(missing) + "); reinstall to recompile"), True
    if not manifest:
        return NativeBuild(PURE, f"compiled modules without a build manifest ({MANIFEST}); "
                           "reinstall to recompile"), True
    if manifest.get("build") != MYPYC:
        return NativeBuild(PURE, "compiled modules left from an earlier build (the last "
                           f"install did not compile: {manifest.get('reason')})"), True
    recorded = {**manifest.get("sources", {}), **manifest.get("dependencies", {})}
    changed = []
    for rel, sha in sorted(recorded.items()):
        path = root / rel
        if not path.is_file() or digest(path) != sha:
            changed.append(rel)
    if set(manifest.get("group", ())) != set(GROUP):
        changed.append("the compiled group's module list")
    if changed:
        return NativeBuild(PURE, "source changed since the compiled build: "
                           + ", ".join(changed)
                           + "; recompile: make native (or pip install -e .)"), True
    return NativeBuild(MYPYC, f"compiled with mypyc {manifest.get('mypy', '?')} "
                       f"for Python {manifest.get('python', '?')}"), False


class SourceFinder(importlib.abc.MetaPathFinder):
    """Finds the group's modules as their `.py` files even where a compiled one sits beside."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in GROUP:
            return None
        src = module_path(self.root, fullname)
        return None if src is None else importlib.util.spec_from_file_location(fullname, src)


_active: NativeBuild | None = None


def activate(root: Path | None = None) -> NativeBuild:
    """Decide the build once per process and make the group's imports follow it.

    Call before any module of GROUP is imported (allocator/online/__init__.py
    does); later calls return the first answer.
    """
    global _active
    if _active is not None:
        return _active
    root = package_root() if root is None else root
    choice, warn = decide(root)
    if choice.build == MYPYC:
        try:  # the shared library fails to load on a broken or foreign build
            importlib.import_module(SHARED_LIB)
        except Exception as exc:
            choice, warn = NativeBuild(PURE, f"the compiled build does not load ({exc!r}); "
                                             "reinstall to recompile"), True
    if choice.build == PURE and compiled_files(root):
        loaded = [m for m in GROUP if m in sys.modules]
        if loaded:  # too late to switch: say so rather than run a mix
            raise ImportError(f"allocator: {', '.join(loaded)} imported before the build "
                              "guard ran (import allocator.online first)")
        sys.meta_path.insert(0, SourceFinder(root))
    if warn:
        log.warning("allocator.online: running the pure-Python core: %s", choice.reason)
    else:
        log.debug("allocator.online core build: %s", choice)
    _active = choice
    return choice


def active() -> NativeBuild:
    """The build in use: checked against the files the group was actually imported from."""
    choice = activate()
    core = sys.modules.get(GROUP[0])
    if core is not None:
        compiled = not str(getattr(core, "__file__", "")).endswith(".py")
        if compiled != (choice.build == MYPYC):
            return NativeBuild(MYPYC if compiled else PURE,
                               f"imported from {getattr(core, '__file__', '?')}")
    return choice


def describe() -> str:
    """One line for `allocator --version`: the build that would load, without loading it."""
    if _active is not None:
        return str(active())
    return str(decide()[0])
