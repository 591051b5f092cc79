"""The statistics of an ensemble of data vectors: mean, covariance, correlation, the
inverse-covariance corrections, and the convergence diagnostic with its noise reference.

One line of sight. A survey measures each galaxy along one line of sight; a periodic box is
measured along each of its three axes. ``single_los`` gives the covariance of ONE such
measurement, (C_x + C_y + C_z) / 3 from the per-axis data vectors (each C with ddof 1), which
is what a survey's data covariance corresponds to; ``estimate`` of the three-axis mean gives
the (smaller) covariance of the average of three measurements, a different product: for a
linear Kaiser field its variances are about 0.92, 0.08 and 0.54 of the single-axis ones for
P0, P2 and P4.

Inverse covariance. The Hartlap et al. (2007) factor (N - p - 2) / (N - 1) and the Percival
et al. (2014) A, B are stored, never applied: with n_theta fitted parameters,
m1 = (1 + B (p - n_theta)) / (1 + A + B (n_theta + 1)) scales the parameter covariance and
m2 = m1 / hartlap the scatter of best fits (their eqs. 18, 22);
A = 2 / ((N - p - 1)(N - p - 4)), B = (N - p - 2) / ((N - p - 1)(N - p - 4)).

Convergence. The ratio of the diagonal of the covariance of the first half of the
realizations to that of all of them scatters, for independent boxes, by sqrt(2 / N) (its
logarithm has variance 4/N + 2/N - 2 (2/N)); ``convergence`` compares the measured scatter
with that. The leading eigenvalues of the correlation matrix are compared with the largest
one pure noise gives, the Marchenko-Pastur edge (1 + sqrt(p / N))^2.
"""

from __future__ import annotations

import numpy as np

N_EIGEN = 5  # leading eigenvalues of the correlation matrices in the convergence diagnostic
MIN_JUDGED = 10  # realizations below which convergence is not judged
NOISE_LEVEL = 1.5  # median |ln(half/all)| / sqrt(2/N) above this: "not converged"


def covariance(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(covariance with ddof 1, correlation) of data vectors ``x`` (N, p); NaN for N < 2."""
    n, p = x.shape
    if n < 2:
        return np.full((p, p), np.nan), np.full((p, p), np.nan)
    d = x - x.mean(axis=0)
    cov = d.T @ d / (n - 1)
    return cov, correlation(cov)


def correlation(cov: np.ndarray) -> np.ndarray:
    sigma = np.sqrt(np.diag(cov))
    with np.errstate(divide="ignore", invalid="ignore"):
        return cov / np.outer(sigma, sigma)


def _leading(corr: np.ndarray) -> np.ndarray:
    if not np.isfinite(corr).all():
        return np.full(min(N_EIGEN, len(corr)), np.nan)
    return np.linalg.eigvalsh(corr)[::-1][:N_EIGEN]


def inverse_factors(n: int, p: int) -> dict:
    """Hartlap's factor and Percival et al. (2014)'s A, B (module docstring); NaN where the
    N they need is not reached, with a note saying so."""
    nan = float("nan")
    hartlap = (n - p - 2) / (n - 1) if n > p + 2 else nan
    a = 2 / ((n - p - 1) * (n - p - 4)) if n > p + 4 else nan
    b = (n - p - 2) / ((n - p - 1) * (n - p - 4)) if n > p + 4 else nan
    note = ""
    if n <= p + 2:
        note = (f"N = {n} <= p + 2 = {p + 2}: too few realizations for an inverse covariance "
                "(Hartlap and Percival factors NaN)")  # fmt: skip
    elif n <= p + 4:
        note = f"N = {n} <= p + 4 = {p + 4}: Percival factors NaN"
    return {"hartlap": hartlap, "percival_A": a, "percival_B": b, "hartlap_note": note,
            "percival_m1": "(1 + B (p - n_theta)) / (1 + A + B (n_theta + 1))",
            "percival_m2": "m1 / hartlap"}  # fmt: skip


def convergence(ratio: np.ndarray, n: int) -> dict:
    """The half-versus-all diagonal ratio against its noise level sqrt(2/N): the median of
    abs(ln ratio) / sqrt(2/N) (about 0.67 for pure noise), and the verdict."""
    level = float(np.sqrt(2.0 / n)) if n > 0 else float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(np.log(np.asarray(ratio, np.float64))) / level
    z = z[np.isfinite(z)]
    score = float(np.median(z)) if len(z) else float("nan")
    if n < MIN_JUDGED or not len(z):
        verdict = f"too few realizations to judge (N = {n} < {MIN_JUDGED})"
    elif score <= NOISE_LEVEL:
        verdict = "consistent with noise"
    else:
        verdict = "not converged"
    return {"half_noise_level": level, "half_score": score, "convergence": verdict}


def estimate(vectors: np.ndarray, realizations, *, per_axis: bool = False) -> dict:
    """Mean, covariance, correlation, inverse-covariance factors and convergence diagnostic.

    ``vectors``: (N, p) data vectors, one per realization; or with ``per_axis``, (N, 3, p),
    one per realization and line of sight: then the covariance is the single line-of-sight
    one, (C_x + C_y + C_z) / 3, and the mean is over all 3N measurements. The first half is
    the N // 2 lowest ``realizations``.
    """
    x = np.asarray(vectors, np.float64)
    n, p = x.shape[0], x.shape[-1]
    cov, corr = single_los(x) if per_axis else covariance(x)
    half = x[np.argsort(np.asarray(realizations), kind="stable")[: n // 2]]
    cov_half, corr_half = single_los(half) if per_axis else covariance(half)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.diag(cov_half) / np.diag(cov)
    edge = (1 + np.sqrt(p / n)) ** 2 if n else float("nan")
    eig = _leading(corr)
    attrs = {"n_realizations": n, "p": p, "n_half": len(half),
             "n_measurements": n * (3 if per_axis else 1),
             "eigenvalue_noise_edge": edge,
             "n_eigenvalues_above_noise": int(np.sum(eig > edge)),
             **inverse_factors(n, p), **convergence(ratio, n)}  # fmt: skip
    return {"mean": x.reshape(-1, p).mean(axis=0), "covariance": cov, "correlation": corr,
            "eigenvalues": eig, "eigenvalues_half": _leading(corr_half),
            "diag_ratio_half": ratio, "attrs": attrs}  # fmt: skip


def single_los(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(covariance, correlation) of one line of sight from per-axis vectors (N, 3, p):
    the mean of the three axes' covariances (each ddof 1)."""
    cov = np.mean([covariance(x[:, a])[0] for a in range(x.shape[1])], axis=0)
    return cov, correlation(cov)
