"""One box's clustering: its samples cut from its sample file and measured (``measure``),
written to its clustering record (``qa/<task>.pk.hdf5``, ``covmocks.clustering.power``). Never reads
the catalog.

A sample whose threshold lies below the box's completeness limit in its selection variable
(or ``all``, which holds every galaxy) is measured, and flagged ``below_completeness`` in
the record: its clustering misses the galaxies of the halos below the catalog's cuts.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import math
from pathlib import Path

import numpy as np

from covmocks.clustering import power, samples

log = logging.getLogger(__name__)


def settings(clustering) -> power.PowerSettings:
    """The estimator settings of a campaign's clustering section."""
    return power.PowerSettings(nmesh=clustering.nmesh, k_max=clustering.k_max,
                               dk=clustering.dk)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class ClusteringJob:
    """One box's measurement: its sample file, its record, the cuts of its snapshot
    (``covmocks.clustering.thresholds.SampleCut``) and the estimator's settings."""

    samples: Path
    record: Path
    cuts: tuple
    settings: power.PowerSettings

    @classmethod
    def for_task(cls, campaign, task, cuts) -> ClusteringJob:
        layout = campaign.layout
        return cls(layout.samples(task.task_id), layout.clustering(task.task_id), tuple(cuts),
                   settings(campaign.clustering))  # fmt: skip


def _selection(cut, attrs: dict) -> dict:
    """What the record says of a sample's selection, with its completeness flag."""
    if cut.select == "all":
        limit, below = math.nan, True
    else:
        limit = float(attrs.get(samples.COMPLETE_ATTR[cut.select], math.nan))
        below = not cut.threshold >= limit  # an unknown limit (NaN) counts as below
    return {
        "select": cut.select,
        "threshold": math.nan if cut.threshold is None else cut.threshold,
        "threshold_origin": cut.origin,
        "number_density_target": math.nan if cut.number_density is None else cut.number_density,
        "completeness_limit": limit,
        "below_completeness": bool(below),
    }


IDENTITY = ("task_id", "realization", "snapshot", "redshift", "snapshot_redshift", "seed",
            "model_name", "model_version", "box_size", "h", "Om0", "hubble_e")  # fmt: skip


def measure(job: ClusteringJob) -> dict:
    """Measure every sample of ``job`` and write its record; returns a summary (sample ->
    number of objects, below-completeness flag).

    calc_power runs ``gc.collect()`` three times per call: in a worker holding the diffsky
    stack (about 450,000 objects) each costs 0.2 s, 7 of the 8 s of a demo box's 12 spectra.
    The heap is frozen meanwhile (``gc.freeze``: those objects are not scanned) and thawed
    after, so nothing that becomes garbage is kept for good.
    """
    gc.freeze()
    try:
        return _measure(job)
    finally:
        gc.unfreeze()


def _measure(job: ClusteringJob) -> dict:
    box = samples.read(job.samples)
    attrs = box["attrs"]
    results = {}
    for cut in job.cuts:
        mask = samples.cut(box, cut.name, cut.select, cut.threshold)
        result = power.measure(
            box["pos"][mask].astype(np.float64), box["vel"][mask].astype(np.float64),
            float(attrs["box_size"]), float(attrs["redshift"]), float(attrs["hubble_e"]),
            job.settings,
        )  # fmt: skip
        result["selection"] = _selection(cut, attrs)
        results[cut.name] = result
        if result["selection"]["below_completeness"] and cut.select != "all":
            log.warning("%s: sample %s reaches below the completeness limit (%s >= %.3f, "
                        "limit %.3f)", attrs["task_id"], cut.name, cut.select, cut.threshold,
                        result["selection"]["completeness_limit"])  # fmt: skip
    power.write_record(job.record, results, {
        **{k: attrs[k] for k in IDENTITY if k in attrs},
        "samples_file": str(job.samples),
        "estimator": job.settings.describe(),  # JSON, in json_attributes
    })  # fmt: skip
    return {name: {"n_objects": int(r["n_objects"]),
                   "below_completeness": r["selection"]["below_completeness"]}
            for name, r in results.items()}  # fmt: skip
