"""Hashing a release's files in parallel over the local cores, with a progress bar in bytes.

A plain file is only hashed (threads: hashlib lets go of the GIL). A catalog is validated as
it is hashed (``covmocks.catalog.validation.inspect_file``, one read) and its SHA-256 compared
with its QA record's; HDF5 reads under one lock per process, so catalogs go to processes.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import multiprocessing
import os
from collections.abc import Iterator
from pathlib import Path

from covmocks.catalog import validation

# The catalog attributes a release keeps per box (its index and its data card).
BOX_ATTRS = ("redshift", "n_galaxies", "box_size", "log10_mstar_complete", "log10_sfr_complete")


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    """One file to hash: ``path`` (absolute), ``name`` (as the manifest writes it); for a
    catalog, ``expected`` is its QA record's sha256 and the catalog is validated too."""

    path: Path
    name: str
    size: int
    expected: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    """A hashed file: ``problem`` is None where all is well, else one line; ``attrs`` the
    catalog's ``BOX_ATTRS`` (catalogs only)."""

    name: str
    size: int
    sha256: str | None
    problem: str | None = None
    attrs: dict | None = None


def _plain(job: Job) -> Result:
    try:
        return Result(job.name, job.path.stat().st_size, validation.sha256(job.path))
    except OSError as exc:
        return Result(job.name, job.size, None, f"unreadable: {exc.strerror or exc}")


def _catalog(job: Job) -> Result:
    found = validation.inspect_file(job.path)
    size = job.path.stat().st_size if found.sha256 else job.size
    attrs = {k: _plain_value(found.attrs.get(k)) for k in BOX_ATTRS} if found.attrs else None
    if found.lines:
        problem = f"fails validation: {', '.join(found.lines)}"
    elif found.sha256 != job.expected:
        problem = f"sha256 {found.sha256} differs from its QA record's {job.expected}"
    else:
        problem = None
    return Result(job.name, size, found.sha256, problem, attrs)


def _plain_value(value):
    """An HDF5 attribute as JSON/CSV text takes it (numpy scalars to Python, bytes to str)."""
    if isinstance(value, bytes):
        return value.decode()
    return value.item() if hasattr(value, "item") else value


def _run(job: Job) -> Result:
    return _catalog(job) if job.expected is not None else _plain(job)


def workers_default() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def hash_files(jobs: list[Job], workers: int | None = None, progress: bool = True,
               what: str = "hashing") -> Iterator[Result]:  # fmt: skip
    """Each job's ``Result``, in the order of ``jobs``; processes where any job is a catalog,
    threads otherwise. The caller may stop early (closing the generator cancels the rest)."""
    from tqdm import tqdm

    workers = workers or workers_default()
    if any(j.expected is not None for j in jobs):
        pool = cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    else:
        pool = cf.ThreadPoolExecutor(workers)
    bar = tqdm(total=sum(j.size for j in jobs), disable=not progress, unit="B",
               unit_scale=True, desc=what)  # fmt: skip
    try:
        for result in pool.map(_run, jobs, chunksize=max(1, len(jobs) // (workers * 64))):
            bar.update(result.size)
            yield result
    finally:
        bar.close()
        pool.shutdown(cancel_futures=True)
