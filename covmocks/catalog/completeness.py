"""Completeness limits that promise something: above a box's limit, the halos just below its
host mass cut would add less than ``MISSING_MAX`` of the galaxies.

The box populates a random subsample (fraction f) of the halos within ``PROBE_DEX`` below the
cut (``covmocks.box.probe``; those galaxies are counted, never written) and histograms them
like the catalog (``probe_mstar``, ``probe_sfr`` in the statistics). At each 0.1 dex bin edge T,
with N the catalog's galaxies above T and P the probe's, the missing fraction is
F = (P / f) / (N + P / f), its error the Poisson one of P: N sqrt(max(P, 1)) / f / (N + P/f)^2.
The limit is the lowest edge where F, and F at every higher edge, is below ``MISSING_MAX``.
Values log10(Msun) for M*, log10(Msun/yr) for SFR.
"""

from __future__ import annotations

import numpy as np

from covmocks.core.limits import PROBE_DEX

MISSING_MAX = 0.01  # the promise: halos below the cut add less than this fraction above a limit

# selection variable (the samples' ``select``) -> its catalog column: a stellar-mass threshold
# is an observer's, on the surviving mass (``covmocks.catalog.summary``)
SELECT_COLUMN = {"sfr": "log10_sfr", "mstar": "log10_mstar_surviving"}
# selection variable -> (the statistics' histogram of its column, the probe's histogram)
HISTOGRAM_OF = {"mstar": ("smf_all", "probe_mstar"), "sfr": ("sfr_all", "probe_sfr")}

DEFINITION = (
    f"log10_<x>_complete is the lowest 0.1 dex bin edge T such that, at T and every higher "
    f"edge, the galaxies of the halos within {PROBE_DEX} dex below the host mass cut would add "
    f"less than {MISSING_MAX:.0%} to the box's galaxies above it; estimated from a random "
    "subsample of those halos (fraction completeness_probe_fraction) populated with an "
    "independent random stream and not written to the catalog; log10_<x>_complete_missing is "
    "that fraction at T, _missing_err its Poisson 1-sigma error. Halos further below the cut "
    "and subhalos below log10_msub_min_msun are not counted. NaN: no host cut, or no probe."
)


def limit_name(select: str) -> str:
    """The attribute of the limit in selection variable ``select`` (mstar, sfr)."""
    return f"log10_{select}_complete"


def missing_fraction(main: np.ndarray, probe: np.ndarray, fraction: float):
    """Missing fraction and its 1-sigma error above each bin's lower edge, (n_bins,) each,
    from the catalog's and the probe's counts per bin (n_bins,) at sampling ``fraction``."""
    n = np.cumsum(main[::-1])[::-1].astype(np.float64)
    p = np.cumsum(probe[::-1])[::-1].astype(np.float64)
    added = p / fraction
    total = n + added
    with np.errstate(invalid="ignore", divide="ignore"):
        missing = np.where(total > 0, added / total, 0.0)
        error = np.where(total > 0, n * np.sqrt(np.maximum(p, 1.0)) / fraction / total**2, 0.0)
    return missing, error


def limit(main: np.ndarray, probe: np.ndarray, fraction: float, edges: np.ndarray) -> dict:
    """``value`` (the limit, a lower bin edge of ``edges``), ``missing`` and ``missing_err``
    there (module docstring); all NaN without a probe (``fraction`` NaN or 0) or galaxies."""
    if not (fraction > 0) or not (main.sum() + probe.sum()):
        return {"value": float("nan"), "missing": float("nan"), "missing_err": float("nan")}
    missing, error = (np.append(x, 0.0) for x in missing_fraction(main, probe, fraction))
    over = np.flatnonzero(missing >= MISSING_MAX)  # above the top edge: nothing, nothing missing
    i = int(over[-1]) + 1 if len(over) else int(np.flatnonzero(main + probe)[0])
    return {"value": float(edges[i]), "missing": float(missing[i]),
            "missing_err": float(error[i])}  # fmt: skip


def limits(counts: dict, fraction: float, edges: dict) -> dict:
    """Every selection variable's limit as attributes: ``log10_<x>_complete`` and its
    ``_missing``, ``_missing_err``; ``counts``: the statistics' histograms, ``edges`` by
    variable."""
    out = {}
    for select, (main_key, probe_key) in HISTOGRAM_OF.items():
        found = limit(counts[main_key], counts[probe_key], fraction, edges[select])
        name = limit_name(select)
        out |= {name: found["value"], f"{name}_missing": found["missing"],
                f"{name}_missing_err": found["missing_err"]}  # fmt: skip
    return out
