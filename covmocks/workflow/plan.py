"""A campaign's plan: one task per (realization, snapshot) and its state, read off the
campaign directory (paths: ``covmocks.core.layout``). Reads the file system, writes nothing.

States: ``done`` (QA record and catalog exist), ``blocked`` (the halo catalog, or its
cleaned catalog, is missing, or for AbacusSummit lacks files or has files shorter than its
``checksums.crc32`` lists; not a failure: the task becomes ``todo`` when it is all there),
``todo`` (anything else).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
from pathlib import Path

from covmocks.box.spec import BoxSpec, snapshot_id
from covmocks.campaign import Campaign, Resources
from covmocks.core.errors import CovmocksError
from covmocks.core.layout import Layout, parse_task_id, redshift_label, task_id
from covmocks.halos.abacus_layout import (
    CHECKSUMS,
    CLEANED,
    box_dirs,
    cleaning_dir,
    describe,
    incomplete,
    listed,
    posix_cksum,
)

log = logging.getLogger(__name__)

STATES = ("done", "todo", "blocked")


@dataclasses.dataclass(frozen=True, slots=True)
class Task:
    """One box of the plan and its state. ``output``, ``qa_record`` and ``log_stem`` are
    paths in the campaign directory (``layout``), built on demand (a 40,000-task plan would
    otherwise build 120,000 paths). ``input`` is None for synthetic halos."""

    task_id: str
    realization: int
    redshift: float
    snapshot: int  # covmocks.box.spec.snapshot_id(redshift), keys the random stream
    source: str
    input: str | None
    cleaning: str | None  # the cleaning root of AbacusSummit's cleaned catalogs, if read
    layout: Layout
    resources: Resources
    state: str
    blocked_on: str | None = None  # the missing (or incomplete) input of a blocked task
    catalog_lost: bool = False  # to do again: its QA record stays, its catalog is gone

    @property
    def output(self) -> Path:
        return self.layout.catalog(self.realization, self.redshift)

    @property
    def qa_record(self) -> Path:
        return self.layout.qa_record(self.task_id)

    @property
    def log_stem(self) -> Path:
        return self.layout.log_stem(self.task_id)

    def manifest_row(self) -> dict:
        """The task as one manifest record, paths relative to the campaign directory."""
        row = {
            "task_id": self.task_id,
            "realization": self.realization,
            "redshift": self.redshift,
            "snapshot": self.snapshot,
            "state": self.state,
            "source": self.source,
            "input": self.input,
            "cleaning": self.cleaning,
        }
        prefix = f"{self.layout.root}{os.sep}"
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
    """Every task of a campaign, in realization-major order, and counts by state.
    ``set_aside``: the task ids of catalogs on disk that the campaign no longer plans (a
    realization excluded or a snapshot dropped after its boxes were made): kept, never
    deleted, and left out of every ensemble."""

    directory: Path
    tasks: tuple[Task, ...]
    set_aside: tuple[str, ...] = ()

    def catalogs_lost(self) -> list[str]:
        """Task ids whose catalog is gone while their QA record stays (a scratch purge, a
        hand): made again by the next run."""
        return [t.task_id for t in self.tasks if t.catalog_lost]

    @functools.cached_property
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for task in self.tasks:
            counts[task.state] += 1
        return counts

    def select(self, state: str) -> list[Task]:
        return [t for t in self.tasks if t.state == state]

    def missing_inputs(self) -> list[str]:
        """The distinct inputs (halo catalogs, cleaned catalogs) that blocked tasks wait
        for, in plan order."""
        return list(dict.fromkeys(t.blocked_on for t in self.tasks if t.state == "blocked"))


class _InputCheck:
    """Whether a box's inputs are all there, with one filesystem call per distinct directory
    (a missing parent answers for everything below it); for AbacusSummit also one listing of
    each directory read and one stat per file, against its ``checksums.crc32``
    (``abacus_layout.incomplete``: presence and size, no CRC)."""

    def __init__(self, source: str, sizes: bool):
        self.source = source
        self.sizes = sizes  # check the AbacusSummit files against checksums.crc32
        self._dirs: dict[str, bool] = {}
        self._ready: dict[str, bool] = {}
        self._lacks: dict[str, str | None] = {}

    def _isdir(self, path: str) -> bool:
        if path not in self._dirs:
            parent = os.path.dirname(path)
            self._dirs[path] = (parent == path or self._isdir(parent)) and os.path.isdir(path)
        return self._dirs[path]

    def _check(self, path: str) -> bool:
        if self.source == "hdf5":
            return self._isdir(os.path.dirname(path)) and os.path.isfile(path)
        directory, prefix = box_dirs(path)[0]
        return self._has(str(directory), prefix)

    def _has(self, directory: str, prefix: str) -> bool:
        """Whether ``directory`` holds any ``<prefix>*.asdf``."""
        if not self._isdir(directory):
            return False
        with os.scandir(directory) as entries:
            return any(e.name.startswith(prefix) and e.name.endswith(".asdf") for e in entries)

    def ready(self, path: str) -> bool:
        if path not in self._ready:
            self._ready[path] = self._check(path)
        return self._ready[path]

    def cleaned_ready(self, cleaned: Path) -> bool:
        """Whether a cleaned catalog directory holds its ``cleaned_halo_info_*`` files."""
        key = str(cleaned)
        if key not in self._ready:
            self._ready[key] = self._has(key, f"{CLEANED}_")
        return self._ready[key]

    def lacks(self, directory: Path, prefix: str) -> str | None:
        """What the files read from an AbacusSummit directory lack against its
        checksums.crc32 (one line naming the missing or short files), or None."""
        key = str(directory)
        if key not in self._lacks:
            problems = incomplete(directory, prefix)
            self._lacks[key] = describe(directory, problems) if problems else None
        return self._lacks[key]

    def missing(self, path: str | None, cleaning: str | None) -> str | None:
        """What a box waits for, first found: its halo catalog, else its cleaned catalog,
        missing (the path), or for AbacusSummit incomplete (the directory and its files)."""
        if path is None:
            return None
        if not self.ready(path):
            return path
        checked = box_dirs(path, cleaning) if self.source == "abacus" and self.sizes else []
        if checked and (lacking := self.lacks(*checked[0])):
            return lacking
        if cleaning is not None:
            cleaned = cleaning_dir(Path(path), Path(cleaning))
            if not self.cleaned_ready(cleaned):
                return str(cleaned)
            if len(checked) > 1 and (lacking := self.lacks(*checked[1])):
                return lacking
        return None


def dir_names(directory: Path) -> set[str]:
    """The names in ``directory``; none if it does not exist."""
    try:
        with os.scandir(directory) as entries:
            return {e.name for e in entries}
    except (FileNotFoundError, NotADirectoryError):
        return set()


def record_written(record: Path, parse: bool = False) -> bool:
    """Whether a QA record marks its box done: it holds something (one stat; an empty one,
    from a crash between the rename and the data reaching the disk on a writer without
    fsync, is treated as absent), and with ``parse`` it is a JSON object (one read: a record
    cut short or garbled by hand is treated as absent too). A box whose
    record is absent is planned again, and its catalog, if any, validated again."""
    try:
        if not parse:
            return record.stat().st_size > 0
        data = json.loads(record.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict)


def make_plan(campaign: Campaign, *, check_sizes: bool = False) -> Plan:
    """The tasks and their states now. Reads the file system, writes nothing; logs a
    warning naming the missing inputs, if any. ``check_sizes``: planning a run (the driver,
    ``covmocks plan``), not a look (status, the report): also hold AbacusSummit boxes whose
    files are missing or short against their checksums.crc32 (one stat per file of every
    box not done), and parse every QA record (``record_written``: 2.3 s for 40,000 records
    on a local disk against 0.2 s for their stats)."""
    layout = campaign.layout
    sci = campaign.science
    qa_names = dir_names(layout.qa)
    listed: dict[str, set[str]] = {}

    def catalogs(rdir: str) -> set[str]:
        if rdir not in listed:
            listed[rdir] = dir_names(layout.catalogs / rdir)
        return listed[rdir]

    inputs = _InputCheck(sci.source, check_sizes)
    snapshots = [
        (z, layout.catalog_name(z), snapshot_id(z), campaign.resources_for(z))
        for z in sci.redshifts
    ]
    tasks = []
    for r in sci.realizations:
        rdir = layout.realization_dir_name(r)
        for z, output, snap, resources in snapshots:
            stem = task_id(r, z)
            path, cleaning = sci.input_path(r, z), sci.cleaning_path(r, z)
            missing = None
            recorded = f"{stem}.json" in qa_names
            made = output in catalogs(rdir)
            if made and recorded and record_written(layout.qa / f"{stem}.json", check_sizes):
                state = "done"
            elif missing := inputs.missing(path, cleaning):
                state = "blocked"
            else:
                state = "todo"
            tasks.append(Task(
                task_id=stem, realization=r, redshift=z, snapshot=snap, source=sci.source,
                input=path, cleaning=cleaning, layout=layout, resources=resources, state=state,
                blocked_on=missing, catalog_lost=recorded and not made,
            ))  # fmt: skip
    planned = {t.task_id for t in tasks}
    on_disk = (layout.task_of_catalog(rdir, name) for rdir in dir_names(layout.catalogs)
               for name in catalogs(rdir))  # fmt: skip
    set_aside = sorted(t for t in on_disk if t is not None and t not in planned)
    if set_aside:
        log.info("%d catalogs set aside (made, no longer planned): %s", len(set_aside),
                 ", ".join(set_aside[:5]))  # fmt: skip
    plan = Plan(layout.root, tuple(tasks), tuple(set_aside))
    missing = plan.missing_inputs()
    if missing:
        log.warning(
            "%d of %d tasks blocked: %d inputs missing (halo or cleaned catalogs), e.g. %s",
            plan.counts["blocked"], len(tasks), len(missing), ", ".join(missing[:3]),
        )  # fmt: skip
    return plan


def find_task(campaign: Campaign, text: str) -> BoxSpec:
    """The box of the campaign's task ``text`` (e.g. ``r0001_z0.500``); CovmocksError if the
    campaign has no such task."""
    try:
        realization, zname = parse_task_id(text)
    except ValueError as exc:
        raise CovmocksError(str(exc)) from None
    sci = campaign.science
    redshifts = {redshift_label(z): z for z in sci.redshifts}
    if realization not in sci.realizations or zname not in redshifts:
        raise CovmocksError(
            f"campaign {campaign.name} has no task {text}: realizations "
            f"{sci.realizations[0]}..{sci.realizations[-1]} ({len(sci.realizations)}), "
            f"redshifts {', '.join(redshifts)}"
        )
    z = redshifts[zname]
    task = Task(
        task_id=text, realization=realization, redshift=z, snapshot=snapshot_id(z),
        source=sci.source, input=sci.input_path(realization, z),
        cleaning=sci.cleaning_path(realization, z), layout=campaign.layout,
        resources=campaign.resources_for(z), state="todo",
    )  # fmt: skip
    return BoxSpec.for_task(campaign, task)


@dataclasses.dataclass(frozen=True)
class Verification:
    """What ``verify_inputs`` found: one line per file whose CRC or size is not what its
    directory's checksums.crc32 says (or that is missing, or cannot be read), and counts."""

    mismatches: list[str]
    files: int  # files whose CRC was computed
    n_bytes: int
    directories: int  # directories checked
    unchecked: list[str]  # directories without checksums.crc32: nothing to check against


