"""Where each clustering sample is cut at each snapshot (``SampleCut``): a threshold given in
the campaign file, or, for a number-density sample, one fixed once for the ensemble from the
snapshot's calibration boxes (``fix``) and kept in ``metadata/thresholds.json``, never
recomputed (``covmocks.clustering.samples`` says why).

The calibration boxes of a snapshot are its first ``clustering.calibration_boxes``
realizations in plan order (``calibration``); those that failed for good (or are blocked on
a missing input) are left out: the file names the boxes used.
"""

from __future__ import annotations

import dataclasses
import json
import logging

from covmocks.clustering import samples
from covmocks.core import files, provenance
from covmocks.core.layout import redshift_label

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SampleCut:
    """One sample at one snapshot: ``select`` (all, sfr, mstar) at or above ``threshold``
    (log10 Msun/yr or log10 Msun; None for all), and where the threshold came from."""

    name: str
    select: str
    threshold: float | None
    origin: str  # "given", "ensemble n(>=x) = n", or "none" (all galaxies)
    number_density: float | None = None  # the target, (h/Mpc)^3, of a number-density sample


def load(layout) -> dict:
    """``{redshift label: {sample name: entry}}`` of the fixed thresholds ({} if none yet)."""
    try:
        return json.loads(layout.thresholds.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


def cuts(clustering, redshift: float, fixed: dict) -> tuple[SampleCut, ...] | None:
    """The samples measured at ``redshift`` and their cuts; None while a number-density
    threshold of the snapshot is not fixed yet (``fixed``: ``load``)."""
    if clustering is None:
        return ()
    entries = fixed.get(redshift_label(redshift), {})
    out = []
    for s in clustering.samples:
        if not s.measured_at(redshift):
            continue
        threshold, density = s.at(redshift)
        if s.select == "all":
            out.append(SampleCut(s.name, s.select, None, "none"))
        elif density is None:
            out.append(SampleCut(s.name, s.select, float(threshold), "given"))
        elif s.name in entries:
            out.append(SampleCut(s.name, s.select, float(entries[s.name]["threshold"]),
                                 f"ensemble n(>=x) = {density:g} (h/Mpc)^3", density))  # fmt: skip
        else:
            return None
    return tuple(out)


def calibration(clustering, tasks) -> list:
    """The calibration tasks among ``tasks`` (one snapshot's, in plan order)."""
    return list(tasks)[: clustering.calibration_boxes]


def fix(campaign, redshift: float, done_tasks) -> dict:
    """Fix the number-density thresholds of one snapshot from the sample files of
    ``done_tasks`` (its calibration tasks that finished), write them to
    ``metadata/thresholds.json`` (atomically; entries already there are kept) and return
    the file's content. Raises ValueError when none finished or a margin was too small."""
    layout, label = campaign.layout, redshift_label(redshift)
    fixed = load(layout)
    wanted = [s for s in campaign.clustering.samples
              if s.measured_at(redshift) and s.at(redshift)[1] is not None
              and s.name not in fixed.get(label, {})]  # fmt: skip
    if not wanted:
        return fixed
    if not done_tasks:
        raise ValueError(f"z={label}: no calibration box finished: the number-density "
                         "thresholds cannot be fixed")  # fmt: skip
    boxes = [samples.read(layout.samples(t.task_id)) for t in done_tasks]
    entries = fixed.setdefault(label, {})
    for s in wanted:
        density = s.at(redshift)[1]
        x = samples.ensemble_threshold(boxes, s.name, s.select, density)
        entries[s.name] = {"threshold": x, "select": s.select, "number_density": density,
                           "boxes": [t.task_id for t in done_tasks],
                           "fixed_utc": provenance.utc_now()}  # fmt: skip
        log.info("z=%s sample %s: threshold %s >= %.4f (n = %g (h/Mpc)^3 over %d boxes)",
                 label, s.name, s.select, x, density, len(boxes))  # fmt: skip
    files.write_json(layout.thresholds, fixed)  # durable: the driver reads it back
    return fixed
