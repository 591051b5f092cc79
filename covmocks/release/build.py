"""``covmocks release``: sign a finished campaign version and freeze it.

Under the driver lock (never beside a running driver): every box done (or, with
``allow_incomplete``, the missing ones listed with why), every catalog validated again and its
SHA-256 compared with its QA record's, every payload file hashed; then the release directory
(``core.layout.ReleaseLayout``) written, the released files made read-only, and the release
recorded in the campaign's metadata, after which nothing changes this version.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import importlib.metadata
import io
import json
import logging
import os
import shutil
import time
from pathlib import Path

from covmocks.core import files, provenance
from covmocks.core.errors import CovmocksError
from covmocks.core.layout import Layout, ReleaseLayout, redshift_label
from covmocks.release import bag, card, htar
from covmocks.release.digest import Job, hash_files
from covmocks.workflow.driver_lock import DriverLock
from covmocks.workflow.journal import Journal, last_events
from covmocks.workflow.metadata import record_release, released, science_digest
from covmocks.workflow.plan import make_plan
from covmocks.workflow.status import task_states

log = logging.getLogger(__name__)

TAG_FILES = {  # the release directory's own files: what each is (the data model lists them)
    "bagit.txt": "BagIt declaration",
    "bag-info.txt": "the bag's description: campaign, version, date, payload size",
    "manifest-sha256.txt": "sha256 and path (from the campaign directory) of every payload file",
    bag.SIZES: "size in bytes and path of every payload file",
    "release.json": "the release: where the payload is, time, counts, missing boxes",
    "boxes.csv": "one row per planned box",
    "README.md": "the data card",
    "datamodel.md": "this data model",
    "campaign.yaml": "the campaign file as given",
    "config.json": "the merged configuration, each value with its source",
    "science.json": "what fixes the catalogs' content, and its sha256",
    "provenance.json": "covmocks version and commit, every installed package's version, model, "
    "seeds, the science record's hash, the planning's provenance",
    "thresholds.json": "the sample thresholds fixed per snapshot",
    "covariance.hdf5": "the clustering covariance (covmocks covariance)",
    "report.html": "the campaign report",
    "htar/": "the plan to tape (--htar-plan): htar.sh, bundles.txt, <bundle>.members",
}


@dataclasses.dataclass(frozen=True)
class HtarSettings:
    """``--htar-plan``: bundle sizes (bytes) and the HPSS directory the script writes to."""

    min_bytes: int = htar.MIN_BYTES
    max_bytes: int = htar.MAX_BYTES
    hpss_dir: str = ""


def _missing(layout: Layout, plan) -> list[dict]:
    """The planned boxes that are not done: task, state, and why."""
    events = Journal(layout.journal).read()
    states = task_states(plan, events, None)  # no driver runs: the release holds its lock
    latest = last_events(events)
    missing = []
    for task in plan.tasks:
        if task.state == "done":
            continue
        state, last = states[task.task_id], latest.get(task.task_id)
        if state == "failed":
            why = f"{last.get('error', '')} (log {task.log_stem}.err)"
        elif task.blocked_on:
            why = f"input missing: {task.blocked_on}"
        else:
            why = f"unfinished (last event: {last['event']})" if last else "never made"
        missing.append({"task": task.task_id, "state": state, "why": why})
    return missing


RELATIVE = Layout(Path())  # paths from the campaign directory, as the manifest has them


def _box_files(task) -> list[str]:
    """A box's files as the manifest names them: catalog, QA record, statistics, samples,
    clustering."""
    t = task.task_id
    paths = [RELATIVE.catalog(task.realization, task.redshift), RELATIVE.qa_record(t),
             RELATIVE.statistics(t), RELATIVE.samples(t), RELATIVE.clustering(t)]  # fmt: skip
    return [p.as_posix() for p in paths]


def _jobs(layout: Layout, plan, names: list[str]) -> list[Job]:
    """One job per payload file; a done box's catalog is validated against its QA record."""
    expected = {}
    for task in plan.select("done"):
        record = json.loads(task.qa_record.read_text(encoding="utf-8"))
        expected[_box_files(task)[0]] = record.get("sha256", "")
    root = layout.root
    return [Job(root / n, n, (root / n).stat().st_size, expected.get(n)) for n in names]


def _verify_payload(layout: Layout, plan, workers, progress) -> dict[str, object]:
    """``{name: Result}`` of every payload file; stops at the first box that fails."""
    names = bag.tree_files(layout.root)
    results = {}
    gen = hash_files(_jobs(layout, plan, names), workers, progress, "release")
    try:
        for result in gen:
            if result.problem:
                raise CovmocksError(f"{layout.root / result.name}: {result.problem}; nothing "
                                    "released")  # fmt: skip
            results[result.name] = result
    finally:
        gen.close()
    return results


