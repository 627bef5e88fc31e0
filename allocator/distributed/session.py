"""Starting or joining Ray, and the typed error when it is not installed.

Ray is an optional extra (`pip install 'allocator[ray]'`). Nothing in the
package imports it at module level: :func:`require_ray` imports it on first
use and raises :class:`RayUnavailableError` (an AllocatorError, so the CLI
prints one line and exits 2) when it is missing.

:func:`ray_session` joins a cluster (`address`, or the `RAY_ADDRESS`
environment variable) or starts a local one whose temporary directory is a
short fresh path (`/tmp/ray-XXXXXXXX` by default: Ray puts unix sockets in
it and socket paths are limited to ~107 bytes) that is removed again when the
session ends. A local start keeps Ray's token authentication on but hands
the token over in the environment (`RAY_AUTH_TOKEN`) instead of letting Ray
write `~/.ray/auth_token`, and switches usage statistics off, so nothing is
written to the home directory. If Ray is already initialised in this process
the session reuses it and leaves it running.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from allocator.errors import AllocatorError

#: Ray's sockets live under the temp dir; AF_UNIX paths are limited to 107 bytes
#: and Ray appends ~70 (session_<date>_<pid>/sockets/plasma_store).
MAX_TEMP_DIR_LEN = 36


class RayUnavailableError(AllocatorError):
    """The ray backend was asked for but Ray is not installed (or too old)."""


    def __init__(self, detail: str = "") -> None:
        super().__init__(
            "the ray backend needs the optional extra: pip install 'allocator[ray]' "
            f"(ray>=2.9){': ' + detail if detail else ''}", field="backend")


def ray_available() -> bool:
    try:
        require_ray()
    except RayUnavailableError:
        return False
    return True


def require_ray() -> Any:
    """Import and return the `ray` module, or raise RayUnavailableError."""
    try:
        import ray
    except ImportError as e:
        raise RayUnavailableError(str(e)) from None
    version = getattr(ray, "__version__", "0")
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:  # a dev build: trust it
        return ray
    if (major, minor) < (2, 9):
        raise RayUnavailableError(f"found ray {version}")
    return ray


def _quiet_env() -> None:
    """Environment for a local cluster we start: no usage stats, no token file in $HOME."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ("RAY_AUTH_MODE" not in os.environ and "RAY_AUTH_TOKEN" not in os.environ
            and "RAY_AUTH_TOKEN_PATH" not in os.environ):
        # Same 256-bit token Ray would generate, passed to its processes by
        # inheritance instead of ~/.ray/auth_token. Left set for the life of
        # the process: Ray caches its config on first use.
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
        try:  # Ray >= 2.5x reads both once and caches them: refresh, as Ray itself does
            from ray._raylet import (  # type: ignore[attr-defined]
                AuthenticationTokenLoader,
                Config,
            )

            Config.initialize("")
            AuthenticationTokenLoader.instance().reset_cache()
        except (ImportError, AttributeError):  # older Ray: no token auth, nothing cached
            pass


#: Seconds to wait for a TCP connection to a cluster's address before giving up.
CONNECT_TIMEOUT = 5.0


def _check_reachable(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Refuse a `host:port` (or `ray://host:port`) nobody answers on.

    Given one, `ray.init` retries for ever (`allocator ray run --address
    127.0.0.1:1` was still retrying after 4 minutes); other forms (`auto`, a
    path) are Ray's to resolve.
    """
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or "/" in hostport:
        return
    host = host.strip("[]") or "127.0.0.1"
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except (OSError, ValueError, OverflowError) as e:  # refused, timed out, bad host/port
        why = (e.strerror if isinstance(e, OSError) else None) or str(e) or type(e).__name__
        raise AllocatorError(f"cannot reach a Ray cluster at {address!r}: {why}",
                             field="address") from None


@dataclass
class SessionInfo:
    """What :func:`ray_session` did: joined, started locally, or reused."""

    mode: str  # "joined" | "local" | "reused"
    address: str | None
    temp_dir: str | None


@contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None,
                temp_dir: str | Path | None = None, log_to_driver: bool = True,
                **init_kwargs: Any) -> Iterator[SessionInfo]:
    """Ray for the duration of the block (see the module docstring).

    `temp_dir` is a parent directory for the local cluster's own fresh temp
    directory (default /tmp); keep it short.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield SessionInfo("reused", None, None)
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    common = dict(include_dashboard=False, logging_level="WARNING",
                  log_to_driver=log_to_driver, **init_kwargs)
    if address and address != "local":
        _check_reachable(address)
        ray.init(address=address, **common)
        try:
            yield SessionInfo("joined", address, None)
        finally:
            ray.shutdown()
        return
    parent = str(temp_dir) if temp_dir is not None else "/tmp"
    tmp = tempfile.mkdtemp(prefix="ray-", dir=parent)
    if len(tmp) > MAX_TEMP_DIR_LEN:
        shutil.rmtree(tmp, ignore_errors=True)
        raise AllocatorError(f"Ray temp dir {tmp!r} is too long for Ray's unix sockets "
                             f"(keep it under {MAX_TEMP_DIR_LEN} characters)",
                             field="temp_dir")
    _quiet_env()
    try:
        ray.init(address="local", num_cpus=num_cpus, _temp_dir=tmp, **common)
        yield SessionInfo("local", None, tmp)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
