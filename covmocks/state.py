"""Campaign state beyond the plan: the driver lock, the event journal, and status.

The truth about completion is on disk (a catalog plus its QA record: see covmocks.plan).
The driver appends what it does to the journal (``Layout.journal``; one writer: the lock
holder), so failures, retries and throughput survive the driver. The driver lock
(``Layout.lock``) is an flock: the kernel releases it when the driver dies, even by kill -9.
"""

from __future__ import annotations

import collections
import dataclasses
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path

from covmocks.errors import NO_SPACE_ERRNOS, CovmocksError, no_space
from covmocks.layout import redshift_label
from covmocks.plan import make_plan

log = logging.getLogger(__name__)
TAIL_BYTES = 1 << 16  # bytes read at a time, backwards, to find the journal's last line
STATUS_STATES = ("done", "running", "queued", "retry_wait", "failed", "blocked", "todo")


class DriverLock:
    """Exclusive right to drive one campaign directory."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise CovmocksError(
                f"campaign {self.path.parent.parent} is already being run by {holder}; "
                "wait for it or stop it first"
            ) from None
        try:
            os.ftruncate(fd, 0)
            holder = f"pid {os.getpid()} on {socket.gethostname()} since {time.ctime()}"
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


class Journal:
    """Append-only event log of the driver; one JSON object per line.

    Each event is one ``write`` of a whole line, so a driver killed mid-write leaves at most
    a torn last line: ``read`` ignores it, and the next writer cuts it off before appending.
    Any other line that is not an event is corruption, and ``read`` refuses to guess.

    A full disk (``NO_SPACE_ERRNOS``) does not stop the driver: what could not be written
    is held, in order, and written before the next event or at ``close`` once space is
    freed (a torn line left meanwhile is completed then); events still held at ``close``
    are lost, with an error in the log, and the torn line is cut off by the next writer.
    """

    REQUIRED = ("t", "task", "event")

    def __init__(self, path: Path):
        self.path = Path(path)
        self._file = None
        self._held = bytearray()  # bytes of events not yet written (a full disk)

    def write(self, task: str, event: str, **fields) -> None:
        if self._file is None:
            self._file = self._open_for_append()
        line = json.dumps({"t": time.time(), "task": task, "event": event, **fields}) + "\n"
        self._held += line.encode()
        self._write_held()

    def _write_held(self) -> bool:
        """Write the held bytes (unbuffered: one write call for a line, unless the kernel
        splits it); False where the disk is full and some are still held."""
        while self._held:
            try:
                written = self._file.write(self._held)
            except OSError as exc:
                if exc.errno not in NO_SPACE_ERRNOS:
                    raise
                log.warning("%s: %s; %d bytes of events held until space is freed",
                            self.path, exc.strerror, len(self._held))  # fmt: skip
                return False
            del self._held[:written]
        return True

    def _open_for_append(self):
        """The journal opened for appending, its last line complete: a torn last line (no
        trailing newline) is cut off, or ended with a newline if it is a whole event."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+b", buffering=0)  # O_APPEND: every write lands at the end
        try:
            size = f.seek(0, os.SEEK_END)
            start = self._last_line_start(f, size)
            if start < size:
                f.seek(start)
                fragment = f.read()
                if self._event(fragment) is not None:
                    f.write(b"\n")
                elif fragment.strip():
                    os.ftruncate(f.fileno(), start)
                    log.warning(
                        "%s: dropped a torn last line (a driver killed mid-write): %r",
                        self.path, fragment[:200].decode(errors="replace"),
                    )  # fmt: skip
                else:  # only blanks: no event lost, nothing to say
                    os.ftruncate(f.fileno(), start)
        except BaseException:
            f.close()
            raise
        return f

    @staticmethod
    def _last_line_start(f, size: int) -> int:
        """Offset just after the file's last newline (0 if there is none)."""
        end = size
        while end > 0:
            begin = max(0, end - TAIL_BYTES)
            f.seek(begin)
            newline = f.read(end - begin).rfind(b"\n")
            if newline >= 0:
                return begin + newline + 1
            end = begin
        return 0

    @classmethod
    def _event(cls, line: bytes) -> dict | None:
        """The event a line holds, or None when it is not one (bad JSON, not an object, or
        missing a required key)."""
        try:
            event = json.loads(line)
        except ValueError:  # JSONDecodeError, UnicodeDecodeError
            return None
        if not isinstance(event, dict) or any(k not in event for k in cls.REQUIRED):
            return None
        return event

    def close(self) -> None:
        if self._file is not None:
            if not self._write_held():
                log.error("%s: no space left: %d events lost", self.path,
                          self._held.count(b"\n"))  # fmt: skip
                self._held.clear()
            self._file.close()
            self._file = None

    def read(self) -> list[dict]:
        """Every event, in order. Blank lines hold no event and are skipped; a torn last
        line (no trailing newline, not an event: a driver killed mid-write, or one writing
        now) is ignored. Any other line that is not an event raises ``CovmocksError`` naming
        the file and the line numbers: dropping it could hide a failure or a retry."""
        if not self.path.exists():
            return []
        events = []
        corrupt: list[tuple[int, bytes]] = []
        with open(self.path, "rb") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                event = self._event(line)
                if event is not None:
                    events.append(event)
                elif line.endswith(b"\n"):  # a complete line: not torn but corrupt
                    corrupt.append((number, line))
        if corrupt:
            number, line = corrupt[0]
            excerpt = line.strip()[:80].decode(errors="replace")
            others = ""
            if len(corrupt) > 1:
                numbers = ", ".join(str(n) for n, _ in corrupt[1:11])
                more = ", ..." if len(corrupt) > 11 else ""
                others = f" (and {len(corrupt) - 1} more corrupt lines: {numbers}{more})"
            raise CovmocksError(
                f"{self.path}: line {number} is not a journal event: {excerpt!r}{others}; "
                "repair or delete the line (each line must be one JSON object with "
                "'t', 'task' and 'event')"
            )
        return events


