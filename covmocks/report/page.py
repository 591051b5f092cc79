"""The campaign report: one self-contained HTML page, ``qa/report.html`` (``build_report``).

Built only from per-box records, never from catalogs: the statistics files
(``qa/<task>.stats.hdf5``, ``covmocks.catalog.summary``), the QA records (``qa/<task>.json``), the
journal and the plan; it works while a campaign runs. A box counts once its QA record exists
(written last) and its statistics file reads; any other box is skipped. Figures are
base64 PNGs (matplotlib, Agg), the CSS inline; the page loads nothing from anywhere.

The records of the boxes are read by ``covmocks.report.records``; ``watch`` keeps those of
unchanged files between builds.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from covmocks.core import files
from covmocks.core.layout import redshift_label
from covmocks.report import clustering, completeness, figures
from covmocks.report.figures import esc, img, table
from covmocks.report.outliers import MIN_BOXES, N_SIGMA, find
from covmocks.report.records import BoxRecord, ensembles, load_records
from covmocks.report.reference import md14_sfrd as md14_sfrd
from covmocks.report.reference import md14_smd as md14_smd

log = logging.getLogger(__name__)

REPORT_NAME = "report.html"
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


def _sample_cuts(campaign, ens) -> dict:
    """Redshift label -> the clustering samples' cuts of each snapshot in ``ens``
    (``clustering.thresholds.cuts``: None while a threshold is not fixed)."""
    from covmocks.clustering import thresholds

    fixed = thresholds.load(campaign.layout)
    return {e.label: thresholds.cuts(campaign.clustering, e.redshift, fixed) for e in ens}


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
    aside = [(status.catalogs_lost, "Catalogs gone while their QA records stay (a scratch "
              "purge?), to be made again"),
             (status.set_aside, "Set aside: made, no longer in the campaign, kept and left "
              "out of every ensemble")]  # fmt: skip
    return (table(["snapshot", *STATUS_STATES], rows)
            + f"<p>Done in the last hour: {status.done_last_hour}; ETA at that rate: {eta}; "
            f"driver: {esc(status.driver or 'none running')}.</p>"
            + "".join(f"<p>{what} ({len(ids)}): {esc(', '.join(ids))}.</p>"
                      for ids, what in aside if ids)
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
        body["completeness"] = completeness.section(ens, _sample_cuts(campaign, ens))
    done_times = np.array([e["t"] for e in events if e["event"] == "done"], np.float64)
    if ens or len(done_times):
        body["timing"] = img(figures.timing(ens, done_times), "durations and throughput") + (
            "<p class=note>Durations and peak memory: the QA records' <code>stages</code> "
            "(generation and validation; each clustering measurement's time is in the "
            "journal) and <code>peak_rss_bytes</code> (peak resident set of the worker "
            "process so far, or of the largest MPI rank); completions: the journal's "
            "<code>done</code> events (Parsl's monitoring.db is not read).</p>"
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
