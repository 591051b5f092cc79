"""Whether a covariance file can serve an analysis (``verdict``), and its summary lines
(``summary``): what ``covmocks rehearse`` ends with.

A group (snapshot, sample or the joint vector, statistic) passes when its bins all hold
modes, its covariance is finite, symmetric and positive semi-definite (positive definite
where N > p + 1 makes that possible), and, for ``real`` and ``redshift``, the ratio of the
measured to the Gaussian variance in the low-k bins (the first quarter of the bins, at least
one; P0, P2 and P4) lies within the range N realizations allow for a Gaussian field, each
bin's few-mode kurtosis included (``covariance.gaussian.ratio_bounds``, 1e-3 false alarms
per group).
"""

from __future__ import annotations

import numpy as np

from covmocks.covariance import gaussian
from covmocks.covariance.ensemble import JOINT, STATISTICS

GAUSSIAN_CHECKED = ("real", "redshift")
ALPHA = 1e-3


def _groups(tree: dict):
    """(snapshot name, sample name, sample group) of every sample and joint group."""
    for zname in sorted((n for n in tree if n.startswith("z")), key=lambda n: float(n[1:])):
        for name, group in tree[zname].items():
            if isinstance(group, dict) and name != "attrs":
                yield zname, name, group


def _low_k(nk: int) -> np.ndarray:
    """Indices, in the data vector [P0, P2, P4], of the low-k bins the reference checks."""
    low = np.arange(max(1, nk // 4))
    return np.concatenate([low + i * nk for i in range(3)])


def _matrix_problems(cov: np.ndarray, n: int) -> list[str]:
    p = len(cov)
    if not np.isfinite(cov).all():
        return [f"{int(np.sum(~np.isfinite(np.diag(cov))))} of {p} variances not finite"]
    if not np.allclose(cov, cov.T, rtol=1e-10, atol=0):
        return ["not symmetric"]
    eig = np.linalg.eigvalsh(cov)
    scale = max(float(np.abs(eig).max()), np.finfo(float).tiny)
    if eig[0] < -1e-10 * scale:
        return [f"not positive semi-definite (smallest eigenvalue {eig[0]:.3g})"]
    if n > p + 1 and eig[0] <= 1e-12 * scale:
        return [f"singular although N = {n} > p + 1 = {p + 1}"]
    return []


def gaussian_check(stat: dict, n_modes: np.ndarray, dk) -> dict | None:
    """The low-k measured/Gaussian variance ratios against the range N allows for each
    (``covariance.gaussian.ratio_bounds``, with each bin's kurtosis): {"low", "high": the
    smallest and largest ratio, "lower", "upper": the loosest bounds, "outside": how many
    ratios lie outside their own bounds, "checked"}; None without a reference or with N < 3."""
    n = int(stat["attrs"]["n_realizations"])
    if "gaussian_diag_ratio" not in stat or n < 3 or dk is None:
        return None
    index = _low_k(len(n_modes))
    ratio = np.asarray(stat["gaussian_diag_ratio"])[index]
    kurtosis = gaussian.excess_kurtosis(n_modes, dk).ravel()[index]
    ok = np.isfinite(ratio) & np.isfinite(kurtosis)
    if not ok.any():
        return None
    ratio, kurtosis = ratio[ok], kurtosis[ok]
    lower, upper = gaussian.ratio_bounds(n, len(ratio), kurtosis, ALPHA)
    return {"low": float(ratio.min()), "high": float(ratio.max()),
            "lower": float(lower.min()), "upper": float(upper.max()),
            "outside": int(np.sum((ratio < lower) | (ratio > upper))),
            "checked": len(ratio)}  # fmt: skip


def _dk(tree: dict):
    return (tree.get("attrs", {}).get("estimator") or {}).get("dk_fundamentals")


def verdict(tree: dict, campaign=None) -> list[str]:
    """One line per problem (naming snapshot, sample and statistic); [] when the covariance
    passes. With ``campaign``, every sample it measures at every snapshot must be there."""
    problems = []
    snapshots = [n for n in tree if n.startswith("z")]
    if not snapshots:
        problems.append("no snapshot measured: the covariance is empty")
    if campaign is not None and campaign.clustering is not None:
        for z in campaign.science.redshifts:
            zname = f"z{z:.3f}"
            for s in campaign.clustering.samples:
                if s.measured_at(z) and s.name not in tree.get(zname, {}):
                    problems.append(f"{zname} {s.name}: not measured")
    for zname, name, group in _groups(tree):
        n_modes = np.asarray(tree[zname]["n_modes"])
        if np.any(n_modes <= 0):
            problems.append(f"{zname} {name}: {int(np.sum(n_modes <= 0))} k bins hold no mode")
        for stat in STATISTICS:
            s = group[stat]
            n = int(s["attrs"]["n_realizations"])
            where = f"{zname} {name} {stat} (N = {n}, p = {s['attrs']['p']})"
            problems += [f"{where}: {why}" for why in _matrix_problems(s["covariance"], n)]
            c = gaussian_check(s, n_modes, _dk(tree)) if name != JOINT else None
            if c and c["outside"]:
                problems.append(f"{where}: {c['outside']} of {c['checked']} low-k variances "
                                f"off the Gaussian reference by more than N allows (ratios "
                                f"{c['low']:.3g}..{c['high']:.3g})")  # fmt: skip
    return problems


def summary(tree: dict) -> list[str]:
    """One line per snapshot and sample: N, p, whether the covariance is positive definite,
    the low-k Gaussian ratio range, and the convergence verdict."""
    lines = []
    for zname, name, group in _groups(tree):
        n_modes = np.asarray(tree[zname]["n_modes"])
        parts = []
        for stat in GAUSSIAN_CHECKED:
            s = group[stat]
            c = gaussian_check(s, n_modes, _dk(tree)) if name != JOINT else None
            ratio = ("" if c is None else f", low-k var/Gaussian {c['low']:.2f}..{c['high']:.2f}"
                     f" ({c['outside']} of {c['checked']} outside the range N allows)")  # fmt: skip
            eig = np.linalg.eigvalsh(s["covariance"]) if np.isfinite(s["covariance"]).all() else [0]
            definite = "positive definite" if eig[0] > 0 else "singular"
            parts.append(f"{stat}: {definite}{ratio}, {s['attrs']['convergence']}")
        a = group[GAUSSIAN_CHECKED[0]]["attrs"]
        lines.append(f"{zname} {name}: N = {a['n_realizations']}, p = {a['p']}; "
                     + "; ".join(parts))  # fmt: skip
    return lines
