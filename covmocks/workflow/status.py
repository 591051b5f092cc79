"""A campaign's status from its files and journal (no Parsl needed): counts by state overall
and per snapshot, throughput, ETA, failed tasks, and how far the clustering is.

The truth about completion is on disk (a catalog plus its QA record: ``covmocks.workflow.plan``);
the journal (``covmocks.workflow.journal``) and, while a driver runs
(``covmocks.workflow.driver_lock``), the tasks' logs refine it.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import time

from covmocks.core.layout import redshift_label
from covmocks.workflow.driver_lock import driver_alive
from covmocks.workflow.journal import Journal, last_events
from covmocks.workflow.plan import make_plan

STATUS_STATES = ("done", "running", "queued", "retry_wait", "failed", "blocked", "todo")


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
    catalogs_lost: list[str] = dataclasses.field(default_factory=list)  # QA record, no catalog
    set_aside: list[str] = dataclasses.field(default_factory=list)  # made, no longer planned

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
            elif alive and last["event"] in ("retry", "lost", "timeout", "held"):
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
    return Status(
        counts, dict(by_redshift), len(done_recent), eta, failed, driver,
        _clustering(campaign, plan), plan.catalogs_lost(), list(plan.set_aside),
    )  # fmt: skip


def _clustering(campaign, plan) -> dict | None:
    """How far the clustering is: boxes done with a clustering record, the snapshots whose
    number-density thresholds are fixed (``covmocks.clustering.thresholds``); None without
    samples."""
    if campaign.clustering is None:
        return None
    from covmocks.workflow.plan import dir_names

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
