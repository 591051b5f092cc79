"""The campaign report: one self-contained HTML page, ``qa/report.html`` (``build_report``).

Built only from per-box records, never from catalogs: the statistics files
(``qa/<task>.stats.hdf5``, ``covmocks.catalog.summary``), the QA records (``qa/<task>.json``), the
journal and the plan; it works while a campaign runs. A box counts once its QA record exists
(written last) and its statistics file reads; any other box is skipped. Figures are
base64 PNGs (matplotlib, Agg), the CSS inline; the page loads nothing from anywhere.

Each statistics file costs one open and a few small reads (``_read_box``: low-level h5py,
only the attributes and histograms shown); above ``POOL_MIN_FILES`` they are read by a pool
of forked processes, when the caller runs no other thread. ``watch`` keeps the records of
unchanged files between builds.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from covmocks.catalog.summary import MHALO_EDGES, MSTAR_EDGES
from covmocks.core import files
from covmocks.core.layout import redshift_label
from covmocks.report import clustering, figures
from covmocks.report.figures import esc, img, table
from covmocks.report.outliers import MIN_BOXES, N_SIGMA, by_snapshot, find
from covmocks.report.reference import md14_sfrd as md14_sfrd
from covmocks.report.reference import md14_smd as md14_smd

log = logging.getLogger(__name__)

REPORT_NAME = "report.html"
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


def _read_box(task_id: str, realization: int, redshift: float, stats: str, qa: str):
    """The BoxRecord of one box, or None where a file is missing, partial or odd."""
    import h5py

    try:
        record = json.loads(Path(qa).read_bytes())
        wall, rss = (_number(record.get(k)) for k in ("wall_s", "peak_rss_bytes"))
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


CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1250px;color:#222;padding:0 1em}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-top:.6em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}th{background:#f2f2f2}
td.l,th.l{text-align:left}.meta{color:#555}.bad{color:#b00}.note{color:#555;font-size:.9em}
img{max-width:100%;vertical-align:top;margin:.3em .3em .3em 0}code{font-size:.9em}
nav a{margin-right:1em}
"""
SECTIONS = (("completion", "Completion"), ("functions", "Mass and SFR functions"),
            ("shmr", "Stellar-to-halo mass"), ("fractions", "Satellite and quenched fractions"),
            ("cosmic", "Cosmic densities"), ("density", "Number density and outliers"),
            ("clustering", "Clustering"), ("timing", "Durations, memory and throughput"),
            ("failures", "Failures"), ("completeness", "Completeness"),
            ("provenance", "Provenance"))  # fmt: skip


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _completion(plan, status, states: dict) -> str:
    from covmocks.workflow.status import STATUS_STATES

    labels = [redshift_label(z) for z in sorted({t.redshift for t in plan.tasks})]
    realizations = sorted({t.realization for t in plan.tasks})
    col = {r: i for i, r in enumerate(realizations)}
    row = {label: i for i, label in enumerate(labels)}
    index = {s: i for i, s in enumerate(figures.STATE_COLOURS)}
    grid = np.full((len(labels), len(realizations)), -1)
    for t in plan.tasks:
        grid[row[redshift_label(t.redshift)], col[t.realization]] = index[states[t.task_id]]
    rows = [[f"z={k}", *(v[s] for s in STATUS_STATES)] for k, v in status.by_redshift.items()]
    rows.append(["all", *(status.counts[s] for s in STATUS_STATES)])
    eta = "n/a" if status.eta_s is None else f"{status.eta_s / 3600:.1f} h"
    return (table(["snapshot", *STATUS_STATES], rows)
            + f"<p>Done in the last hour: {status.done_last_hour}; ETA at that rate: {eta}; "
            f"driver: {esc(status.driver or 'none running')}.</p>"
            + (img(figures.completion_map(labels, realizations, grid), "completion map")
               if plan.tasks else ""))  # fmt: skip


def _provenance(campaign, records: list[BoxRecord]) -> str:
    prov = _read_json(campaign.layout.provenance)
    sci = campaign.science
    rows = [["campaign", f"{campaign.name} version {campaign.version}"],
            ["directory", campaign.directory], ["seed", campaign.seed],
            ["model", sci.model], ["model_params", json.dumps(sci.model_params, sort_keys=True)],
            ["source", sci.source]]  # fmt: skip
    if records:
        rows += _box_identity(campaign.layout.statistics(records[0].task_id))
    if prov is None:
        return table(["", ""], rows) + "<p>No provenance.json (campaign not planned).</p>"
    rows += [[k, prov.get(k)] for k in ("git_commit", "host", "user", "time_utc", "platform")]
    soft = [[k, v] for k, v in (prov.get("software") or {}).items()]
    return table(["", ""], rows, left=2) + table(["package", "version"], soft, left=2)


def _box_identity(path: Path) -> list[list]:
    try:
        import h5py

        with h5py.File(path, "r") as f:
            keys = ("model_name", "model_version", "box_size", "h", "Om0")
            return [[f"{k} (first box)", f.attrs[k]] for k in keys if k in f.attrs]
    except (OSError, KeyError):
        return []


