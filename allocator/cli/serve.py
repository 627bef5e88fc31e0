"""`allocator serve` (HTTP API) and `allocator mcp` (MCP over stdio).

The api package is imported inside the commands, so importing the CLI never
pulls in the web stack and the dependency arrow stays api -> allocator.

Start-up problems a user can fix (a job store URL that cannot be opened, a
port already in use, a lifespan that fails) are one line on stderr and exit
2, checked before uvicorn starts logging where possible: the socket is bound
here and handed to uvicorn, so there is no window between check and use.
"""

from __future__ import annotations

import contextlib
import errno
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

import typer

from allocator.cli.app import app, fail, guarded, one_line

if TYPE_CHECKING:
    import socket

    from api.settings import Settings


def _settings(workers: int | None, database_url: str | None) -> Settings:
    from api.settings import Settings

    overrides: dict[str, object] = {}
    if workers is not None:
        overrides["workers"] = workers
    if database_url is not None:
        overrides["database_url"] = database_url
    return Settings(**overrides)  # type: ignore[arg-type]


def check_job_store(url: str) -> None:
    """Open and close a connection to the job store; a one-line error naming the URL if not.

    The service opens the same store later, inside uvicorn's lifespan, where a
    failure would be a traceback and exit 3.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError, NoSuchModuleError

    from api.store import make_engine

    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except Exception:
        shown = url
    where = f"job store {shown!r} (--database-url or ALLOCATOR_DATABASE_URL)"
    try:
        engine = make_engine(url)
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()
    except NoSuchModuleError:
        scheme = url.split(":", 1)[0]
        raise fail(f"{where}: unknown database kind {scheme!r} "
                   "(e.g. sqlite:///jobs.db or postgresql+psycopg://...)") from None
    except DBAPIError as e:
        raise fail(f"{where}: {one_line(e.orig or e)}") from None
    except Exception as e:
        raise fail(f"{where}: {one_line(e)}") from None


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port, or a one-line error (exit 2) saying why not."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise fail(f"--host {host!r}: {e.strerror}") from None
    family, kind, proto, _, addr = infos[0]
    # proto must be IPPROTO_TCP (not 0): asyncio sets TCP_NODELAY on accepted connections
    # only then, and without it small responses wait ~40 ms for a delayed ACK.
    sock = socket.socket(family, kind, proto or socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(addr)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        hint = {errno.EADDRINUSE: " (another process listens there; pick another --port)",
                errno.EACCES: " (ports below 1024 need privileges)",
                errno.EADDRNOTAVAIL: " (not an address of this machine)"}.get(e.errno or 0, "")
        raise fail(f"cannot listen on {host}:{port}: {e.strerror or e}{hint}") from None
    return sock


@app.command()
@guarded
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=0, max=65535)] = 8000,
    workers: Annotated[int | None, typer.Option(
        help="Solver worker processes (default: ALLOCATOR_WORKERS or 2).")] = None,
    database_url: Annotated[str | None, typer.Option(
        help="Job store URL (default: ALLOCATOR_DATABASE_URL or sqlite:///allocator-jobs.db).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the HTTP API (settings from ALLOCATOR_* environment variables, see docs/api.md)."""
    import uvicorn

    from api.app import create_app

    settings = _settings(workers, database_url)
    sock = listen_socket(host, port)
    try:
        check_job_store(settings.database_url)
        application = create_app(settings)
        failure: list[BaseException] = []
        inner = application.router.lifespan_context
        bound = sock.getsockname()[1]  # the real port when --port 0
        shown = f"[{host}]" if ":" in host else host

        @contextlib.asynccontextmanager
        async def lifespan(a: Any) -> AsyncIterator[Any]:
            started = False
            try:
                async with inner(a) as state:
                    started = True
                    logging.getLogger("uvicorn.error").info(
                        "Listening on http://%s:%d (Press CTRL+C to quit)", shown, bound)
                    yield state
            except Exception as e:
                if not started:
                    failure.append(e)
                raise

        application.router.lifespan_context = lifespan
        # After a failed start uvicorn would log the traceback; the one-line message below says it.
        logging.getLogger("uvicorn.error").addFilter(lambda _record: not failure)
        server = uvicorn.Server(uvicorn.Config(application, log_level=log_level,
                                               timeout_graceful_shutdown=5))
        try:
            server.run(sockets=[sock])
        except SystemExit:
            if not failure:
                raise
    finally:
        sock.close()
    if failure:
        err = failure[0]
        raise fail(f"the service did not start: {one_line(getattr(err, 'orig', None) or err)}")


@app.command()
@guarded
def mcp(
    workers: Annotated[int | None, typer.Option(help="Solver worker processes.")] = None,
    database_url: Annotated[str | None, typer.Option(help="Job store URL.")] = None,
) -> None:
    """Serve the MCP tools over stdin/stdout (nothing else is written to stdout)."""
    import anyio

    from api.mcp_server import serve_stdio

    settings = _settings(workers, database_url)
    check_job_store(settings.database_url)
    anyio.run(serve_stdio, settings)
