"""The typer application and the error boundary shared by every command."""

from __future__ import annotations

import functools
import importlib
import logging
import os
import sys
import zlib
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from pydantic import ValidationError

from allocator.errors import AllocatorError

app = typer.Typer(
    name="allocator",
    help="Load balancing and task allocation across many agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Benchmarks that print tables (and JSON lines with --json).",
                        no_args_is_help=True)
convert_app = typer.Typer(help="Convert benchmark files into snapshots.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(convert_app, name="convert")
gen_app = typer.Typer(help="Generate benchmark instances.", no_args_is_help=True)
app.add_typer(gen_app, name="gen")

F = TypeVar("F", bound=Callable[..., Any])


def format_validation_error(err: ValidationError) -> str:
    """First error of a pydantic ValidationError as `field.path: message`."""
    parts = []
    for e in err.errors()[:3]:
        loc = ".".join(str(x) for x in e["loc"]) or "(root)"
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    more = f" (+{err.error_count() - 3} more)" if err.error_count() > 3 else ""
    return "; ".join(parts) + more


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


#: Set to 1 to see the traceback of an unexpected error instead of its one-line message.
DEBUG_ENV = "ALLOCATOR_DEBUG"


def one_line(e: BaseException) -> str:
    """The one-line message a command prints for an error it cannot recover from."""
    if isinstance(e, AllocatorError):
        return str(e)
    if isinstance(e, ValidationError):
        return format_validation_error(e)
    if isinstance(e, RecursionError):
        return "input nested too deeply to read"
    if isinstance(e, zlib.error | EOFError):
        return f"corrupt or truncated compressed input ({e})"
    if isinstance(e, MemoryError):
        return "out of memory (use a smaller input)"
    if isinstance(e, OSError) and e.filename is not None:
        return f"{e.filename}: {e.strerror or e}"
    text = " ".join(str(e).split()) or type(e).__name__
    return text if isinstance(e, OSError | ValueError) else f"{type(e).__name__}: {text}"


def guarded(fn: F) -> F:
    """Turn every error into a one-line message on stderr and exit 2.

    Engine and validation errors are expected; anything else (a corrupt gzip,
    JSON nested too deeply, an overflow on absurd numbers) is still a bad input
    from the user's point of view. `ALLOCATOR_DEBUG=1` re-raises for the
    traceback.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:
            if os.environ.get(DEBUG_ENV) and not isinstance(e, AllocatorError | ValidationError):
                raise
            raise fail(one_line(e)) from None

    return wrapper  # type: ignore[return-value]


def load_plugins(spec: str | None = None) -> None:
    """Import the modules named in ALLOCATOR_PLUGINS (comma-separated), as the server does.

    A plugin registers solver backends (or policies) on import, so
    `allocator solve --solver <plugin backend>` works from the command line too.
    """
    spec = os.environ.get("ALLOCATOR_PLUGINS", "") if spec is None else spec
    for name in (x.strip() for x in spec.split(",")):
        if not name:
            continue
        try:
            importlib.import_module(name)
        except Exception as e:
            raise fail(f"ALLOCATOR_PLUGINS: cannot import {name!r}: {one_line(e)}") from None


@app.callback()
def _startup() -> None:
    """Load plugins before any command runs."""
    load_plugins()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    app()
