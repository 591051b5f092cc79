"""A campaign's plan: one task per (realization, snapshot), its state, and the campaign
directory that holds it all.

The campaign directory (``Campaign.directory``)::

    metadata/  campaign.yaml     the campaign file as given
               config.json       merged configuration and where each value came from
               science.json      what fixes the catalogs' content, and its sha256
               provenance.json   software versions, git commit, host, user, time
               plan.jsonl        the manifest: one task per line
               plan.json         counts by state, time of planning
    catalogs/rNNNN/mock_zZ.ZZZ.hdf5
    logs/rNNNN_zZ.ZZZ.out, .err
    qa/rNNNN_zZ.ZZZ.json         written last by the runner: with the catalog, marks "done"

States: ``done`` (QA record and catalog exist), ``blocked`` (the halo catalog is missing;
not a failure: the task becomes ``todo`` when it appears), ``todo`` (anything else).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import statistics
from collections.abc import Iterable
from pathlib import Path

from covmocks import provenance
from covmocks.campaign import Campaign, Resources, snapshot_name
from covmocks.errors import CovmocksError, OutputError
from covmocks.generator import snapshot_id

log = logging.getLogger(__name__)

STATES = ("done", "todo", "blocked")
SUBDIRS = ("metadata", "catalogs", "logs", "qa")
MANIFEST = "plan.jsonl"


def task_id(realization: int, redshift: float) -> str:
    """``(3, 1.1)`` -> ``'r0003_z1.100'``."""
    return f"r{realization:04d}_z{snapshot_name(redshift)}"


@dataclasses.dataclass(frozen=True, slots=True)
class Task:
    """One box. ``directory`` is the campaign directory; ``output``, ``qa_record`` and
    ``log_stem`` (which takes the suffixes ``.out`` and ``.err``) are absolute paths under it,
    built on demand (a 40,000-task plan would otherwise parse 120,000 paths).
    ``input`` is None for synthetic halos."""

    task_id: str
    realization: int
    redshift: float
    snapshot: int  # covmocks.generator.snapshot_id(redshift), keys the random stream
    source: str
    input: str | None
    directory: Path
    resources: Resources
    state: str

    @property
    def output(self) -> Path:
        name = f"r{self.realization:04d}/mock_z{snapshot_name(self.redshift)}.hdf5"
        return self.directory / "catalogs" / name

    @property
    def qa_record(self) -> Path:
        return self.directory / "qa" / f"{self.task_id}.json"

    @property
    def log_stem(self) -> Path:
        return self.directory / "logs" / self.task_id

    def manifest_row(self, directory: Path) -> dict:
        """The task as one manifest record, paths relative to the campaign directory."""
        row = {
            "task_id": self.task_id,
            "realization": self.realization,
            "redshift": self.redshift,
            "snapshot": self.snapshot,
            "state": self.state,
            "source": self.source,
            "input": self.input,
        }
        prefix = f"{directory}{os.sep}"
        for key in ("output", "qa_record", "log_stem"):
            row[key] = str(getattr(self, key)).removeprefix(prefix)
        r = self.resources
        return row | {
            "nodes": r.nodes,
            "ranks": r.ranks,
            "gpus": r.gpus,
            "walltime_s": r.walltime_s,
        }


@dataclasses.dataclass(frozen=True)
class Plan:
    """Every task of a campaign, in realization-major order, and counts by state."""

    directory: Path
    tasks: tuple[Task, ...]

    @functools.cached_property
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for task in self.tasks:
            counts[task.state] += 1
        return counts

    def select(self, state: str) -> list[Task]:
        return [t for t in self.tasks if t.state == state]

    def missing_inputs(self) -> list[str]:
        """The distinct halo catalogs that blocked tasks wait for, in plan order."""
        return list(dict.fromkeys(t.input for t in self.tasks if t.state == "blocked"))


class _InputCheck:
    """Whether halo catalogs exist, with one filesystem call per distinct directory: a
    missing parent answers for everything below it."""

    def __init__(self, source: str):
        self.source = source
        self._dirs: dict[str, bool] = {}
        self._ready: dict[str, bool] = {}

    def _isdir(self, path: str) -> bool:
        if path not in self._dirs:
            parent = os.path.dirname(path)
            self._dirs[path] = (parent == path or self._isdir(parent)) and os.path.isdir(path)
        return self._dirs[path]

    def _check(self, path: str) -> bool:
        if self.source == "hdf5":
            return self._isdir(os.path.dirname(path)) and os.path.isfile(path)
        slabs = os.path.join(path, "halo_info")
        if not self._isdir(slabs):
            return False
        with os.scandir(slabs) as entries:
            return any(
                e.name.startswith("halo_info_") and e.name.endswith(".asdf") for e in entries
            )

    def ready(self, path: str) -> bool:
        if path not in self._ready:
            self._ready[path] = self._check(path)
        return self._ready[path]


def _names(directory: Path) -> set[str]:
    try:
        with os.scandir(directory) as entries:
            return {e.name for e in entries}
    except (FileNotFoundError, NotADirectoryError):
        return set()


def make_plan(campaign: Campaign) -> Plan:
    """The tasks and their states now. Reads the file system, writes nothing; logs a
    warning naming the missing halo catalogs, if any."""
    d = campaign.directory
    sci = campaign.science
    qa_names = _names(d / "qa")
    listed: dict[str, set[str]] = {}

    def catalogs(rdir: str) -> set[str]:
        if rdir not in listed:
            listed[rdir] = _names(d / "catalogs" / rdir)
        return listed[rdir]

    inputs = _InputCheck(sci.source)
    snapshots = [
        (z, snapshot_name(z), snapshot_id(z), campaign.resources_for(z)) for z in sci.redshifts
    ]
    tasks = []
    for r in sci.realizations:
        rdir = f"r{r:04d}"
        for z, zname, snap, resources in snapshots:
            stem = task_id(r, z)
            output = f"mock_z{zname}.hdf5"
            path = sci.input_path(r, z)
            if f"{stem}.json" in qa_names and output in catalogs(rdir):
                state = "done"
            elif path is not None and not inputs.ready(path):
                state = "blocked"
            else:
                state = "todo"
            tasks.append(Task(
                task_id=stem, realization=r, redshift=z, snapshot=snap, source=sci.source,
                input=path, directory=d, resources=resources, state=state,
            ))  # fmt: skip
    plan = Plan(d, tuple(tasks))
    missing = plan.missing_inputs()
    if missing:
        log.warning(
            "%d of %d tasks blocked: %d halo catalogs missing, e.g. %s",
            plan.counts["blocked"], len(tasks), len(missing), ", ".join(missing[:3]),
        )  # fmt: skip
    return plan


# ---------------------------------------------------------------- campaign directory


def _write_atomic(path: Path, text: str | Iterable[str]) -> None:
    """Write ``text`` (or its pieces, streamed) to a temporary file, then rename it."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.writelines([text] if isinstance(text, str) else text)
    os.replace(tmp, path)


