"""Writing a campaign directory: its metadata and manifest (``covmocks plan``), and the check
that a re-plan does not change what fixes existing catalogs. Paths: ``covmocks.core.layout``."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path

from covmocks.campaign import Campaign
from covmocks.core import files, provenance
from covmocks.core.errors import CovmocksError, OutputError
from covmocks.core.layout import Layout
from covmocks.workflow import k_bins
from covmocks.workflow.plan import Plan, dir_names, make_plan


def _write_json(path: Path, data) -> None:
    files.write_json(path, data, indent=2)


def science_digest(record: dict) -> str:
    """sha256 of the canonical JSON of a science record."""
    text = json.dumps(record, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def has_catalogs(layout: Layout) -> bool:
    """Whether ``catalogs/`` holds any ``*.hdf5`` file (stops at the first)."""
    for rdir in dir_names(layout.catalogs):
        if any(n.endswith(".hdf5") for n in dir_names(layout.catalogs / rdir)):
            return True
    return False


# Keys of science records written before a version could grow: they named which boxes and
# where their halos lay, which no longer fixes a box's content (``Campaign.science_record``).
RETIRED = ("science.realizations", "science.redshifts", "science.input", "science.cleaning")


def _locked(record: dict, model_recorded: tuple[str, ...]) -> dict:
    """The values of a science record (as written by any version of covmocks) that fix a
    box's content, for comparison: retired keys out, model parameters that change catalogs
    only, the input's identity where known."""
    out = {k: v for k, v in record.items() if k not in RETIRED}
    if "science.cleaning" in record and "science.cleaned" not in record:
        out["science.cleaned"] = record["science.cleaning"] is not None
    if isinstance(out.get("science.model_params"), dict):
        params = out["science.model_params"]
        out["science.model_params"] = {k: v for k, v in params.items() if k in model_recorded}
    if out.get("input") is None:
        out.pop("input", None)
    return out


def input_identity(campaign: Campaign, plan: Plan) -> dict | None:
    """What identifies the halos the boxes read, wherever they lie: the simulation (its
    name without the phase, for AbacusSummit), box size (Mpc/h) and cosmology, from the
    header of the first box whose input is there; None for synthetic halos (their record
    holds their definition) or where no input is there yet."""
    from covmocks.box.spec import BoxSpec

    if campaign.science.source == "synthetic":
        return None
    task = next((t for t in plan.tasks if t.state != "blocked"), None)
    if task is None:
        return None
    header = BoxSpec.for_task(campaign, task).open_source().header
    cosmology = header.cosmology
    identity = {"box_size": float(header.box_size), "h": cosmology.h, "Om0": cosmology.Om0,
                "omega_b": cosmology.omega_b, "w0": cosmology.w0, "wa": cosmology.wa}  # fmt: skip
    if campaign.science.source == "abacus":
        identity["simulation"] = re.sub(r"_ph\d+$", "", header.sim_name)
    return {k: v if isinstance(v, str) else float(v) for k, v in identity.items()}


def science_record(campaign: Campaign, plan: Plan) -> dict:
    """The campaign's science record, its input's identity (``input_identity``) added."""
    record = json.loads(json.dumps(campaign.science_record, default=str))
    return record | {"input": input_identity(campaign, plan)}


def check_science(campaign: Campaign, record: dict) -> None:
    """Refuse to re-plan a campaign that has catalogs if what fixes their content changed
    (``record``, from ``science_record``, against ``metadata/science.json``). The set of
    boxes may change: realizations and snapshots added, or excluded (their catalogs are set
    aside, ``Plan.set_aside``), and the input data may move."""
    from covmocks.galaxies.registry import MODELS

    layout = campaign.layout
    meta = layout.science
    try:
        recorded = json.loads(meta.read_text(encoding="utf-8"))["record"]
    except FileNotFoundError:
        return
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if has_catalogs(layout):
            raise CovmocksError(f"{meta} is unreadable ({exc}); cannot check the science of a "
                                "campaign that has catalogs") from None  # fmt: skip
        return
    model = MODELS.get(campaign.science.model)
    params = model.recorded if model else ()
    now, before = _locked(record, params), _locked(recorded, params)
    changed = sorted(k for k in set(before) & set(now) if before[k] != now[k])
    if not changed or not has_catalogs(layout):
        return
    raise CovmocksError(
        f"{campaign.path}: campaign {campaign.name} version {campaign.version} already has "
        f"catalogs in {layout.catalogs}, made with different values of "
        f"{', '.join(changed)} (recorded in {meta}); bump campaign.version to start a new "
        "campaign directory, or restore the recorded values"
    )


