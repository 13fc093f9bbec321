"""An exclusive lock on a run folder, so two trainers never write the same run.

``RunLock(folder)`` takes ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``<folder>/.lock`` and writes the
holder (pid, host, start time, command) into it. A second trainer fails at once with a
:class:`~ugpnet.errors.RunLockedError` naming the holder. The kernel releases the lock when its
process dies (also on ``kill -9``), so a stale lock of a dead process never blocks a rerun; the
file itself stays, with the last holder's details, and is simply locked again.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from ..errors import RunLockedError

LOCK_NAME = ".lock"


class RunLock:
    def __init__(self, folder: str | os.PathLike):
        self.path = Path(folder) / LOCK_NAME
        self._fd: int | None = None

    def holder(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            h = self.holder()
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h["since"])) \
                if "since" in h else "?"
            raise RunLockedError(
                f"run folder '{self.path.parent}' is being trained by another process (pid "
                f"{h.get('pid', '?')} on host {h.get('host', '?')}, since {since}: "
                f"{h.get('command', '?')}). Wait for it to finish, or stop it (kill "
                f"{h.get('pid', 'PID')}) and rerun: the new run resumes from its last "
                f"checkpoint.") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
                "command": " ".join(sys.argv)[:500]}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