def _box_rows(plan, results, missing) -> list[dict]:
    why = {m["task"]: m for m in missing}
    rows = []
    for task in plan.tasks:
        name = _box_files(task)[0]
        res = results.get(name) if task.state == "done" else None
        attrs = (res.attrs if res else None) or {}
        rows.append({"task": task.task_id, "realization": task.realization,
                     "snapshot": task.snapshot, "redshift": task.redshift,
                     "snapshot_label": redshift_label(task.redshift),
                     "header_redshift": attrs.get("redshift", ""),
                     "galaxies": attrs.get("n_galaxies", ""),
                     "file": name if res else "", "bytes": res.size if res else "",
                     "sha256": res.sha256 if res else "",
                     "state": "done" if res else why[task.task_id]["state"],
                     "why": "" if res else why[task.task_id]["why"],
                     **{k: attrs.get(k) for k in ("log10_mstar_complete", "log10_sfr_complete",
                                                  "completeness_definition")}})  # fmt: skip
    return rows


def _csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, card.BOX_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _provenance(campaign) -> dict:
    sci = campaign.science_record
    try:
        planned = json.loads(campaign.layout.provenance.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        planned = None
    return {
        "covmocks": provenance.software_versions()["covmocks"],
        "git_commit": provenance.git_commit(),
        "stack": provenance.software_versions(),
        "installed": {d.metadata["Name"]: d.version for d in importlib.metadata.distributions()},
        "model": {
            "name": sci["science.model"],
            "version": sci["science.model_version"],
            "parameters": sci["science.model_params"],
        },  # fmt: skip
        "seed": sci["campaign.seed"],
        "science_sha256": science_digest(sci),
        "planned": planned,
        "released": provenance.environment(),
    }


def _write_release(campaign, release: ReleaseLayout, results, rows, missing, info,
                   to_tape: bool) -> None:  # fmt: skip
    layout = campaign.layout
    for source in (layout.campaign_file, layout.config, layout.science, layout.thresholds,
                   layout.covariance, layout.report):  # fmt: skip
        if source.exists():
            shutil.copyfile(source, release.copy_of(source))
    files.write_json(release.copy_of(layout.provenance), _provenance(campaign))
    names = sorted(results)
    manifest = bag.manifest_text([(n, results[n].sha256) for n in names])
    files.write_text(release.manifest, manifest)
    files.write_text(release.root / bag.SIZES, bag.manifest_text([(n, str(results[n].size))
                                                                  for n in names]))  # fmt: skip
    info["manifest_sha256"] = hashlib.sha256(manifest.encode()).hexdigest()
    files.write_text(release.bagit, bag.BAGIT)
    files.write_text(release.bag_info, (
        f"Source-Organization: {campaign.name}\nExternal-Identifier: {release.root.name}\n"
        f"External-Description: {campaign.description}\nBagging-Date: {info['released_utc'][:10]}\n"
        f"Payload-Oxum: {info['payload_bytes']}.{info['payload_files']}\n"
        f"Bag-Software-Agent: covmocks {info['covmocks']}\n"))  # fmt: skip
    files.write_text(release.boxes, _csv(rows))
    files.write_json(release.record, {**info, "missing": missing})
    files.write_text(release.card, card.card(campaign, release, rows, info))
    tags = {
        n: w
        for n, w in TAG_FILES.items()
        if (release.root / n).exists() or n.endswith(".md") or (n == "htar/" and to_tape)
    }
    files.write_text(release.datamodel, card.datamodel(campaign, layout.root, names, tags))


def _tagmanifest(release: ReleaseLayout) -> None:
    names = [n for n in bag.tree_files(release.root, ()) if n != release.tagmanifest.name]
    digests = [(n, r.sha256) for n, r in zip(names, hash_files(
        [Job(release.root / n, n, (release.root / n).stat().st_size) for n in names],
        progress=False), strict=True)]  # fmt: skip
    files.write_text(release.tagmanifest, bag.manifest_text(digests))


def _read_only(paths: list[Path], umask: int) -> None:
    """Files 0444, directories 0555, less what the campaign's umask takes away."""
    for path in paths:
        for folder, _, names in os.walk(path, topdown=False):
            for n in names:
                os.chmod(os.path.join(folder, n), 0o444 & ~umask)
            os.chmod(folder, 0o555 & ~umask)


def _htar(campaign, release: ReleaseLayout, plan, results, settings: HtarSettings) -> list:
    layout = campaign.layout
    snapshots: dict[str, list] = {}
    in_box = set()
    for task in plan.select("done"):
        names = _box_files(task)
        unit = [(n, results[n].size) for n in names if n in results]
        in_box.update(n for n, _ in unit)
        snapshots.setdefault(redshift_label(task.redshift), []).append((task.realization, unit))
    prefix = release.root.name
    bundles = htar.plan_bundles(prefix, layout.root, snapshots, settings.min_bytes,
                                settings.max_bytes)  # fmt: skip
    loose = [(n, r.size) for n, r in sorted(results.items()) if n not in in_box]
    if loose:
        bundles.append(htar.loose_bundle(f"{prefix}_other", layout.root, loose))
    own = sum((release.root / n).stat().st_size for n in bag.tree_files(release.root, ()))
    bundles.append(
        htar.loose_bundle(f"{prefix}_release", release.root.parent, [(release.root.name, own)])
    )  # the whole directory
    return bundles


def release(campaign, to: Path | None = None, allow_incomplete: bool = False,
            htar_settings: HtarSettings | None = None, workers: int | None = None,
            progress: bool = True) -> ReleaseLayout:  # fmt: skip
    """Release ``campaign``'s version into ``to/<name>_<version>`` (default: its campaign
    directory's ``release/``); returns the release directory."""
    layout = campaign.layout
    with DriverLock(layout.lock, "covmocks release"):
        record = released(layout)
        if record is not None:
            where = record.get("release", layout.release_record)
            raise CovmocksError(
                f"campaign {campaign.name} version {campaign.version} is already released ({where})"
            )
        plan = make_plan(campaign)
        missing = _missing(layout, plan)
        if missing and not allow_incomplete:
            first = missing[0]
            raise CovmocksError(
                f"{len(missing)} of {len(plan.tasks)} boxes are not done (e.g. {first['task']}: "
                f"{first['state']}, {first['why']}); finish them, or release with "
                "--allow-incomplete (the release then lists them)"
            )
        name = f"{campaign.name}_{campaign.version}"
        release_dir = ReleaseLayout((Path(to) / name) if to else layout.release(
            campaign.name, campaign.version))  # fmt: skip
        if release_dir.root.exists():
            raise CovmocksError(f"{release_dir.root} exists (a release cut short?): remove it "
                                "first (chmod -R u+w, then rm -r)")  # fmt: skip
        t0 = time.perf_counter()
        results = _verify_payload(layout, plan, workers, progress)
        log.info("verified %d files in %.1f s", len(results), time.perf_counter() - t0)
        rows = _box_rows(plan, results, missing)
        umask = int(campaign.execution.umask, 8)
        release_dir.root.mkdir(parents=True)
        info = {
            "campaign": campaign.name, "version": campaign.version,
            "release": str(release_dir.root.resolve()),
            "payload": os.path.relpath(layout.root.resolve(), release_dir.root.resolve()),
            "from_campaign": os.path.relpath(release_dir.root.resolve(), layout.root.resolve()),
            "released_utc": provenance.utc_now(),
            "covmocks": provenance.software_versions()["covmocks"],
            "git_commit": provenance.git_commit(),
            "boxes": len(plan.tasks), "boxes_released": len(plan.tasks) - len(missing),
            "payload_files": len(results), "payload_bytes": sum(r.size for r in results.values()),
        }  # fmt: skip
        _write_release(
            campaign, release_dir, results, rows, missing, info, htar_settings is not None
        )
        if htar_settings is not None:
            bundles = _htar(campaign, release_dir, plan, results, htar_settings)
            htar.write_plan(
                release_dir.htar,
                bundles,
                name,
                htar_settings.hpss_dir or f"covmocks/{name}",
                layout.htar_logs,
            )
        _tagmanifest(release_dir)
        _read_only([*layout.payload(), release_dir.root], umask)
        record_release(layout, {k: info[k] for k in ("release", "released_utc", "boxes",
                                                      "boxes_released", "payload_files",
                                                      "payload_bytes")})  # fmt: skip
    return release_dir


def htar_dry_run(campaign, settings: HtarSettings) -> list[str]:
    """The bundles a release's htar plan would make, from the files as they are now (sizes
    only, nothing hashed or written)."""
    layout = campaign.layout
    plan = make_plan(campaign)
    results = {n: _Sized((layout.root / n).stat().st_size) for n in bag.tree_files(layout.root)}
    release_dir = ReleaseLayout(layout.release(campaign.name, campaign.version))
    return htar.describe(_htar(campaign, release_dir, plan, results, settings))


@dataclasses.dataclass(frozen=True)
class _Sized:
    size: int