def released(layout: Layout) -> dict | None:
    """The record of this version's release (``covmocks release``), or None if unreleased.
    A record that cannot be read still counts as a release (``{}``): frozen is the safe side."""
    try:
        record = json.loads(layout.release_record.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def refuse_if_released(campaign: Campaign) -> None:
    """One line naming the release where ``campaign``'s version is released (nothing in it
    may change: the driver, retry, ``generate --campaign`` into it, covariance)."""
    record = released(campaign.layout)
    if record is None:
        return
    where = record.get("release", campaign.layout.release_record)
    raise CovmocksError(
        f"campaign {campaign.name} version {campaign.version} is released ({where}, "
        f"{record.get('released_utc', 'time unknown')}): a released version does not change; "
        "bump campaign.version for a new version"
    )


def record_release(layout: Layout, record: dict) -> None:
    """Mark this version released (``metadata/release.json``): from now on it is frozen."""
    _write_json(layout.release_record, record)


def _write_metadata(campaign: Campaign, plan: Plan, record: dict) -> None:
    layout = campaign.layout
    files.write_text(layout.campaign_file, campaign.text)
    _write_json(layout.config, {"values": campaign.config(), "sources": campaign.sources()})
    _write_json(layout.science, {"sha256": science_digest(record), "record": record})
    _write_json(layout.provenance, {
        "software": provenance.software_versions(),
        "git_commit": provenance.git_commit(),
        **provenance.environment(),
    })  # fmt: skip
    files.write_text(layout.manifest, (f"{json.dumps(t.manifest_row())}\n" for t in plan.tasks))
    _write_json(layout.plan_summary, {
        "campaign": f"{campaign.name}_{campaign.version}",
        "planned_utc": provenance.utc_now(),
        "tasks": len(plan.tasks),
        "counts": plan.counts,
        "manifest": layout.manifest.name,
    })  # fmt: skip


@contextlib.contextmanager
def umask(value: str):
    """Create files and directories with the campaign's ``execution.umask`` (octal text)."""
    old = os.umask(int(value, 8))
    try:
        yield
    finally:
        os.umask(old)


def write_plan(campaign: Campaign) -> Plan:
    """``covmocks plan``: create the campaign directory, check the k bins against every
    snapshot's box (``covmocks.workflow.k_bins``), then (re)write its metadata and manifest. Never
    touches catalogs, QA records or logs. Refuses a released version."""
    refuse_if_released(campaign)
    layout = campaign.layout
    plan = make_plan(campaign, check_sizes=True)
    record = science_record(campaign, plan)
    check_science(campaign, record)
    k_bins.check(campaign, plan)  # before anything is written
    try:
        with umask(campaign.execution.umask):
            for sub in layout.subdirs():
                sub.mkdir(parents=True, exist_ok=True)
            _write_metadata(campaign, plan, record)
    except OSError as exc:
        raise OutputError(f"cannot write campaign directory {layout.root}: {exc}") from None
    return plan


def read_manifest(layout: Layout) -> list[dict]:
    """The manifest rows of a planned campaign directory."""
    path = layout.manifest
    try:
        with path.open(encoding="utf-8") as f:
            return [json.loads(line) for line in f]
    except FileNotFoundError:
        raise CovmocksError(f"{path}: no manifest; run covmocks plan first") from None
