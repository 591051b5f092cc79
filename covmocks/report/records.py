"""The report's records of finished boxes: what it reads of each (``BoxRecord``: the QA
record's durations and memory, the statistics file's attributes and histograms) and their
per-snapshot ensembles (``Ensemble``).

Each statistics file costs one open and a few small reads (``_read_box``: low-level h5py,
only the attributes and histograms shown); above ``POOL_MIN_FILES`` they are read by a pool
of forked processes, when the caller runs no other thread.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from covmocks.catalog.summary import MHALO_EDGES, MSTAR_EDGES
from covmocks.catalog.validation import record_seconds
from covmocks.report.outliers import by_snapshot

POOL_MIN_FILES = 2000  # files to read above which a process pool reads them
MSTAR_DEX = float(MSTAR_EDGES[1] - MSTAR_EDGES[0])

_ATTRS = ("volume_mpc3_per_h3", "number_density_h3_mpc3", "sfr_density_msun_yr_mpc3",
          "mstar_density_msun_mpc3", "mstar_formed_density_msun_mpc3", "log10_mstar_complete",
          "log10_sfr_complete", "log10_mhost_min_msun", "log10_msub_min_msun")  # fmt: skip
_HISTS = ("smf_all", "smf_satellites", "smf_quenched", "sfr_all", "centrals_mhalo_mstar")


@dataclasses.dataclass(slots=True)
class BoxRecord:
    """What the report uses of one finished box. ``shmr``: the nonzero bins of
    ``centrals_mhalo_mstar`` (flat indices, counts)."""

    task_id: str
    realization: int
    redshift: float
    wall_s: float  # NaN where the QA record has none
    peak_rss_bytes: float  # of the process that made the box; NaN where unknown
    values: dict[str, float]  # _ATTRS
    smf_all: np.ndarray
    smf_satellites: np.ndarray
    smf_quenched: np.ndarray
    sfr_all: np.ndarray
    shmr: tuple[np.ndarray, np.ndarray]

    @property
    def number_density(self) -> float:
        return self.values["number_density_h3_mpc3"]


def _seconds(record: dict) -> float:
    """The box's seconds on its worker (``validation.record_seconds``), NaN where unknown."""
    try:
        return _number(record_seconds(record))
    except (KeyError, TypeError, ValueError, AttributeError):
        return float("nan")


def _read_box(task_id: str, realization: int, redshift: float, stats: str, qa: str):
    """The BoxRecord of one box, or None where a file is missing, partial or odd."""
    import h5py

    try:
        record = json.loads(Path(qa).read_bytes())
        wall, rss = _seconds(record), _number(record.get("peak_rss_bytes"))
        fid = h5py.h5f.open(os.fsencode(stats), h5py.h5f.ACC_RDONLY)
        try:  # each h5py object costs: no more than needed (file types as given)
            out = np.empty(len(_ATTRS))
            for i, name in enumerate(_ATTRS):
                h5py.h5a.open(fid, name.encode()).read(out[i : i + 1].reshape(()),
                                                       mtype=h5py.h5t.NATIVE_DOUBLE)  # fmt: skip
            hists = {}
            for name in _HISTS:
                dset = h5py.h5d.open(fid, name.encode())
                hists[name] = np.empty(dset.shape, np.int64)
                dset.read(h5py.h5s.ALL, h5py.h5s.ALL, hists[name], mtype=h5py.h5t.NATIVE_INT64)
        finally:
            fid.close()
        values = dict(zip(_ATTRS, out.tolist(), strict=True))
    except (OSError, KeyError, ValueError, TypeError, AttributeError):
        return None
    flat = hists.pop("centrals_mhalo_mstar").ravel()
    nonzero = np.flatnonzero(flat)
    return BoxRecord(task_id, realization, redshift, wall, rss, values, **hists,
                     shmr=(nonzero.astype(np.int32), flat[nonzero]))  # fmt: skip


