"""The typer application and the error boundary shared by every command."""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import logging
import os
import sys
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from typing import get_args as typing_args

import typer
from typer.core import TyperArgument, TyperOption
from typer.models import CommandInfo, TyperInfo

from allocator.errors import AllocatorError

if TYPE_CHECKING:
    from pydantic import ValidationError

#: Value names shown in help where the type alone says too little (clap-style, like ruff/uv).
METAVARS: dict[str, str] = {
    "--window": "START:END",
    "--speeds": "S1,S2,...",
    "--param": "NAME=V1,V2,...",
    "--mapping": "FIELD=COLUMN,...",
    "--sla": "METRIC<=X,...",
    "--what-if": "CHANGE",
    "--port": "PORT",
    "--seed": "SEED",
    "--database-url": "URL",
}
_SECONDS = ("time-limit", "wait", "mttr", "mtbf", "after", "latency", "every", "seconds")
_FACTORS = ("scale", "factor")
_FRACTIONS = ("share", "utilisation", "failure")


def _long_name(param: TyperOption) -> str:
    longs = [o for o in param.opts if o.startswith("--")]
    return longs[0] if longs else (param.opts[0] if param.opts else f"--{param.name}")


def _option_metavar(param: TyperOption, ctx: Any) -> str | None:
    """What follows an option in help: nothing for a flag, else a value name (PATH, N, SECONDS).

    Replaces typer's `<bool>`, `<list[str]>`, `<int range>` type labels for every option
    of every command in one place, so new options read the same way.
    """
    if param.is_flag or param.count:
        return None
    if param.metavar is not None:
        return param.metavar
    long = _long_name(param)
    if long in METAVARS:
        return METAVARS[long]
    desc = param.type_descriptor
    if desc.is_choice:
        return "|".join(str(c) for c in (desc.choices or ()))
    ann = desc.annotation
    if desc.is_list or desc.is_tuple:
        args = list(typing_args(ann))
        ann = args[0] if args else str
    key = long.removeprefix("--")
    if desc.is_path:
        return "PATH"
    if ann is int:
        return "N"
    if ann is float:
        if key.endswith(_SECONDS):
            return "SECONDS"
        if key.endswith(_FACTORS):
            return "FACTOR"
        if key.endswith(_FRACTIONS):
            return "FRACTION"
        return "NUMBER"
    return key.upper().replace("-", "_")


def _range_text(param: TyperOption | TyperArgument) -> str | None:
    """A number range as `min 1` / `max 5` / `1 to 5` instead of typer's `x>=1`."""
    lo, hi = param.min, param.max
    if getattr(param, "count", False) or (lo is None and hi is None):
        return None
    if hi is None:
        return f"min {lo}"
    if lo is None:
        return f"max {hi}"
    return f"{lo} to {hi}"


def _argument_name(param: TyperArgument) -> str:
    """SNAPSHOT, as in help, usage and error messages (`Missing argument 'SNAPSHOT'`)."""
    return param.metavar if param.metavar is not None else (param.name or "").upper()


def _argument_usage(param: TyperArgument) -> str:
    name = _argument_name(param)
    name = name if param.required else f"[{name}]"
    return name + "..." if param.nargs != 1 else name


def _argument_display(param: TyperArgument) -> str:
    return _argument_name(param) + ("..." if param.metavar is None and param.nargs != 1 else "")


# One central patch of typer's help rendering (typer 0.29 builds TyperOption/TyperArgument
# itself and offers no class hook per app): SNAPSHOT instead of `{snapshot}`, `--json`
# instead of `--json <bool>`.
TyperOption.display_type_rich = _option_metavar  # type: ignore[method-assign,assignment]
TyperOption._get_number_range_help_str = _range_text  # type: ignore[method-assign,assignment]
TyperArgument._get_number_range_help_str = _range_text  # type: ignore[method-assign,assignment]
TyperArgument.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign,assignment]
TyperArgument._usage_display_name = _argument_usage  # type: ignore[method-assign,assignment]
TyperArgument._rich_display_name = _argument_display  # type: ignore[method-assign,assignment]
TyperArgument.display_name_raw = property(_argument_name)  # type: ignore[assignment]

CONTEXT = {"help_option_names": ["-h", "--help"]}

