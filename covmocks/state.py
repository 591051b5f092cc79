"""Campaign state beyond the plan: the driver lock, the event journal, and status.

The truth about completion is on disk (a catalog plus its QA record: see covmocks.plan).
The driver appends what it does to ``metadata/events.jsonl`` (one writer: the lock holder),
so failures, retries and throughput survive the driver. ``metadata/driver.lock`` is an
flock: the kernel releases it when the driver dies, even by kill -9.
"""

from __future__ import annotations

import collections
import dataclasses
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from covmocks.errors import CovmocksError

EVENTS = "events.jsonl"
LOCK = "driver.lock"
STATUS_STATES = ("done", "running", "queued", "retry_wait", "failed", "blocked", "todo")


class DriverLock:
    """Exclusive right to drive one campaign directory."""

    def __init__(self, directory: Path):
        self.path = Path(directory) / "metadata" / LOCK
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
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.ctime()}".encode())
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


def driver_alive(directory: Path) -> str | None:
    """Who holds the driver lock (a description), or None when no driver runs."""
    path = Path(directory) / "metadata" / LOCK
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
    """Append-only event log of the driver; one JSON object per line."""

    def __init__(self, directory: Path):
        self.path = Path(directory) / "metadata" / EVENTS
        self._file = None

    def write(self, task: str, event: str, **fields) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", buffering=1)
        self._file.write(json.dumps({"t": time.time(), "task": task, "event": event, **fields}))
        self._file.write("\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def read(self) -> list[dict]:
        """Every event; a torn last line (driver killed mid-write) is ignored."""
        if not self.path.exists():
            return []
        events = []
        with open(self.path) as f:
            for line in f:
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return events


def last_events(events: list[dict]) -> dict[str, dict]:
    """The latest event of each task."""
    return {e["task"]: e for e in events}


@dataclasses.dataclass
class Status:
    """Counts by state, overall and per snapshot; throughput; ETA; failed tasks."""

    counts: dict[str, int]
    by_snapshot: dict[str, dict[str, int]]
    done_last_hour: int
    eta_s: float | None
    failed: list[dict]
    driver: str | None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def task_states(plan, events: list[dict], directory: Path) -> dict[str, str]:
    """State of every task: the plan's disk state refined by the journal and the logs."""
    latest = last_events(events)
    alive = driver_alive(directory) is not None
    logs = os.path.join(directory, "logs")
    states = {}
    for task in plan.tasks:
        state = task.state
        last = latest.get(task.task_id)
        if state == "todo" and last is not None:
            if last["event"] == "failed":
                state = "failed"
            elif alive and last["event"] == "submitted":
                began = _started(os.path.join(logs, f"{task.task_id}.err"))
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
    plan = plan or campaign.plan()
    directory = campaign.directory
    events = Journal(directory).read()
    states = task_states(plan, events, directory)
    counts = dict.fromkeys(STATUS_STATES, 0)
    by_snapshot: dict[str, dict[str, int]] = collections.defaultdict(
        lambda: dict.fromkeys(STATUS_STATES, 0)
    )
    for task in plan.tasks:
        state = states[task.task_id]
        counts[state] += 1
        by_snapshot[f"{task.redshift:.3f}"][state] += 1
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
    return Status(counts, dict(by_snapshot), len(done_recent), eta, failed,
                  driver_alive(directory))  # fmt: skip