def last_events(events: list[dict]) -> dict[str, dict]:
    """The latest event of each task."""
    return {e["task"]: e for e in events}


@dataclasses.dataclass
class Status:
    """Counts by state, overall and per snapshot; throughput; ETA; failed tasks."""

    counts: dict[str, int]
    by_redshift: dict[str, dict[str, int]]
    done_last_hour: int
    eta_s: float | None
    failed: list[dict]
    driver: str | None
    clustering: dict | None = None  # boxes measured, of those done; thresholds fixed

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def task_states(plan, events: list[dict], driver: str | None) -> dict[str, str]:
    """State of every task: the plan's disk state refined by the journal and, while a
    ``driver`` runs (``driver_alive``), the tasks' logs."""
    latest = last_events(events)
    alive = driver is not None
    states = {}
    for task in plan.tasks:
        state = task.state
        last = latest.get(task.task_id)
        if state == "todo" and last is not None:
            if last["event"] == "failed":
                state = "failed"
            elif alive and last["event"] == "submitted":
                began = _started(f"{task.log_stem}.err")
                state = "running" if began >= last["t"] - 1.0 else "queued"
            elif alive and last["event"] in ("retry", "lost", "timeout"):
                state = "retry_wait"
        states[task.task_id] = state
    return states


def _started(err_log: str) -> float:
    """When a task last started on a worker: the mtime of its ``.err`` log (touched then);
    0 if it never did. Only tasks in flight are asked, at most ``max_in_flight`` stats."""
    try:
        return os.stat(err_log).st_mtime
    except FileNotFoundError:
        return 0.0


def campaign_status(campaign, plan=None) -> Status:
    """Status of a campaign from its files and journal (no Parsl needed)."""
    plan = plan or make_plan(campaign)
    layout = campaign.layout
    events = Journal(layout.journal).read()
    driver = driver_alive(layout.lock)
    states = task_states(plan, events, driver)
    counts = dict.fromkeys(STATUS_STATES, 0)
    by_redshift: dict[str, dict[str, int]] = collections.defaultdict(
        lambda: dict.fromkeys(STATUS_STATES, 0)
    )
    for task in plan.tasks:
        state = states[task.task_id]
        counts[state] += 1
        by_redshift[redshift_label(task.redshift)][state] += 1
    now = time.time()
    done_recent = {e["task"] for e in events if e["event"] == "done" and now - e["t"] < 3600}
    remaining = sum(counts[s] for s in ("running", "queued", "retry_wait", "todo"))
    eta = remaining / len(done_recent) * 3600.0 if done_recent else None
    latest = last_events(events)
    failed = [
        {
            "task": tid,
            "error": latest[tid].get("error", ""),
            "attempts": latest[tid].get("attempt"),
            "log": str(task.log_stem) + ".err",
        }
        for task in plan.tasks
        if states[(tid := task.task_id)] == "failed"
    ]
    return Status(counts, dict(by_redshift), len(done_recent), eta, failed, driver,
                  _clustering(campaign, plan))  # fmt: skip


def _clustering(campaign, plan) -> dict | None:
    """How far the clustering is: boxes done with a clustering record, the snapshots whose
    number-density thresholds are fixed (``covmocks.thresholds``); None without samples."""
    if campaign.clustering is None:
        return None
    from covmocks.plan import dir_names

    layout = campaign.layout
    names = dir_names(layout.qa)
    done = [t for t in plan.tasks if t.state == "done"]
    measured = sum(layout.clustering(t.task_id).name in names for t in done)
    try:
        fixed = json.loads(layout.thresholds.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        fixed = {}
    thresholds = {z: {name: e.get("threshold") for name, e in entries.items()}
                  for z, entries in fixed.items()}  # fmt: skip
    return {"measured": measured, "done": len(done), "thresholds": thresholds}