app = typer.Typer(
    name="allocator",
    help="Load balancing and task allocation across many agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings=CONTEXT,
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


#: Significant digits of a float in JSON output: float noise (0.6000000000000001) goes,
#: every real digit of a measured or solved value stays.
JSON_DIGITS = 12


def json_ready(value: Any) -> Any:
    """`value` with floats rounded to JSON_DIGITS significant digits and NaN/inf as null."""
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return None
        return float(f"{value:.{JSON_DIGITS}g}")
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def to_json(value: Any, *, indent: int | None = None) -> str:
    """The one JSON writer of command output (`--json`): standard JSON, no float noise."""
    import json

    return json.dumps(json_ready(value), indent=indent)


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def warn(message: str) -> None:
    """A flag that has no effect, or an outcome the user did not ask for: one line on stderr."""
    typer.echo(f"warning: {message}", err=True)


def given(ctx: typer.Context, *names: str) -> list[str]:
    """The options among `names` (parameter names) set on the command line or environment,
    as the user typed them (`--agents`)."""
    out = []
    for name in names:
        source = ctx.get_parameter_source(name)  # COMMANDLINE, ENVIRONMENT, DEFAULT ...
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            out.append("--" + name.replace("_", "-"))
    return out


#: Set to 1 to see the traceback of an unexpected error instead of its one-line message.
DEBUG_ENV = "ALLOCATOR_DEBUG"


def _is_validation_error(e: BaseException) -> bool:
    """pydantic's ValidationError, without importing pydantic for commands that never load it."""
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(e, pydantic.ValidationError)


def one_line(e: BaseException) -> str:
    """The one-line message a command prints for an error it cannot recover from."""
    if isinstance(e, AllocatorError):
        return str(e)
    if _is_validation_error(e):
        return format_validation_error(e)  # type: ignore[arg-type]
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
            if os.environ.get(DEBUG_ENV) and not (isinstance(e, AllocatorError)
                                                  or _is_validation_error(e)):
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


def version() -> str:
    """The installed package version (from its metadata, so it matches `pip show allocator`)."""
    import importlib.metadata

    try:
        return importlib.metadata.version("allocator")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _print_version(value: bool) -> None:
    if value:
        from allocator import _native  # stdlib only: does not load the online core

        typer.echo(f"allocator {version()}\nonline core: {_native.describe()}")
        raise typer.Exit()


@app.callback()
def _startup(
    show_version: Annotated[bool, typer.Option(
        "--version", "-V", is_eager=True, callback=_print_version,
        help="Print the version and exit.")] = False,
) -> None:
    """Load plugins before any command runs."""
    load_plugins()


def _not_loaded(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("a help-only placeholder was invoked; run the full `app`")


def _placeholder(name: str, help_text: str | None, short_help: str | None,
                 hidden: bool, panel: str | None) -> CommandInfo:
    return CommandInfo(name=name, callback=_not_loaded, help=help_text, short_help=short_help,
                       hidden=hidden, rich_help_panel=panel, add_help_option=False)


def lazy_view(typer_app: typer.Typer, argv: list[str]) -> typer.Typer:
    """`typer_app` with only the command on argv's path built in full.

    typer turns every command's signature into click parameters before it
    parses anything (get_type_hints, inspect.signature: most of `--help`'s
    start-up with 30 commands). In this view each other command and group is a
    parameterless placeholder with the same name and help, so listings read the
    same while only the command that runs pays for its parameters. Neither
    level takes option values, so the path is the words before the first option
    or after the group options.
    """
    from typer.main import get_command_name, solve_typer_info_help

    words = [a for a in argv if not a.startswith("-")]
    wanted = words[0] if words else None
    view = copy.copy(typer_app)
    commands: list[CommandInfo] = []
    for info in typer_app.registered_commands:
        name = info.name or get_command_name(info.callback.__name__)  # type: ignore[union-attr]
        if name == wanted:
            commands.append(info)
        else:
            help_text = info.help if info.help is not None else inspect.getdoc(info.callback)
            commands.append(_placeholder(name, help_text, info.short_help, info.hidden,
                                         info.rich_help_panel))
    groups: list[TyperInfo] = []
    for group in typer_app.registered_groups:
        group_name = group.name if isinstance(group.name, str) else None
        if group_name is None or group.typer_instance is None:
            groups.append(group)
        elif group_name == wanted:
            sub = copy.copy(group)
            rest = argv[argv.index(group_name) + 1:]
            sub.typer_instance = lazy_view(group.typer_instance, rest)
            groups.append(sub)
        else:
            hidden = group.hidden if isinstance(group.hidden, bool) else False
            panel = group.rich_help_panel if isinstance(group.rich_help_panel, str) else None
            commands.append(_placeholder(group_name, solve_typer_info_help(group), None, hidden,
                                         panel))
    view.registered_commands = commands
    view.registered_groups = groups
    return view


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    lazy_view(app, sys.argv[1:])()
