"""Commands die with the agent that started them, even when it is killed with SIGKILL.

`allocator agent` runs each task's command in its own process group (so a timeout or a
cancel kills the command and everything it started). Those groups outlived an agent
killed with SIGKILL: the service re-leased the task and its side effects happened twice.

A killed process runs no code, so the cleanup lives in a second, tiny process: the
`Reaper` starts `python -m allocator.reaper FD`, which reads the groups the agent
registers (`+PGID` when a command starts, `-PGID` when it ends) from a pipe whose only
writer is the agent. The pipe's end of file means the agent is gone, however it died:
the reaper kills every group still registered and exits. It ignores SIGINT and
SIGTERM (a Ctrl-C to the terminal's group must not take it before the agent's
graceful stop has finished). `PR_SET_PDEATHSIG` would not do: it is not inherited by
a command's own children, and it fires when the forking *thread* ends.

POSIX only; elsewhere `Reaper.start()` returns None and nothing is registered. What is
left: a SIGKILL in the microseconds between a command's start and its `+PGID` line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading


class Reaper:
    """The agent's side: start the reaper process, register and drop command groups."""

    def __init__(self, fd: int, proc: subprocess.Popen[bytes]) -> None:
        self._fd = fd
        self._proc = proc
        self._lock = threading.Lock()

    @classmethod
    def start(cls) -> Reaper | None:
        """A running reaper, or None where process groups do not exist (Windows)."""
        if not hasattr(os, "killpg"):
            return None
        r, w = os.pipe()  # both non-inheritable: no command ever holds the write end
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "allocator.reaper", str(r)], pass_fds=(r,),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, close_fds=True)
        except OSError:
            os.close(w)
            return None
        finally:
            os.close(r)
        return cls(w, proc)

    def _send(self, line: str) -> None:
        with self._lock, contextlib.suppress(OSError):  # a dead reaper: nothing to do
            os.write(self._fd, line.encode())

    def add(self, pgid: int) -> None:
        """A command's group to kill if the agent dies before the command ends."""
        self._send(f"+{pgid}\n")

    def drop(self, pgid: int) -> None:
        """The command ended: its group is no longer the agent's to kill."""
        self._send(f"-{pgid}\n")

    def close(self) -> None:
        """The agent leaves: the reaper kills what is still registered and exits."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(5)


def main(fd: int) -> None:
    """The reaper process: collect groups until the pipe closes, then kill them."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    groups: set[int] = set()
    buf = b""
    with os.fdopen(fd, "rb", buffering=0) as f:
        while chunk := f.read(4096):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                with contextlib.suppress(ValueError):
                    (groups.add if line[:1] == b"+" else groups.discard)(int(line[1:]))
    for g in groups:
        with contextlib.suppress(OSError):
            os.killpg(g, signal.SIGKILL)


if __name__ == "__main__":
    main(int(sys.argv[1]))
