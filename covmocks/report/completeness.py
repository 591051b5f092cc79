"""The report's Completeness section: each snapshot's completeness limits, and each
clustering sample's threshold against them (``covmocks.catalog.completeness``)."""

from __future__ import annotations

import numpy as np

from covmocks.catalog.completeness import MISSING_MAX
from covmocks.core.limits import PROBE_DEX
from covmocks.report.figures import table


def section(ens, cuts: dict) -> str:
    """HTML tables of the completeness limits per snapshot, and of each sample's threshold
    against its snapshot's limits (``cuts``: redshift label -> the snapshot's
    ``clustering.thresholds.SampleCut`` s, or None while a threshold is not fixed yet)."""

    def span(a):
        a = a[np.isfinite(a)]
        return "n/a" if not len(a) else f"{np.median(a):.2f} [{a.min():.2f}, {a.max():.2f}]"

    rows = [[f"z={e.label}", e.n, span(e.mstar_complete), span(e.sfr_complete),
             span(e.mhost_cut), span(e.msub_cut)] for e in ens]  # fmt: skip
    limits = table(["snapshot", "boxes", "log10 M* complete", "log10 SFR complete",
                    "log10 host cut", "log10 subhalo cut"], rows) + (
        "<p class=note>Median [min, max] over boxes, log10 Msun and log10 Msun/yr: above a "
        f"box's limit the halos within {PROBE_DEX:g} dex below its host cut would add less "
        f"than {MISSING_MAX:.0%} of the galaxies (measured in the box on a subsample of them; "
        "<code>covmocks.catalog.completeness</code>).</p>")  # fmt: skip
    rows = []
    for e in ens:
        by_select = {"mstar": e.mstar_complete, "sfr": e.sfr_complete}
        snapshot_cuts = cuts.get(e.label)
        for cut in snapshot_cuts or ():
            if cut.select == "all":
                rows.append([f"z={e.label}", cut.name, "all", "none", "n/a", "every box"])
                continue
            limit = by_select[cut.select]
            below = int(np.sum(~(cut.threshold >= limit)))  # an unknown limit counts as below
            rows.append([f"z={e.label}", cut.name, cut.select, f"{cut.threshold:.3f}",
                         span(limit), f"{below} of {e.n}"])  # fmt: skip
        if snapshot_cuts is None:
            rows.append([f"z={e.label}", "n/a", "", "not fixed yet", "", ""])
    if not rows:
        return limits
    return limits + table(["snapshot", "sample", "selection", "threshold", "limit",
                           "boxes below"], rows, left=3) + (
        "<p class=note>Each clustering sample's threshold against its snapshot's completeness "
        "limit in the sample's selection variable: the boxes whose limit lies above the "
        "threshold (or is unknown) are flagged <code>below_completeness</code>: above their "
        f"threshold, the halos below the cut would add {MISSING_MAX:.0%} or more of the "
        "galaxies.</p>")  # fmt: skip