def _number(value) -> float:
    """A QA record's number as a float; NaN where absent or not a number."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok else float("nan")


def _read_chunk(items: list[tuple]) -> list:
    return [_read_box(*item) for item in items]


def _read_all(items: list[tuple], workers: int | None) -> list:
    if workers is None:
        workers = min(len(os.sched_getaffinity(0)), 8)
    if workers <= 1 or len(items) < POOL_MIN_FILES or threading.active_count() > 1:
        return _read_chunk(items)
    size = -(-len(items) // (workers * 4))
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    # fork, not spawn: spawn re-runs the caller's script in each worker where it lacks an
    # `if __name__ == "__main__"` guard; fork is safe while no other thread may hold a lock
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        return [record for part in pool.map(_read_chunk, chunks) for record in part]


def _file_key(*paths: Path):
    try:
        return tuple((s.st_mtime_ns, s.st_size) for s in map(os.stat, paths))
    except OSError:
        return None


def load_records(campaign, plan=None, *, cache: dict | None = None, workers: int | None = None):
    """(records of the finished boxes in plan order, task ids with a QA record whose
    statistics could not be read). ``cache`` (task id -> (file key, record)), kept between
    calls, saves rereading files that did not change."""
    from covmocks.workflow.plan import dir_names, make_plan

    plan = plan or make_plan(campaign)
    layout = campaign.layout
    names = dir_names(layout.qa)
    found, items, keys = {}, [], []
    for task in plan.tasks:
        tid = task.task_id
        if f"{tid}.json" not in names:
            continue
        stats, qa = layout.statistics(tid), layout.qa_record(tid)
        key = _file_key(qa, stats) if cache is not None else None
        if cache is not None and key is not None and cache.get(tid, (None,))[0] == key:
            found[tid] = cache[tid][1]
            continue
        items.append((tid, task.realization, task.redshift, str(stats), str(qa)))
        keys.append(key)
    for item, key, record in zip(items, keys, _read_all(items, workers), strict=True):
        found[item[0]] = record
        if cache is not None and record is not None and key is not None:
            cache[item[0]] = (key, record)
    ordered = [found[t.task_id] for t in plan.tasks if t.task_id in found]
    skipped = [t.task_id for t in plan.tasks if t.task_id in found and found[t.task_id] is None]
    return [r for r in ordered if r is not None], skipped


@dataclasses.dataclass
class Ensemble:
    """The boxes of one snapshot: per-box values (arrays over boxes) and summed histograms.
    ``smf``: per dex per (Mpc/h)^3; ``sfr_cum``: n(>SFR) at each SFR bin's lower edge."""

    label: str
    redshift: float
    tasks: list[str]
    volume: np.ndarray
    number_density: np.ndarray
    sfr_density: np.ndarray
    mstar_density: np.ndarray  # surviving mass
    mstar_formed_density: np.ndarray
    mstar_complete: np.ndarray
    sfr_complete: np.ndarray
    mhost_cut: np.ndarray
    msub_cut: np.ndarray
    wall_s: np.ndarray
    peak_rss_bytes: np.ndarray
    smf: np.ndarray
    sfr_cum: np.ndarray
    smf_all_sum: np.ndarray
    smf_sat_sum: np.ndarray
    smf_q_sum: np.ndarray
    shmr: np.ndarray

    @property
    def n(self) -> int:
        return len(self.tasks)


def ensembles(records: list[BoxRecord]) -> list[Ensemble]:
    """One Ensemble per snapshot with finished boxes, by increasing redshift."""
    out = []
    for label, g in by_snapshot(records):
        col = {k: np.array([r.values[k] for r in g]) for k in _ATTRS}
        volume = col["volume_mpc3_per_h3"]
        sfr = np.array([r.sfr_all for r in g], np.float64)
        shmr = np.zeros((len(MHALO_EDGES) - 1) * (len(MSTAR_EDGES) - 1), np.int64)
        for r in g:
            shmr[r.shmr[0]] += r.shmr[1]
        out.append(Ensemble(
            label, g[0].redshift, [r.task_id for r in g], volume, col["number_density_h3_mpc3"],
            col["sfr_density_msun_yr_mpc3"], col["mstar_density_msun_mpc3"],
            col["mstar_formed_density_msun_mpc3"],
            col["log10_mstar_complete"], col["log10_sfr_complete"], col["log10_mhost_min_msun"],
            col["log10_msub_min_msun"], np.array([r.wall_s for r in g]),
            np.array([r.peak_rss_bytes for r in g]),
            smf=np.array([r.smf_all for r in g]) / MSTAR_DEX / volume[:, None],
            sfr_cum=np.cumsum(sfr[:, ::-1], axis=1)[:, ::-1] / volume[:, None],
            smf_all_sum=sum(r.smf_all for r in g), smf_sat_sum=sum(r.smf_satellites for r in g),
            smf_q_sum=sum(r.smf_quenched for r in g),
            shmr=shmr.reshape(len(MHALO_EDGES) - 1, len(MSTAR_EDGES) - 1),
        ))  # fmt: skip
    return out