def _write_json(path: Path, data) -> None:
    _write_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def science_digest(record: dict) -> str:
    """sha256 of the canonical JSON of a science record."""
    text = json.dumps(record, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def has_catalogs(directory: Path) -> bool:
    """Whether ``catalogs/`` holds any ``*.hdf5`` file (stops at the first)."""
    for rdir in _names(directory / "catalogs"):
        if any(n.endswith(".hdf5") for n in _names(directory / "catalogs" / rdir)):
            return True
    return False


def check_science(campaign: Campaign) -> None:
    """Refuse to re-plan a campaign that has catalogs if what fixes their content changed."""
    meta = campaign.directory / "metadata" / "science.json"
    now = json.loads(json.dumps(campaign.science_record, default=str))
    try:
        recorded = json.loads(meta.read_text(encoding="utf-8"))["record"]
    except FileNotFoundError:
        return
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if has_catalogs(campaign.directory):
            raise CovmocksError(f"{meta} is unreadable ({exc}); cannot check the science of a "
                                "campaign that has catalogs") from None  # fmt: skip
        return
    if recorded == now or not has_catalogs(campaign.directory):
        return
    changed = sorted(k for k in set(recorded) | set(now) if recorded.get(k) != now.get(k))
    raise CovmocksError(
        f"{campaign.path}: campaign {campaign.name} version {campaign.version} already has "
        f"catalogs in {campaign.directory / 'catalogs'}, made with different values of "
        f"{', '.join(changed)} (recorded in {meta}); bump campaign.version to start a new "
        "campaign directory, or restore the recorded values"
    )


def _write_metadata(campaign: Campaign, plan: Plan) -> None:
    d = campaign.directory
    meta = d / "metadata"
    _write_atomic(meta / "campaign.yaml", campaign.text)
    _write_json(meta / "config.json", {"values": campaign.config(), "sources": campaign.sources()})
    record = campaign.science_record
    _write_json(meta / "science.json", {"sha256": science_digest(record), "record": record})
    _write_json(meta / "provenance.json", {
        "software": provenance.software_versions(),
        "git_commit": provenance.git_commit(),
        **provenance.environment(),
    })  # fmt: skip
    _write_atomic(meta / MANIFEST, (f"{json.dumps(t.manifest_row(d))}\n" for t in plan.tasks))
    _write_json(meta / "plan.json", {
        "campaign": f"{campaign.name}_{campaign.version}",
        "planned_utc": provenance.utc_now(),
        "tasks": len(plan.tasks),
        "counts": plan.counts,
        "manifest": MANIFEST,
    })  # fmt: skip


def write_plan(campaign: Campaign) -> Plan:
    """``covmocks plan``: create the campaign directory, then (re)write its metadata and
    manifest. Never touches catalogs, QA records or logs."""
    check_science(campaign)
    d = campaign.directory
    try:
        for sub in SUBDIRS:
            (d / sub).mkdir(parents=True, exist_ok=True)
        plan = make_plan(campaign)
        _write_metadata(campaign, plan)
    except OSError as exc:
        raise OutputError(f"cannot write campaign directory {d}: {exc}") from None
    return plan


def read_manifest(directory: Path) -> list[dict]:
    """The manifest rows of a planned campaign directory."""
    path = Path(directory) / "metadata" / MANIFEST
    try:
        with path.open(encoding="utf-8") as f:
            return [json.loads(line) for line in f]
    except FileNotFoundError:
        raise CovmocksError(f"{path}: no manifest; run covmocks plan first") from None


# ---------------------------------------------------------------- estimate


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
    storage_bytes: float
    done_bytes: float
    nodes: int
    busy_nodes: float  # nodes kept busy: fewer than ``nodes`` when max_in_flight binds
    wall_s: float


def _measured(tasks: list[Task]) -> tuple[dict[str, list[float]], list[float]]:
    """QA records of done tasks -> (``wall_s`` by snapshot name, ``file_bytes``)."""
    wall: dict[str, list[float]] = {}
    sizes: list[float] = []
    unreadable = 0
    for task in tasks:
        try:
            record = json.loads(task.qa_record.read_text(encoding="utf-8"))
            seconds, size = float(record["wall_s"]), float(record["file_bytes"])
        except (OSError, ValueError, KeyError, TypeError):
            unreadable += 1
            continue
        wall.setdefault(snapshot_name(task.redshift), []).append(seconds)
        sizes.append(size)
    if unreadable:
        log.warning("%d QA records without readable wall_s and file_bytes; ignored", unreadable)
    return wall, sizes


def estimate(campaign: Campaign, plan: Plan, nodes: int | None = None) -> Estimate:
    """Node-hours, GPU-hours, storage and wall-clock time of the remaining tasks.

    Per-task seconds and bytes are the medians measured in this campaign's QA records
    (per snapshot where that snapshot has some), else the profile's cost figures. A task
    of one node shares it with ``workers_per_node - 1`` others. Wall-clock time assumes
    ``nodes`` nodes (default: the provider's max_blocks x nodes_per_block), at most
    ``max_in_flight`` tasks at once, and no task shorter than the longest.
    """
    profile = campaign.execution.profile
    provider, cost = profile["provider"], profile["cost"]
    if nodes is None:
        nodes = provider["max_blocks"] * provider["nodes_per_block"]
    done = plan.select("done")
    remaining = [t for t in plan.tasks if t.state != "done"]
    wall, sizes = _measured(done)
    all_wall = [s for values in wall.values() for s in values]
    if all_wall:
        basis = f"measured: medians of {len(all_wall)} QA records of this campaign"
        overall = statistics.median(all_wall)
        by_z = {z: statistics.median(v) for z, v in wall.items()}
        bytes_per_task = statistics.median(sizes)
    else:
        basis = f"profile {profile['name']}: cost figures ({profile['path']})"
        overall = cost["seconds_per_task"]
        by_z = {snapshot_name(z): s for z, s in cost["seconds_by_redshift"].items()}
        bytes_per_task = cost["gigabytes_per_task"] * 1e9
    widest = max((t.resources.nodes for t in remaining), default=1)
    if nodes < widest:
        raise CovmocksError(f"--nodes {nodes}: some tasks need {widest} nodes each")
    seconds = [by_z.get(snapshot_name(t.redshift), overall) for t in remaining]
    shares = [
        t.resources.nodes / (provider["workers_per_node"] if t.resources.nodes == 1 else 1)
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
        done_bytes=sum(sizes),
        nodes=nodes,
        busy_nodes=busy,
        wall_s=max(node_s / busy, max(seconds, default=0.0)),
    )