def _verify_file(path: Path, crc: int, size: int) -> str | None:
    try:
        got_crc, got_size = posix_cksum(path)
    except OSError as exc:
        return f"{path}: cannot read: {exc.strerror or exc}"
    if (got_crc, got_size) == (crc, size):
        return None
    return f"{path}: CRC {got_crc} size {got_size}, {CHECKSUMS} says CRC {crc} size {size}"


def verify_inputs(plan: Plan, workers: int | None = None, progress: bool = True) -> Verification:
    """The POSIX ``cksum`` CRC of every file the plan's AbacusSummit boxes read (slabs, and
    cleaned catalogs where read; ``abacus_layout.box_dirs``), against the directories'
    checksums.crc32: each distinct file once, ``workers`` threads at a time (zlib releases
    the GIL), with a tqdm progress bar in bytes on stderr. Boxes whose halo catalog is not
    there at all are skipped (the plan shows them blocked); a listed file that is missing is a
    mismatch line. Reads only."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from tqdm import tqdm

    dirs: dict[Path, str] = {}
    for task in plan.tasks:
        if task.source == "abacus" and task.input is not None:
            for directory, prefix in box_dirs(task.input, task.cleaning):
                dirs.setdefault(directory, prefix)
    files: dict[Path, tuple[int, int]] = {}
    mismatches, unchecked, checked = [], [], 0
    for directory, prefix in dirs.items():
        if not directory.is_dir():
            continue
        found = listed(directory, prefix)
        if found is None:
            unchecked.append(str(directory))
            continue
        checked += 1
        names, problems = found
        mismatches += [f"{directory / CHECKSUMS}: {p}" for p in problems]
        for name, (crc, size) in names.items():
            path = directory / name
            if path.is_file():
                files[path] = (crc, size)
            else:
                mismatches.append(f"{path}: missing")
    n_bytes = sum(size for _, size in files.values())
    workers = workers or min(8, os.cpu_count() or 1)
    with (
        ThreadPoolExecutor(workers) as pool,
        tqdm(total=n_bytes, unit="B", unit_scale=True, desc="verify inputs",
             disable=not progress) as bar,
    ):  # fmt: skip
        futures = {pool.submit(_verify_file, p, *expected): p for p, expected in files.items()}
        for future in as_completed(futures):
            if line := future.result():
                mismatches.append(line)
            bar.update(files[futures[future]][1])
    return Verification(sorted(mismatches), len(files), n_bytes, checked, unchecked)
