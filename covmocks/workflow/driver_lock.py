"""The driver lock: exclusive right to drive one campaign directory.

The lock (``Layout.lock``) is an flock: the kernel releases it when the driver dies, even by
kill -9. ``driver_alive`` says who holds it, for status, the report and the notebook.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

from covmocks.core.errors import NO_SPACE_ERRNOS, CovmocksError, OutputError, no_space

# Seconds ``acquire`` keeps trying while the lock is taken: ``driver_alive`` probes hold it
# shared for microseconds (status, the report, the notebook's wait loop), and a driver that
# starts at that instant must not be refused for it.
WAIT_S = 2.0


class DriverLock:
    """Exclusive right to drive one campaign directory (or rewrite its metadata: ``what``
    names the holder, e.g. "covmocks plan", in what a refused process and status show)."""

    def __init__(self, path: Path, what: str = ""):
        self.path = Path(path)
        self.what = what
        self._fd = None

    def acquire(self, wait_s: float = WAIT_S) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(
                f"cannot write campaign directory {self.path.parent.parent}: {exc}"
            ) from None
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.02)
                    continue
                holder = os.read(fd, 4096).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise CovmocksError(
                    f"campaign {self.path.parent.parent} is already being run by {holder}; "
                    "wait for it or stop it first"
                ) from None
        try:
            os.ftruncate(fd, 0)
            holder = f"pid {os.getpid()} on {socket.gethostname()} since {time.ctime()}"
            holder = f"{self.what}, {holder}" if self.what else holder
            os.write(fd, holder.encode())
        except OSError as exc:
            os.close(fd)  # and with it the lock
            if exc.errno in NO_SPACE_ERRNOS:
                raise no_space(self.path, exc) from exc
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DriverLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def driver_alive(path: Path) -> str | None:
    """Who holds the driver lock at ``path`` (a description), or None when no driver runs."""
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.read(fd, 4096).decode(errors="replace").strip() or "a driver"
    finally:
        os.close(fd)
    return None
