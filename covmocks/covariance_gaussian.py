"""The Gaussian (disconnected) covariance of the multipoles of a periodic box: the reference
the measured covariance is checked against.

For a Gaussian field in a periodic box, each k bin's N_k = n_modes / 2 independent modes
(k and -k are one) give (Grieb et al. 2016, eq. 15, with the bin's sum over modes in place of
the integral over the shell)

    C_ll'(k) = (2l + 1)(2l' + 1) / N_k  < P(k, mu)^2 L_l(mu) L_l'(mu) >_modes,

zero between different bins, where P(k, mu) = sum_lambda P_lambda(k) L_lambda(mu) is the
measured power, shot noise included (covmocks never subtracts it, so P + 1/n of the formula
is the measured P itself). The average runs over the bin's lattice modes n (k = k_f n, line
of sight along z): few modes sample mu coarsely at low k, which matters there. The moments
<L_a L_b L_c L_d> of a bin depend only on its edges in units of k_f (``covmocks.power``:
(1/2 + j dk) k_f), not on the box size. P(k, mu) is truncated at l = 4.
"""

from __future__ import annotations

import functools

import numpy as np

POLES = (0, 2, 4)
# L_0, L_2, L_4 as polynomials in mu^2, coefficients of increasing powers
_LEGENDRE_MU2 = (np.array([1.0]), np.array([-0.5, 1.5]), np.array([3 / 8, -30 / 8, 35 / 8]))


def legendre(mu: np.ndarray) -> np.ndarray:
    """L_0, L_2, L_4 at ``mu``: (3, len(mu))."""
    mu2 = np.asarray(mu, np.float64) ** 2
    return np.array([np.ones_like(mu2), (3 * mu2 - 1) / 2, (35 * mu2**2 - 30 * mu2 + 3) / 8])


@functools.lru_cache(maxsize=16)
def bin_moments(dk: int, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(modes per bin (n_bins,), <L_a L_b L_c L_d> over each bin's lattice modes
    (n_bins, 3, 3, 3, 3)), bins (1/2 + j dk) k_f < |k| <= (1/2 + (j + 1) dk) k_f.

    Modes are counted by (n_z, n_x^2 + n_y^2): the number of (n_x, n_y) with a given
    n_x^2 + n_y^2 = m, times the n_z layers, so memory follows the radius squared."""
    edges2 = (0.5 + dk * np.arange(n_bins + 1)) ** 2
    r = int(np.ceil(np.sqrt(edges2[-1])))
    n = np.arange(-r, r + 1)
    m = (n[:, None] ** 2 + n[None, :] ** 2).ravel()
    per_m = np.bincount(m[m <= edges2[-1]])  # (n_x, n_y) pairs per n_x^2 + n_y^2
    m = np.flatnonzero(per_m)
    nz2 = (n**2)[:, None]  # every n_z layer, -r..r
    n2 = (nz2 + m[None, :]).ravel()
    weight = np.broadcast_to(per_m[m], (len(n), len(m))).ravel()
    mu2 = np.broadcast_to(nz2, (len(n), len(m))).ravel() / np.maximum(n2, 1)
    keep = (n2 > edges2[0]) & (n2 <= edges2[-1])
    n2, weight, mu2 = n2[keep], weight[keep], mu2[keep]
    which = np.searchsorted(edges2, n2, side="left") - 1
    # sums of w mu^(2j), j = 0..8, per bin: the products of four L_l are polynomials in mu^2
    powers = np.array([np.bincount(which, weight * mu2**j, minlength=n_bins) for j in range(9)])
    counts = powers[0]
    moments = np.empty((n_bins, 3, 3, 3, 3))
    for idx in np.ndindex(3, 3, 3, 3):
        poly = functools.reduce(np.convolve, (_LEGENDRE_MU2[i] for i in idx))
        moments[(slice(None), *idx)] = poly @ powers[: len(poly)] / counts
    return counts.astype(np.int64), moments


def covariance(poles: np.ndarray, n_modes: np.ndarray, dk: int) -> np.ndarray:
    """The Gaussian covariance (3 nk, 3 nk) of the data vector [P0(k), P2(k), P4(k)] from the
    mean multipoles ``poles`` (3, nk), (Mpc/h)^3 with shot noise, and the bins' ``n_modes``
    (k and -k counted). NaN where a bin has no mode or a pole is not finite."""
    poles = np.asarray(poles, np.float64)
    nk = poles.shape[1]
    _, moments = bin_moments(int(dk), nk)
    w = 2 * np.array(POLES) + 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        n_k = np.asarray(n_modes, np.float64) / 2
        block = np.einsum("bx,by,bxycd->bcd", poles.T, poles.T, moments)  # <P^2 L_c L_d>
        block *= (w[:, None] * w[None, :])[None] / n_k[:, None, None]
    cov = np.zeros((3 * nk, 3 * nk))
    idx = np.arange(nk)
    for c in range(3):
        for d in range(3):
            cov[c * nk + idx, d * nk + idx] = block[:, c, d]
    return cov


def diag_ratio(measured: np.ndarray, gaussian: np.ndarray) -> np.ndarray:
    """diag(measured) / diag(gaussian), (p,); NaN where the reference is 0 or not finite."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.diag(measured) / np.diag(gaussian)


def ratio_bounds(n: int, n_checked: int, alpha: float = 1e-3) -> tuple[float, float]:
    """The range a measured-over-Gaussian variance ratio of N realizations stays in for a
    Gaussian field, for ``n_checked`` ratios together at false-alarm probability ``alpha``:
    chi^2_{N-1} / (N - 1) quantiles (Bonferroni). With one line of sight averaged over three
    axes the ratio scatters less: the bounds are then conservative."""
    from scipy import stats

    q = alpha / (2 * max(n_checked, 1))
    return (float(stats.chi2.ppf(q, n - 1) / (n - 1)),
            float(stats.chi2.isf(q, n - 1) / (n - 1)))  # fmt: skip
