"""``covmocks estimate``: node-hours, GPU-hours, storage and wall-clock time of a campaign's
remaining tasks, from its own QA records or, before any task ran, the profile's figures."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import statistics
from pathlib import Path

from covmocks.campaign import Campaign
from covmocks.catalog.validation import record_seconds
from covmocks.core.errors import CovmocksError
from covmocks.core.layout import redshift_label
from covmocks.workflow.journal import Journal
from covmocks.workflow.plan import Plan, Task

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Estimate:
    """Cost of the tasks not done yet (todo and blocked): node-hours, GPU-hours, bytes
    to write, and the wall-clock seconds on ``nodes`` nodes (no queue wait)."""

    remaining: int
    done: int
    basis: str
    seconds_per_task: float  # mean over remaining tasks
    node_hours: float
    gpu_hours: float
    storage_bytes: float  # what the remaining tasks will write: every file, on disk
    done_bytes: float  # what the campaign directory holds now (``Storage``)
    nodes: int
    busy_nodes: float  # nodes kept busy: fewer than ``nodes`` when max_in_flight binds
    wall_s: float


def _measured(tasks: list[Task]) -> dict[str, list[float]]:
    """QA records of done tasks -> seconds by snapshot name (records without readable
    stages or ``wall_s`` and ``file_bytes`` left out; bytes are measured on disk,
    ``storage``)."""
    wall: dict[str, list[float]] = {}
    unreadable = 0
    for task in tasks:
        try:
            record = json.loads(task.qa_record.read_text(encoding="utf-8"))
            seconds, _ = record_seconds(record), float(record["file_bytes"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            unreadable += 1
            continue
        wall.setdefault(redshift_label(task.redshift), []).append(seconds)
    if unreadable:
        log.warning("%d QA records without readable wall_s and file_bytes; ignored", unreadable)
    return wall


SAMPLED = 50  # done boxes whose files are measured for the bytes of a box


def _disk_bytes(path: Path) -> int:
    """Bytes ``path`` takes on disk (blocks, as ``du`` and quotas count), a directory with
    everything below it; 0 where it does not exist."""
    try:
        if not path.is_dir():
            return path.stat().st_blocks * 512
    except OSError:
        return 0
    total = 0
    for root, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


@dataclasses.dataclass(frozen=True)
class Storage:
    """What a campaign directory holds, on disk, from its done boxes: ``per_box``, the files
    of one box (catalog, QA record, statistics, samples, clustering record, logs: medians
    over up to ``SAMPLED`` boxes) and its share of what grows with the run (the monitoring
    database, the journal, Parsl's run directories); ``fixed``, the rest (metadata, the
    compilation cache where the campaign holds it, report, covariance, the driver's logs)."""

    per_box: float
    fixed: float
    done: int

    @property
    def total(self) -> float:
        return self.per_box * self.done + self.fixed


def storage(layout, done: list[Task]) -> Storage | None:
    """The campaign's bytes on disk, per box and fixed, measured; None before a box is done.
    Reads up to ``SAMPLED`` boxes' files and the files that are no box's (not every
    catalog)."""
    if not done:
        return None
    step = max(1, len(done) // SAMPLED)
    own = statistics.median(
        sum(_disk_bytes(p) for p in layout.box_files(t.realization, t.redshift))
        for t in done[::step]
    )
    in_metadata = _disk_bytes(layout.monitoring_db) + _disk_bytes(layout.journal)
    growing = in_metadata + _disk_bytes(layout.parsl_runs)
    others = [layout.metadata, layout.report, layout.covariance, *layout.logs.glob("driver.*"),
              *layout.logs.glob("*.log")]  # fmt: skip
    fixed = sum(_disk_bytes(p) for p in dict.fromkeys(others)) - in_metadata
    return Storage(per_box=own + growing / len(done), fixed=fixed, done=len(done))


def measurement_seconds(layout, tasks: list[Task]) -> dict[str, float]:
    """The median seconds of the clustering measurements of ``tasks`` by snapshot name,
    from the journal's ``clustering`` events (a box's measurement runs after its QA record
    is written, on the same worker)."""
    label = {t.task_id: redshift_label(t.redshift) for t in tasks}
    seconds: dict[str, list[float]] = {}
    for event in Journal(layout.journal).read():
        if event["event"] == "clustering" and event["task"] in label and "samples" in event:
            if isinstance(event.get("wall_s"), int | float):
                seconds.setdefault(label[event["task"]], []).append(float(event["wall_s"]))
    return {z: statistics.median(v) for z, v in seconds.items()}


def estimate(campaign: Campaign, plan: Plan, nodes: int | None = None) -> Estimate:
    """Node-hours, GPU-hours, storage and wall-clock time of the remaining tasks.

    Per-task seconds and bytes are the medians measured in this campaign's QA records
    (per snapshot where that snapshot has some; every stage, plus the median clustering
    measurement where the campaign measures), else the profile's cost figures. A task
    of one node shares it with ``workers_per_node - 1`` others. Wall-clock time assumes
    ``nodes`` nodes (default: the provider's max_blocks x nodes_per_block), at most
    ``max_in_flight`` tasks at once, and no task shorter than the longest.
    """
    provider, cost = campaign.execution.provider, campaign.profile.cost
    if nodes is None:
        nodes = provider.max_blocks * provider.nodes_per_block
    done = plan.select("done")
    remaining = [t for t in plan.tasks if t.state != "done"]
    wall = _measured(done)
    held = storage(campaign.layout, done)
    measuring = measurement_seconds(campaign.layout, done) if campaign.clustering else {}
    for z, seconds in wall.items():
        wall[z] = [s + measuring.get(z, 0.0) for s in seconds]
    all_wall = [s for values in wall.values() for s in values]
    if all_wall:
        basis = f"measured: medians of {len(all_wall)} QA records of this campaign"
        overall = statistics.median(all_wall)
        by_z = {z: statistics.median(v) for z, v in wall.items()}
        bytes_per_task = held.per_box  # measured: some box is done
    else:
        basis = f"profile {campaign.profile.name}: cost figures ({campaign.profile.path})"
        overall = cost.seconds_per_task
        by_z = {redshift_label(z): s for z, s in cost.seconds_by_redshift.items()}
        bytes_per_task = cost.gigabytes_per_task * 1e9
    widest = max((t.resources.nodes for t in remaining), default=1)
    if nodes < widest:
        raise CovmocksError(f"--nodes {nodes}: some tasks need {widest} nodes each")
    seconds = [by_z.get(redshift_label(t.redshift), overall) for t in remaining]
    shares = [
        t.resources.nodes
        / (campaign.execution.executor.workers_per_node if t.resources.nodes == 1 else 1)
        for t in remaining
    ]
    node_s = sum(s * share for s, share in zip(seconds, shares, strict=True))
    gpu_s = sum(s * t.resources.gpus for s, t in zip(seconds, remaining, strict=True))
    busy = min(nodes, campaign.execution.max_in_flight * statistics.fmean(shares or [1.0]))
    return Estimate(
        remaining=len(remaining),
        done=len(done),
        basis=basis,
        seconds_per_task=statistics.fmean(seconds) if seconds else 0.0,
        node_hours=node_s / 3600,
        gpu_hours=gpu_s / 3600,
        storage_bytes=bytes_per_task * len(remaining),
        done_bytes=held.total if held else 0.0,
        nodes=nodes,
        busy_nodes=busy,
        wall_s=max(node_s / busy, max(seconds, default=0.0)),
    )
