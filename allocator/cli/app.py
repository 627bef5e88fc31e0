"""The typer application and the error boundary shared by every command."""

from __future__ import annotations

import functools
import logging
import sys
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


def guarded(fn: F) -> F:
    """Turn engine and validation errors into a one-line message and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AllocatorError as e:
            raise fail(str(e)) from None
        except ValidationError as e:
            raise fail(format_validation_error(e)) from None

    return wrapper  # type: ignore[return-value]


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    app()
