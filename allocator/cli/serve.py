"""`allocator serve` (HTTP API) and `allocator mcp` (MCP over stdio).

The api package is imported inside the commands, so importing the CLI never
pulls in the web stack and the dependency arrow stays api -> allocator.
"""

from __future__ import annotations

from typing import Annotated

import typer

from allocator.cli.app import app, guarded


@app.command()
@guarded
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
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
    from api.settings import Settings

    overrides: dict[str, object] = {}
    if workers is not None:
        overrides["workers"] = workers
    if database_url is not None:
        overrides["database_url"] = database_url
    settings = Settings(**overrides)  # type: ignore[arg-type]
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level,
                timeout_graceful_shutdown=5)


@app.command()
@guarded
def mcp(
    workers: Annotated[int | None, typer.Option(help="Solver worker processes.")] = None,
    database_url: Annotated[str | None, typer.Option(help="Job store URL.")] = None,
) -> None:
    """Serve the MCP tools over stdin/stdout (nothing else is written to stdout)."""
    import anyio

    from api.mcp_server import serve_stdio
    from api.settings import Settings

    overrides: dict[str, object] = {}
    if workers is not None:
        overrides["workers"] = workers
    if database_url is not None:
        overrides["database_url"] = database_url
    anyio.run(serve_stdio, Settings(**overrides))  # type: ignore[arg-type]
