"""The Gaussian (disconnected) covariance of the multipoles of a periodic box: the reference
the measured covariance is checked against.

For a Gaussian field in a periodic box, each k bin's N_k = n_modes / 2 independent modes
(k and -k are one) give (Grieb et al. 2016, eq. 15, with the bin's sum over modes in place of
the integral over the shell)

    C_ll'(k) = (2l + 1)(2l' + 1) / N_k  < P(k, mu)^2 L_l(mu) L_l'(mu) >_modes,

zero between different bins, where P(k, mu) = sum_lambda P_lambda(k) L_lambda(mu) is the
measured power, shot noise included (covmocks never subtracts it, so P + 1/n of the formula
is the measured P itself). The average runs over the bin's lattice modes n (k = k_f n, line
of sight along z): few modes sample mu coarsely at low k, which matters there, twice: in the
average, and in the binned multipoles themselves, which are not P(mu)'s Legendre
coefficients there (``legendre_coefficients`` solves for those first).

The reference a measured covariance is compared with adds ``shot_noise_covariance``: the
boxes' multipoles keep their own shot noise V/N, whose scatter between boxes is a term
beside the Gaussian one (about N_k / N of it: large for sparse samples, where N_k, the
modes of a bin, approaches N, the objects of a box). The moments
<L_a L_b L_c L_d> of a bin depend only on its edges in units of k_f (``covmocks.clustering.power``:
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


def legendre_coefficients(poles: np.ndarray, dk: int) -> np.ndarray:
    """The Legendre coefficients P_lambda (3, nk) of P(k, mu) whose lattice bins give the
    binned multipoles ``poles`` (3, nk). A bin's estimator returns
    P_l = (2l + 1) sum_lambda <L_l L_lambda>_bin P_lambda, which equals P_lambda only where
    the bin's modes sample mu finely: an isotropic field gets P4 = 9 <L4>_bin P != 0 at low k
    (0.1 P at k_f). Solved per bin (pseudo-inverse: where a bin's modes take too few mu to
    tell L0, L2, L4 apart, any solution gives the same P(mu) on its modes)."""
    poles = np.asarray(poles, np.float64)
    _, moments = bin_moments(int(dk), poles.shape[1])
    w = 2 * np.array(POLES) + 1.0
    mix = w[None, :, None] * moments[..., 0, 0]  # (nk, l, lambda): (2l+1) <L_l L_lambda>
    out = np.full_like(poles, np.nan)
    for b, (m, p) in enumerate(zip(mix, poles.T, strict=True)):
        if np.isfinite(p).all():
            out[:, b] = np.linalg.pinv(m, rcond=1e-10) @ p
    return out


def covariance(poles: np.ndarray, n_modes: np.ndarray, dk: int) -> np.ndarray:
    """The Gaussian covariance (3 nk, 3 nk) of the data vector [P0(k), P2(k), P4(k)] from the
    mean binned multipoles ``poles`` (3, nk), (Mpc/h)^3 with shot noise, and the bins'
    ``n_modes`` (k and -k counted): P(k, mu) is rebuilt on the bin's modes from
    ``legendre_coefficients``. NaN where a bin has no mode or a pole is not finite."""
    coefficients = legendre_coefficients(poles, dk)
    nk = coefficients.shape[1]
    _, moments = bin_moments(int(dk), nk)
    w = 2 * np.array(POLES) + 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        n_k = np.asarray(n_modes, np.float64) / 2
        c = coefficients.T
        block = np.einsum("bx,by,bxycd->bcd", c, c, moments)  # <P^2 L_c L_d> over the modes
        block *= (w[:, None] * w[None, :])[None] / n_k[:, None, None]
    cov = np.zeros((3 * nk, 3 * nk))
    idx = np.arange(nk)
    for c in range(3):
        for d in range(3):
            cov[c * nk + idx, d * nk + idx] = block[:, c, d]
    return cov


def shot_noise_covariance(n_bins: int, dk: int, variance: float) -> np.ndarray:
    """The covariance (3 nk, 3 nk) the box-to-box scatter of the shot noise adds: each box's
    multipoles hold its own 1/n = V/N (not subtracted; each box normalized by its own count
    N), which enters a bin's P_l as (2l + 1) <L_l>_bin V/N, the same in every bin of a box;
    ``variance``: Var(V/N) over the boxes, (Mpc/h)^6. Relative to the Gaussian term about
    N_k / N where shot noise dominates: it matters for sparse samples."""
    _, moments = bin_moments(int(dk), n_bins)
    w = 2 * np.array(POLES) + 1.0
    u = (w[:, None] * moments[:, :, 0, 0, 0].T).ravel()  # (2l+1) <L_l>_bin, [P0, P2, P4]
    return float(variance) * np.outer(u, u)


def diag_ratio(measured: np.ndarray, gaussian: np.ndarray) -> np.ndarray:
    """diag(measured) / diag(gaussian), (p,); NaN where the reference is 0 or not finite."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.diag(measured) / np.diag(gaussian)


def excess_kurtosis(n_modes: np.ndarray, dk: int) -> np.ndarray:
    """Excess kurtosis (3, nk) of each binned multipole of a Gaussian field, from its N_k =
    n_modes / 2 independent exponential |delta_k|^2 weighted by L_l(mu):
    6 <L_l^4> / (<L_l^2>^2 N_k) (P taken as isotropic within the bin). It widens the scatter
    of a variance estimated from few modes: a bin of 9 modes has 0.7 (P0) to 1.5 (P2)."""
    n_k = np.asarray(n_modes, np.float64) / 2
    _, m = bin_moments(int(dk), len(n_k))
    l4 = np.array([m[:, i, i, i, i] for i in range(3)])
    l2 = np.array([m[:, i, i, 0, 0] for i in range(3)])
    with np.errstate(divide="ignore", invalid="ignore"):
        return 6 * l4 / (l2**2 * n_k[None, :])


def ratio_bounds(n: int, n_checked: int, kurtosis=0.0, alpha: float = 1e-3):
    """The range a measured-over-Gaussian variance ratio of N realizations stays in for a
    Gaussian field, for ``n_checked`` ratios together at false-alarm probability ``alpha``
    (Bonferroni): chi^2_nu / nu quantiles with nu = 2 / (2/(N - 1) + kurtosis/N), the
    effective degrees of freedom of a sample variance of a variable of that excess
    ``kurtosis`` (0: chi^2_{N-1}). Arrays of ``kurtosis`` give arrays of bounds. With one line
    of sight averaged over three axes the ratio scatters less: the bounds are conservative."""
    from scipy import stats

    q = alpha / (2 * max(n_checked, 1))
    nu = 2 / (2 / (n - 1) + np.maximum(np.asarray(kurtosis, np.float64), 0) / n)
    return stats.chi2.ppf(q, nu) / nu, stats.chi2.isf(q, nu) / nu