def render(
    campaign,
    *,
    workers: int | None = None,
    n_sigma: float = N_SIGMA,
    cache: dict | None = None,
    pk_cache: dict | None = None,
    refresh_s: float | None = None,
) -> tuple[str, bool]:
    """The page's HTML, and whether the campaign is finished (no driver, every box done)."""
    from covmocks.workflow.journal import Journal
    from covmocks.workflow.plan import make_plan
    from covmocks.workflow.status import campaign_status, task_states

    t0 = time.perf_counter()
    plan = make_plan(campaign)
    status = campaign_status(campaign, plan)
    events = Journal(campaign.layout.journal).read()
    states = task_states(plan, events, status.driver)
    finished = status.driver is None and plan.counts["done"] == len(plan.tasks)
    records, skipped = load_records(campaign, plan, cache=cache, workers=workers)
    ens, flagged = ensembles(records), find(records, n_sigma)
    body = {"completion": _completion(plan, status, states)}
    if ens:
        body |= figures.science_sections(ens, flagged, n_sigma, MIN_BOXES)
        body["completeness"] = figures.completeness_table(ens)
    done_times = np.array([e["t"] for e in events if e["event"] == "done"], np.float64)
    if ens or len(done_times):
        body["timing"] = img(figures.timing(ens, done_times), "durations and throughput") + (
            "<p class=note>Durations and peak memory: the QA records' <code>wall_s</code> and "
            "<code>peak_rss_bytes</code> (peak resident set of the worker process so far, or "
            "of the largest MPI rank); completions: the journal's <code>done</code> events "
            "(Parsl's monitoring.db is not read).</p>"
        )
    failed = [[f["task"], f["error"], f["attempts"], f["log"]] for f in status.failed]
    body["failures"] = (table(["task", "error", "attempts", "log"], failed, left=4)
                        if failed else "<p>No failed task.</p>")  # fmt: skip
    body["provenance"] = _provenance(campaign, records)
    if campaign.clustering is None:
        body["clustering"] = "<p>No clustering section in the campaign file.</p>"
    elif (pk := clustering.section(campaign, plan, cache=pk_cache)) is not None:
        body["clustering"] = pk
    none = "<p>No finished box yet (a QA record with a readable statistics file).</p>"
    title = f"{campaign.name} {campaign.version}"
    refresh = (f'<meta http-equiv="refresh" content="{max(int(refresh_s), 1)}">'
               if refresh_s and not finished else "")  # fmt: skip
    skipped_note = (f"; {len(skipped)} with a QA record skipped, statistics unreadable "
                    f"({esc(', '.join(skipped[:10]))}{', ...' if len(skipped) > 10 else ''})"
                    if skipped else "")  # fmt: skip
    parts = [f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">{refresh}'
             f"<title>covmocks report: {esc(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>Campaign {esc(title)}</h1><p class=meta>{esc(campaign.directory)}<br>"
             f"Built {time.strftime('%Y-%m-%d %H:%M:%S %Z')} from the per-box records in "
             f"{time.perf_counter() - t0:.1f} s: {len(records)} boxes in the statistics, of "
             f"{len(plan.tasks)} planned{skipped_note}.</p><nav>"
             + "".join(f'<a href="#{k}">{esc(v)}</a>' for k, v in SECTIONS) + "</nav>"]  # fmt: skip
    for key, heading in SECTIONS:
        parts.append(f'<h2 id="{key}">{esc(heading)}</h2>{body.get(key, none)}')
    parts.append("</body></html>\n")
    return "".join(parts), finished


def _build(campaign, **options) -> tuple[Path, bool]:
    text, finished = render(campaign, **options)
    path = campaign.layout.qa / REPORT_NAME
    files.write_text(path, text)
    return path, finished


def build_report(campaign, *, workers: int | None = None, n_sigma: float = N_SIGMA) -> Path:
    """Write ``qa/report.html`` (atomically) and return its path. ``workers``: processes
    reading statistics files (default: the CPUs, at most 8)."""
    t0 = time.perf_counter()
    path, _ = _build(campaign, workers=workers, n_sigma=n_sigma)
    log.info("wrote %s in %.1f s", path, time.perf_counter() - t0)
    return path


def watch(campaign, every_s: float, stop=lambda: False, *, workers: int | None = None) -> Path:
    """Rebuild the report every ``every_s`` seconds (the page reloads itself as often) until
    ``stop()`` is true (asked after each build and each second between) or no driver runs
    and every box is done. Files that did not change are not read again."""
    cache: dict = {}
    pk_cache: dict = {}
    while True:
        path, finished = _build(campaign, workers=workers, cache=cache, pk_cache=pk_cache,
                                refresh_s=every_s)  # fmt: skip
        log.info("report rebuilt: %s", path)
        if finished or stop():
            return path
        deadline = time.monotonic() + every_s
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 1.0))
            if stop():
                return path
