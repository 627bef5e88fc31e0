"""Build hook: compile the online core with mypyc when a C compiler works.

The project's metadata lives in pyproject.toml; this file only adds the
compiled modules. Why compile: the asyncio runtime's throughput against
ThreadPoolExecutor is bound by the core's decision per task, and the same code
compiled by mypyc runs it in about 0.6x the CPU (docs/benchmarks/online-perf.md).

Never fails an install for it: with ALLOCATOR_PURE_PYTHON=1, without a working
C compiler (and the Python headers), or if mypyc or the C build fails, the
install is pure Python, says why on stderr (`pip install -v` shows it) and
records the reason in allocator/online/_native_build.json, which
`allocator --version` and `allocator.online.native_build()` report. After a
compile the same file holds the sources' hashes, so an editable install whose
sources changed since falls back to them (allocator/_native.py).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, ClassVar

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
#: Commands that build something; metadata queries (egg_info, dist_info) skip mypyc.
BUILDS = {"build", "build_ext", "bdist_wheel", "editable_wheel", "install", "develop",
          "bdist_egg"}


def _load_native() -> Any:
    """allocator/_native.py by path (stdlib only), without importing the package."""
    spec = importlib.util.spec_from_file_location("_allocator_native_build",
                                                  ROOT / "allocator" / "_native.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


native = _load_native()


def short(exc: BaseException, limit: int = 160) -> str:
    """An exception as one short line for the manifest (the build log has the rest)."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[-1] if lines else repr(exc)}"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def say(msg: str) -> None:
    sys.stderr.write(f"allocator setup: {msg}\n")
    sys.stderr.flush()


def compiler_problem() -> str | None:
    """Why a C extension cannot be built here, or None (compiles a tiny file with Python.h)."""
    try:
        from distutils import ccompiler
        from distutils import sysconfig as dsysconfig

        with tempfile.TemporaryDirectory(prefix="allocator-cc-") as tmp:
            src = Path(tmp, "probe.c")
            src.write_text("#include <Python.h>\nint allocator_probe(void) { return 0; }\n")
            cc: Any = ccompiler.new_compiler()
            dsysconfig.customize_compiler(cc)
            cc.compile([str(src)], output_dir=tmp, include_dirs=[dsysconfig.get_python_inc()])
    except Exception as exc:
        return f"no working C compiler with the Python headers ({short(exc)})"
    return None


def mypyc_config() -> Path:
    """The project's mypy settings for the compile, minus what a build env may lack.

    The build runs in pip's isolated environment (setuptools and mypy only), so
    no pydantic plugin; errors outside the compiled modules are not the
    compile's business (follow_imports = silent).
    """
    path = ROOT / "build" / "mypyc" / "mypy.ini"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[mypy]\npython_version = 3.11\nignore_missing_imports = True\n"
                    "check_untyped_defs = True\nwarn_unused_ignores = False\n"
                    "follow_imports = silent\n")
    return path


def plan() -> tuple[list[Any], str | None]:
    """(extensions, why not compiled): the mypyc extensions, or none and the reason."""
    if native.pure_requested(os.environ):
        return [], f"{native.ENV_PURE}={os.environ[native.ENV_PURE]} at build time"
    if sys.implementation.name != "cpython":
        return [], f"mypyc needs CPython (this is {sys.implementation.name})"
    try:
        import mypy.version
        from mypyc.build import mypycify
    except ImportError as exc:
        return [], f"mypyc is not installed in the build environment ({exc})"
    problem = compiler_problem()
    if problem:
        return [], problem
    sources = [str(native.module_path(ROOT, m).relative_to(ROOT)) for m in native.GROUP]
    # Hashed before mypyc reads them: an edit during the build makes the result stale.
    BuildExt.manifest = native.build_manifest(ROOT, mypy=mypy.version.__version__)
    cfg = mypyc_config()
    t0 = time.perf_counter()
    try:
        exts = mypycify(["--config-file", str(cfg), "--cache-dir",
                         str(ROOT / "build" / "mypyc" / "mypy_cache"), *sources],
                        group_name=native.GROUP_NAME, target_dir=str(ROOT / "build" / "mypyc"))
    except BaseException as exc:  # mypyc reports type errors with SystemExit
        if isinstance(exc, KeyboardInterrupt):
            raise
        traceback.print_exc()
        return [], f"mypyc could not compile the core ({short(exc)})"
    say(f"mypyc {mypy.version.__version__}: generated C for {len(sources)} modules "
        f"in {time.perf_counter() - t0:.0f} s; compiling")
    return exts, None


def _remove_compiled(root: Path) -> None:
    """Drop compiled group files under `root` (editable tree or build dir): never a mix."""
    for path in native.compiled_files(root).values():
        path.unlink()


class BuildPy(build_py):
    """Writes the pure manifest (with its reason) when nothing is compiled."""

    def run(self) -> None:
        super().run()
        if REASON is not None:
            say(f"installing the pure-Python online core: {REASON}")
            self._record(native.pure_manifest(REASON))

    def _record(self, manifest: dict[str, Any]) -> None:
        native.write_manifest(Path(self.build_lib), manifest)
        if getattr(self, "editable_mode", False):  # the tree is what gets imported
            _remove_compiled(ROOT)
            native.write_manifest(ROOT, manifest)


class BuildExt(build_ext):
    """Builds the mypyc group; on any failure, falls back to a pure install."""

    manifest: ClassVar[dict[str, Any]] = {}  # set by plan(), before mypyc reads the sources

    def run(self) -> None:
        if not self.extensions:
            return super().run()
        editable = bool(getattr(self, "editable_mode", False) or self.inplace)
        t0 = time.perf_counter()
        try:
            super().run()
        except Exception as exc:
            traceback.print_exc()
            reason = f"the C build of the mypyc core failed ({short(exc)})"
            say(f"installing the pure-Python online core: {reason}")
            _remove_compiled(Path(self.build_lib))
            if editable:
                _remove_compiled(ROOT)
            self.extensions = []
            manifest = native.pure_manifest(reason)
        else:
            say(f"compiled the online core with mypyc in {time.perf_counter() - t0:.0f} s")
            manifest = self.manifest
        native.write_manifest(Path(self.build_lib), manifest)
        if editable:
            native.write_manifest(ROOT, manifest)


REASON: str | None = None

if __name__ == "__main__":  # setuptools' build backend runs this file as __main__
    EXTENSIONS: list[Any] = []
    if any(arg in BUILDS for arg in sys.argv[1:]):
        EXTENSIONS, REASON = plan()
    setup(ext_modules=EXTENSIONS, cmdclass={"build_py": BuildPy, "build_ext": BuildExt})
