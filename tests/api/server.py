"""Start and stop a real `allocator serve` process on 127.0.0.1 for the API tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
#: Settings every test server shares: small caps so generated inputs solve fast.
BASE_ENV = {
    "ALLOCATOR_WORKERS": "2",
    "ALLOCATOR_SYNC_TIME_LIMIT": "0.5",
    "ALLOCATOR_JOB_TIME_LIMIT": "5",
    "ALLOCATOR_MAX_QUEUE": "32",
    "ALLOCATOR_MAX_BODY_BYTES": "262144",
    "ALLOCATOR_MAX_AGENTS": "50",
    "ALLOCATOR_MAX_TASKS": "200",
    "ALLOCATOR_CANCEL_GRACE_S": "1",
    "ALLOCATOR_PLUGINS": "tests.api.crashy_solver",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """An `allocator serve` subprocess with its own job database."""

    def __init__(self, db: Path, **env: str) -> None:
        self.db = db
        self.env = {**BASE_ENV, **env}
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = db.with_suffix(".log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> Server:
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT),
               "ALLOCATOR_DATABASE_URL": f"sqlite:///{self.db}", **self.env}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "allocator"), "serve", "--port", str(self.port),
                 "--log-level", "warning"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        # A server slow to start is killed, not left running after the test gives up.
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        raise RuntimeError(f"server not ready in {timeout}s: {self.log.read_text()[-2000:]}")

    def kill9(self) -> None:
        """kill -9 the server and its worker processes (its whole session)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kw)
