"""Ensemble outliers: boxes whose number density or stellar mass function strays from the
other boxes of their snapshot (``find``). Flagged, never failed: a covariance campaign wants
to know, and a scientist decides.

Each box is compared with the mean and standard deviation of the *other* boxes of its
snapshot (leave one out): with itself in its reference, no box of N could lie more than
(N-1)/sqrt(N) deviations off (1.8 for N=5), and one wild box would hide.

- Number density (all galaxies, per (Mpc/h)^3): one value per box.
- Stellar mass function: per 0.1 dex bin, the box's density against the others', in the bins
  above the snapshot's median completeness limit where the others average at least
  ``SMF_MIN_COUNT`` galaxies. Each bin's standard deviation is at least the Poisson one of the
  mean count (a handful of boxes can agree by chance far better than counting allows). The
  box's worst bin is reported.
"""

from __future__ import annotations

import collections
from typing import NamedTuple

import numpy as np

from covmocks.catalog.summary import MSTAR_EDGES
from covmocks.core.layout import redshift_label

N_SIGMA = 5.0  # outlier: this many standard deviations off the others' mean
MIN_BOXES = 5  # boxes a snapshot needs before outliers are called
SMF_MIN_COUNT = 10.0  # galaxies a mass-function bin needs (others' mean) to be compared
NUMBER_DENSITY = "number density"


class Outlier(NamedTuple):
    """One flagged statistic of one box: its ``value``, and the ``mean`` and ``std`` (ddof
    1, Poisson floor for the mass function) of the other boxes of its snapshot. Number
    densities per (Mpc/h)^3; the mass function per dex per (Mpc/h)^3."""

    task_id: str
    redshift: float
    statistic: str  # NUMBER_DENSITY, or "SMF log10 M* a-b" (Msun)
    value: float
    mean: float
    std: float

    @property
    def sigmas(self) -> float:
        if self.std > 0:
            return (self.value - self.mean) / self.std
        off = self.value - self.mean
        return 0.0 if off == 0 else float(np.copysign(np.inf, off))


def by_snapshot(records) -> list[tuple[str, list]]:
    """``(redshift label, its records)`` per snapshot, by increasing redshift."""
    groups = collections.defaultdict(list)
    for r in records:
        groups[redshift_label(r.redshift)].append(r)
    return sorted(groups.items(), key=lambda item: float(item[0]))


def leave_one_out(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (ddof 1) of all rows but row i, for every i: ``x`` of
    shape (boxes, ...) -> two arrays of that shape. Centred on the median first, so that
    one huge value costs no precision in the others' sums."""
    n = len(x)
    c = x - np.median(x, axis=0)
    total, squares = c.sum(axis=0), (c * c).sum(axis=0)
    mean = (total - c) / (n - 1)
    var = (squares - c * c - (n - 1) * mean**2) / (n - 2)
    return mean + (x - c), np.sqrt(np.maximum(var, 0.0))


def _number_density(group) -> list[Outlier]:
    x = np.array([r.number_density for r in group], np.float64)
    mean, std = leave_one_out(x)
    return [Outlier(r.task_id, r.redshift, NUMBER_DENSITY, float(x[i]), float(mean[i]),
                    float(std[i])) for i, r in enumerate(group)]  # fmt: skip


def _mass_function(group) -> list[Outlier]:
    counts = np.array([r.smf_all for r in group], np.float64)  # (boxes, bins)
    volume = np.array([r.values["volume_mpc3_per_h3"] for r in group], np.float64)
    dex = float(MSTAR_EDGES[1] - MSTAR_EDGES[0])
    phi = counts / dex / volume[:, None]
    mean, std = leave_one_out(phi)
    mean_count = mean * dex * volume[:, None]
    std = np.maximum(std, np.sqrt(np.maximum(mean_count, 0.0)) / dex / volume[:, None])
    limit = np.nanmedian([r.values["log10_mstar_complete"] for r in group])
    complete = MSTAR_EDGES[:-1] >= limit if np.isfinite(limit) else np.ones(phi.shape[1], bool)
    usable = complete[None, :] & (mean_count >= SMF_MIN_COUNT)
    z = np.where(usable, np.abs(phi - mean) / np.where(std > 0, std, np.inf), 0.0)
    out = []
    for i, r in enumerate(group):
        if not usable[i].any():
            continue
        b = int(np.argmax(z[i]))
        name = f"SMF log10 M* {MSTAR_EDGES[b]:.1f}-{MSTAR_EDGES[b + 1]:.1f}"
        out.append(Outlier(r.task_id, r.redshift, name, float(phi[i, b]), float(mean[i, b]),
                           float(std[i, b])))  # fmt: skip
    return out


def find(records, n_sigma: float = N_SIGMA, min_boxes: int = MIN_BOXES) -> list[Outlier]:
    """The statistics of ``records`` (``report.records.BoxRecord``: ``task_id``, ``redshift``,
    ``number_density``, ``smf_all`` counts, ``values``) more than ``n_sigma`` deviations from
    the other boxes of their snapshot, in snapshots of at least ``min_boxes`` boxes; by
    snapshot, then box, number density before mass function."""
    found = []
    for _, group in by_snapshot(records):
        if len(group) < max(min_boxes, 3):
            continue
        candidates = _number_density(group) + _mass_function(group)
        order = {r.task_id: i for i, r in enumerate(group)}
        flagged = [o for o in candidates if abs(o.sigmas) > n_sigma]
        found += sorted(flagged, key=lambda o: (order[o.task_id], o.statistic != NUMBER_DENSITY))
    return found
