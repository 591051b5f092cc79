"""The covariance's physics, checked against calculations made here, independently of
``covmocks.covariance.gaussian`` (nothing below is fitted or tuned):

1. Poisson boxes through the real estimator (``power.multipoles``, then
   ``covariance.statistics``): the ensemble-mean multipoles are the shot noise, the measured
   covariance is the analytic Poisson one bin by bin and pooled, zero between k bins, and so
   is the Gaussian reference from the mean multipoles; the three-axis mean of P0, P2, P4 has
   the variance the lattice predicts (1, 0, ~7/12).
2. A Gaussian field drawn mode by mode on the lattice (no particles, no FFT): each
   independent mode n (n and -n are one) holds |delta|^2 = P_lin E, E a unit exponential (the
   square modulus of a complex Gaussian), seen along axis a as the linear Kaiser power
   (b + f mu_a^2)^2 |delta|^2, mu_a = n_a / |n|; per-axis multipoles
   P_l^a = (2l + 1) <|delta_s|^2 L_l(mu_a)> over each bin's modes. The variance of the mean
   over the three axes relative to one line of sight matches linear theory on the same modes
   (continuum: 0.92, 0.08, 0.54 for P0, P2, P4), and the single line-of-sight covariance is
   the Gaussian one, and so is the reference from its mean multipoles.

Theory. A bin's P_l^a = sum_j A_laj E_j over its independent modes j, with loadings
A_laj = (2l + 1) P_j K_aj^2 L_l(mu_aj) / N_k (N_k = n_modes / 2, K = b + f mu^2), so
E[P_l^a] = sum_j A_laj and Cov = sum_j A_laj A_l'bj. A linear functional tr(G S) of the
sample covariance S (ddof 1) of N draws has the exact sampling covariance
6/N sum_j (A_j G A_j)(A_j H A_j) + 2 tr(G C H C) / (N - 1) (fourth cumulant 6 of E): the
error bars below. Poisson points in a box are such a field with P = 1/n, b = 1, f = 0, to
N_k / N_objects (< 1% here).

The reference. On the lattice a bin's measured multipole is
(2l + 1) sum_lam <L_l L_lam>_bin P_lam, not P(mu)'s Legendre coefficient P_l: an isotropic
field gets P4 = 9 <L4>_bin P != 0 (0.097 P at k = k_f). Read as P(mu)'s coefficients, these
multipoles give a reference 2.4 (P2), 2.2 (P4), 1.36 (P0) times the true variances at k_f,
18% (P2) too large at 3 k_f, and +-(3-10)% off in P2 in scattered bins up to ~20 k_f;
covariance_gaussian.legendre_coefficients solves for the coefficients first, and the tests
check its reference against the lattice sums, exactly and through the ensembles' means.

calc_power compiles with numba on its first call (~20-50 s on 2 cores): one module fixture
pays it; the 200 boxes' 800 calls on a 32^3 mesh then take ~7 s with one numba thread or
OMP_WAIT_POLICY=passive, but 30-70 s with numba's default spinning OpenMP threads on a busy
2-core machine.
"""

import functools
import gc

import numpy as np
import pytest
from scipy import stats

from covmocks.clustering.power import PowerSettings, multipoles
from covmocks.covariance import ensemble, estimators, gaussian

BOX = 500.0  # Mpc/h
NMESH = 32
DK1 = PowerSettings(nmesh=NMESH)  # k_max = 8 k_f: 7 bins k_f wide, centres k_f .. 7 k_f
DK2 = PowerSettings(nmesh=NMESH, dk=2)  # 3 bins 2 k_f wide, centres 1.5, 3.5, 5.5 k_f
NB1, NB2 = 7, 3
BOXES, N_OBJECTS = 200, 50000
SHOT = BOX**3 / N_OBJECTS
W = np.array([1.0, 5.0, 9.0])  # 2 l + 1

BIAS, GROWTH = 1.5, 0.87  # Kaiser: P_s(k, mu) = (b + f mu^2)^2 P_lin
P_LIN = 1.0e4  # (Mpc/h)^3, constant: the bins' multipoles are then exactly degree 4 in mu
REALIZATIONS, NB_FIELD = 1000, 16  # bins k_f .. 16 k_f
HIGH_K = slice(6, None)  # 7 k_f .. 16 k_f: >= 300 independent modes a bin
SIGMA = 4.5  # per element
ALPHA = 1e-4  # pooled chi-square tails


# --- theory on the lattice --------------------------------------------------------------


def legendre(mu2):
    """L_0, L_2, L_4 of mu^2 (any shape): (3, *shape)."""
    mu2 = np.asarray(mu2, np.float64)
    return np.array([np.ones_like(mu2), (3 * mu2 - 1) / 2, (35 * mu2**2 - 30 * mu2 + 3) / 8])


@functools.lru_cache(maxsize=8)
def half_lattice(dk: int, nb: int):
    """The independent modes of the bins (1/2 + j dk) < |n| <= (1/2 + (j + 1) dk), j < nb:
    one n of each pair (n, -n), the one whose first nonzero component is positive. Returns
    mu_a^2 (3, m) for a = x, y, z, each mode's bin (m,), and each bin's count N_k (nb,)."""
    edges2 = (0.5 + dk * np.arange(nb + 1)) ** 2
    g = np.arange(-dk * nb, dk * nb + 1)
    n = np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3)
    n2 = (n**2).sum(axis=1)
    first = n[np.arange(len(n)), np.argmax(n != 0, axis=1)]
    keep = (n2 > edges2[0]) & (n2 <= edges2[-1]) & (first > 0)
    n, n2 = n[keep], n2[keep]
    bins = np.searchsorted(edges2, n2, side="left") - 1
    return (n**2 / n2[:, None]).T, bins, np.bincount(bins, minlength=nb)


def loadings(dk: int, nb: int, power: float, bias: float = 1.0, growth: float = 0.0):
    """A (3 poles, 3 axes, m modes): P_l^a of a bin = sum over its modes j of A_laj E_j."""
    mu2, bins, n_k = half_lattice(dk, nb)
    return W[:, None, None] * power * (bias + growth * mu2) ** 2 * legendre(mu2) / n_k[bins]


def theory(a, dk: int, nb: int):
    """E[P_l^a] (3, 3, nb) and Cov(P_l^a, P_l'^b) per bin (nb, 3, 3, 3, 3) [l, a, l', b]."""
    bins = half_lattice(dk, nb)[1]
    mean = np.array([[np.bincount(bins, a[p, x], nb) for x in range(3)] for p in range(3)])
    cov = np.array([np.einsum("lam,kbm->lakb", a[..., bins == b], a[..., bins == b])
                    for b in range(nb)])  # fmt: skip
    return mean, cov


def z_covariance(cov):
    """The (3 nb, 3 nb) covariance of [P0, P2, P4] along z, zero between bins."""
    nb = len(cov)
    out = np.zeros((3, nb, 3, nb))
    for b in range(nb):
        out[:, b, :, b] = cov[b, :, 2, :, 2]
    return out.reshape(3 * nb, 3 * nb)


def sampling_cov(a, forms, n: int):
    """Covariance of the functionals tr(G S) (``forms`` (f, d, d), symmetric) of the sample
    covariance S (ddof 1, n draws) of x = a E, a (d, m), E independent unit exponentials."""
    c = a @ a.T
    q = np.einsum("fij,im,jm->fm", forms, a, a)
    return 6 * q @ q.T / n + 2 * np.einsum("fij,jk,gkl,li->fg", forms, c, forms, c) / (n - 1)


def ratio_sigma(a, forms, n: int):
    """The standard deviation of the ratio tr(G0 S) / tr(G1 S) of two functionals, relative
    to its expectation (linearized)."""
    c = a @ a.T
    expect = np.einsum("fij,ij->f", forms, c)
    v = sampling_cov(a, forms, n) / np.outer(expect, expect)
    return float(np.sqrt(max(v[0, 0] + v[1, 1] - 2 * v[0, 1], 0.0)))


def moments(dk: int, nb: int):
    """<L_x L_y L_c L_d>_bin along z over each bin's modes: (nb, 3, 3, 3, 3)."""
    mu2, bins, n_k = half_lattice(dk, nb)
    leg = legendre(mu2[2])
    out = np.array([np.einsum("xm,ym,cm,dm->xycd", *(leg[:, bins == b],) * 4) for b in range(nb)])
    return out / n_k[:, None, None, None, None]


def deconvolved(poles, dk: int):
    """The P_lam (3, nb) whose lattice bins give the measured ``poles`` (3, nb) (what
    covariance_gaussian.legendre_coefficients does, computed independently): solves
    poles_l = (2l + 1) sum_lam <L_l L_lam>_bin P_lam (pinv: a low-k bin's modes may take
    too few mu to tell L0, L2, L4 apart, and then any solution gives the same P(mu) there)."""
    mix = W[None, :, None] * moments(dk, poles.shape[1])[..., 0, 0]  # (nb, l, lam)
    return np.array(
        [np.linalg.pinv(m, rcond=1e-10) @ p for m, p in zip(mix, poles.T, strict=True)]
    ).T


def reference_sigma(poles, cov_mean, dk: int):
    """The standard deviation (3 nb,) of the diagonal of the Gaussian reference from the mean
    binned multipoles ``poles`` (3, nb), from their noise ``cov_mean`` (nb, 3, 3): the
    gradient of (2l + 1)^2 / N_k <P(mu)^2 L_l^2> through ``deconvolved``."""
    nb = poles.shape[1]
    m4, n_k = moments(dk, nb), half_lattice(dk, nb)[2]
    mix = W[None, :, None] * m4[..., 0, 0]
    true = deconvolved(poles, dk)
    out = np.zeros((3, nb))
    for b in range(nb):
        grad = 2 * W[:, None] ** 2 / n_k[b] * np.einsum("xycc,y->cx", m4[b], true[:, b])
        grad = grad @ np.linalg.pinv(mix[b], rcond=1e-10)  # d diag / d measured poles
        out[:, b] = np.sqrt(np.einsum("cx,xy,cy->c", grad, cov_mean[b], grad))
    return out.ravel()


def kaiser_poles(bias: float, growth: float, power: float):
    """The Kaiser power's Legendre coefficients (3,): (b + f mu^2)^2 = sum_l c_l L_l."""
    b, f = bias, growth
    return power * np.array([b * b + 2 * b * f / 3 + f * f / 5, 4 * b * f / 3 + 4 * f * f / 7,
                             8 * f * f / 35])  # fmt: skip


def continuum_ratios(bias: float, growth: float):
    """Var(mean of the 3 axes' P_l) / Var(one axis' P_l), l = 0, 2, 4, for a Gaussian field
    with P(k, mu) = (b + f mu^2)^2 P: integrals over the sphere (Gauss-Legendre in cos theta,
    uniform in phi: exact for these polynomials)."""
    x, wx = np.polynomial.legendre.leggauss(16)
    phi = 2 * np.pi * np.arange(32) / 32
    ct, ph = (v.ravel() for v in np.meshgrid(x, phi, indexing="ij"))
    weight = np.repeat(wx, 32) / 64
    st = np.sqrt(1 - ct**2)
    mu2 = np.array([st * np.cos(ph), st * np.sin(ph), ct]) ** 2
    y = (bias + growth * mu2) ** 2 * legendre(mu2)  # (l, a, points)
    c = np.einsum("lan,lbn,n->lab", y, y, weight)
    return c.sum(axis=(1, 2)) / 9 / (np.trace(c, axis1=1, axis2=2) / 3)


def mean3_ratios(a, dk: int, nb: int, n: int):
    """Var(mean of the 3 axes) / Var(one axis) of each P_l on the lattice (3, nb), and its
    relative sampling error with n draws (3, nb) (NaN where the ratio is 0)."""
    bins = half_lattice(dk, nb)[1]
    forms = np.array([np.full((3, 3), 1 / 9), np.eye(3) / 3])
    ratio, rel = np.zeros((3, nb)), np.full((3, nb), np.nan)
    for ell in range(3):
        for b in range(nb):
            ab = a[ell][:, bins == b]
            c = ab @ ab.T
            ratio[ell, b] = c.sum() / 9 / (np.trace(c) / 3)
            if ratio[ell, b] > 1e-12:
                rel[ell, b] = ratio_sigma(ab, forms, n)
    return ratio, rel


def diag_ratio_cov(a, dk: int, nb: int, n: int):
    """The sampling covariance (nb, 3, 3) of measured / expected variance of P0, P2, P4 in
    each bin: ``a`` (3, m) loadings of one line of sight, or (3, 3, m) of the three axes,
    whose single line-of-sight variance (the mean of the axes') is meant."""
    bins = half_lattice(dk, nb)[1]
    axes = 1 if a.ndim == 2 else a.shape[1]
    forms = np.zeros((3, 3 * axes, 3 * axes))
    for ell in range(3):
        idx = ell * axes + np.arange(axes)
        forms[ell, idx, idx] = 1 / axes
    flat = a.reshape(3 * axes, -1)
    out = np.zeros((nb, 3, 3))
    for b in range(nb):
        ab = flat[:, bins == b]
        expect = np.einsum("fij,ij->f", forms, ab @ ab.T)
        out[b] = sampling_cov(ab, forms, n) / np.outer(expect, expect)
    return out


def assert_ratio_one(ratio, blocks, what):
    """``ratio`` (3, nb) measured / expected variances is 1 within its sampling covariance
    ``blocks`` (nb, 3, 3) (independent between bins): per element at SIGMA, and pooled: the
    chi-square and the mean over all elements."""
    dev = ratio - 1
    sigma = np.sqrt(np.einsum("bii->ib", blocks))
    assert np.all(np.abs(dev) < SIGMA * sigma), (what, (dev / sigma).round(2))
    chi2 = sum(d @ np.linalg.solve(c, d) for d, c in zip(dev.T, blocks, strict=True))
    assert stats.chi2.sf(chi2, dev.size) > ALPHA, (what, chi2, dev.size)
    mean_sigma = np.sqrt(blocks.sum()) / dev.size
    assert abs(dev.mean()) < SIGMA * mean_sigma, (what, dev.mean(), mean_sigma)


def assert_uncorrelated_between_bins(corr, nb: int, n: int, what):
    """The correlations between different k bins vanish: Fisher's z, atanh(r) sqrt(n - 3),
    is N(0, 1) for each, at SIGMA, and their chi-square."""
    pole_bin = np.arange(3 * nb) % nb
    i, j = np.triu_indices(3 * nb, 1)
    other = pole_bin[i] != pole_bin[j]
    z = np.arctanh(corr[i[other], j[other]]) * np.sqrt(n - 3)
    assert np.all(np.abs(z) < SIGMA), (what, np.abs(z).max())
    assert stats.chi2.sf(np.sum(z**2), z.size) > ALPHA, (what, np.sum(z**2), z.size)


# --- calc_power ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def estimator():
    """calc_power compiled once; the heap then frozen (calc_power calls gc.collect three
    times a call)."""
    multipoles(np.random.default_rng(0).random((100, 3)) * BOX, BOX, DK1)
    gc.freeze()
    yield
    gc.unfreeze()


def poisson_ensemble(boxes: int, seed: int) -> dict:
    """``boxes`` boxes of N_OBJECTS uniform points: multipoles along x, y, z (dk = 1) and
    along z (dk = 2), and covariance.statistics of the dk = 1 vectors ("real": along z)."""
    rng = np.random.default_rng(seed)
    axes, dk2 = [], []
    for _ in range(boxes):
        pos = (rng.random((N_OBJECTS, 3)) * BOX).astype(np.float32)
        got = [multipoles(pos, BOX, DK1, los_axis=axis) for axis in range(3)]
        axes.append([g["poles"].ravel() for g in got])
        two = multipoles(pos, BOX, DK2)
        dk2.append(two["poles"].ravel())
    axes = np.array(axes)  # (B, 3, 3 NB1)
    samples = [{"real": x[2], "redshift": x} for x in axes]
    realizations = np.arange(boxes)
    return {
        "axes": axes,
        "dk2": np.array(dk2),
        "n_modes": (got[0]["n_modes"], two["n_modes"]),
        "stats": ensemble.statistics(samples, realizations, got[0]["n_modes"], 1),
        "stats2": estimators.estimate(np.array(dk2), realizations),
    }


@pytest.fixture(scope="module")
def poisson(estimator):
    return poisson_ensemble(BOXES, 2024)


def gaussian_field(n: int, seed: int, nb: int = NB_FIELD) -> dict:
    """``n`` lattice Gaussian fields with Kaiser redshift-space distortions along each axis:
    per-axis vectors (n, 3, 3 nb), and their single line-of-sight and three-axis mean
    statistics (covariance_stats.estimate)."""
    a = loadings(1, nb, P_LIN, BIAS, GROWTH)
    bins = half_lattice(1, nb)[1]
    m = len(bins)
    to_bins = np.zeros((m, 3, 3, nb))  # [mode, axis, pole, bin]
    to_bins[np.arange(m), :, :, bins] = a.transpose(2, 1, 0)
    to_bins = to_bins.reshape(m, -1)
    rng = np.random.default_rng(seed)
    chunks = [min(250, n - i) for i in range(0, n, 250)]
    vectors = np.concatenate([rng.standard_exponential((c, m)) @ to_bins for c in chunks])
    vectors = vectors.reshape(n, 3, 3 * nb)
    realizations = np.arange(n)
    return {
        "a": a,
        "vectors": vectors,
        "single": estimators.estimate(vectors, realizations, per_axis=True),
        "mean3": estimators.estimate(vectors.mean(axis=1), realizations),
    }


@pytest.fixture(scope="module")
def field():
    return gaussian_field(REALIZATIONS, 77)


# --- deterministic: covariance_gaussian against the lattice sums -----------------------------


def test_continuum_three_axis_ratios():
    """The continuum ratios Var(mean3) / Var(one axis) of covariance_stats' docstring hold for
    b = 1.5, f = 0.87 (no shot noise); an isotropic field gives 1, 0 (L2(mu_x) + L2(mu_y) +
    L2(mu_z) = 0 mode by mode) and 7/12."""
    np.testing.assert_array_equal(continuum_ratios(BIAS, GROWTH).round(2), [0.92, 0.08, 0.54])
    np.testing.assert_allclose(continuum_ratios(1.0, 0.0), [1, 0, 7 / 12], atol=1e-12)


CASES = [(1, 7), (2, 3), (1, 16), (3, 5)]  # (dk, bins): the Poisson boxes', the field's, wider


@pytest.mark.parametrize("dk, nb", CASES)
def test_bin_moments_are_the_lattice_averages(dk, nb):
    """covariance_gaussian.bin_moments counts each bin's modes (k and -k) and averages
    L_a L_b L_c L_d over them as the enumeration here does."""
    counts, got = gaussian.bin_moments(dk, nb)
    np.testing.assert_array_equal(counts, 2 * half_lattice(dk, nb)[2])
    np.testing.assert_allclose(got, moments(dk, nb), rtol=0, atol=1e-12)


@pytest.mark.parametrize("dk, nb", CASES)
def test_legendre_coefficients_undo_the_binning(dk, nb):
    """From the multipoles a field's bins give on average, legendre_coefficients recovers
    P(mu) on every mode of the bin (Poisson: 1/n; Kaiser: (b + f mu^2)^2 P_lin); and for
    arbitrary multipoles the coefficients, binned on the lattice again
    (P_l = (2l + 1) sum_lam <L_l L_lam>_bin P_lam, the moments enumerated here), give them
    back (every bin of these cases tells L0, L2, L4 apart)."""
    mu2, bins, _ = half_lattice(dk, nb)
    for power, bias, growth in ((SHOT, 1.0, 0.0), (P_LIN, BIAS, GROWTH)):
        mean, _ = theory(loadings(dk, nb, power, bias, growth), dk, nb)
        got = gaussian.legendre_coefficients(mean[:, 2], dk)
        p_mu = np.einsum("lm,lm->m", got[:, bins], legendre(mu2[2]))
        want = power * (bias + growth * mu2[2]) ** 2
        np.testing.assert_allclose(p_mu, want, rtol=1e-10)
    poles = np.random.default_rng(5).normal(size=(3, nb))
    got = gaussian.legendre_coefficients(poles, dk)
    mix = W[None, :, None] * moments(dk, nb)[..., 0, 0]  # (nb, l, lam)
    np.testing.assert_allclose(np.einsum("blm,mb->lb", mix, got), poles, rtol=0, atol=1e-9)


@pytest.mark.parametrize("dk, nb", CASES)
def test_gaussian_reference_is_the_lattice_sum(dk, nb):
    """covariance_gaussian.covariance of the multipoles the bins measure on average (as
    covariance.statistics feeds it the ensemble mean) is the covariance summed over the bins'
    lattice modes, to 1e-10, every element (within a bin between poles, zero between bins),
    for an isotropic (Poisson) and a Kaiser field; the three axes' covariances are the same
    (the bins' modes are symmetric under axis permutations)."""
    n_k = half_lattice(dk, nb)[2]
    for power, bias, growth in ((SHOT, 1.0, 0.0), (P_LIN, BIAS, GROWTH)):
        mean, cov = theory(loadings(dk, nb, power, bias, growth), dk, nb)
        got = gaussian.covariance(mean[:, 2], 2 * n_k, dk)
        want = z_covariance(cov)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10 * want.max())
        for axis in (0, 1):
            np.testing.assert_allclose(cov[:, :, axis, :, axis], cov[:, :, 2, :, 2],
                                       rtol=1e-10, atol=1e-10 * want.max())  # fmt: skip
            np.testing.assert_allclose(mean[:, axis], mean[:, 2], rtol=1e-10, atol=1e-10 * power)


# --- Poisson boxes through calc_power -----------------------------------------------------


@pytest.mark.slow
def test_poisson_binning(poisson):
    """calc_power's bins hold the lattice's modes; a dk = 2 bin's multipoles are the
    mode-weighted mean of its two dk = 1 bins'."""
    n1, n2 = poisson["n_modes"]
    np.testing.assert_array_equal(n1, 2 * half_lattice(1, NB1)[2])
    np.testing.assert_array_equal(n2, 2 * half_lattice(2, NB2)[2])
    fine = poisson["axes"][:, 2].reshape(BOXES, 3, NB1)[..., : 2 * NB2]
    combined = (fine * n1[: 2 * NB2]).reshape(BOXES, 3, NB2, 2).sum(-1) / n2
    np.testing.assert_allclose(combined, poisson["dk2"].reshape(BOXES, 3, NB2),
                               rtol=0, atol=1e-4 * SHOT)  # fmt: skip


@pytest.mark.slow
def test_poisson_mean_is_the_shot_noise(poisson):
    """The ensemble-mean multipoles along z are (2l + 1) <L_l>_bin / n (P0 = 1/n, P2 = 0 on
    whole shells, P4 the lattice's anisotropy) within their errors, per bin (dk = 1, 2);
    the mode-weighted mean of P0 n - 1 is zero within its error."""
    for dk, nb, data in ((1, NB1, poisson["axes"][:, 2]), (2, NB2, poisson["dk2"])):
        mean, cov = theory(loadings(dk, nb, SHOT), dk, nb)
        want, var = mean[:, 2].ravel(), np.diag(z_covariance(cov))
        got = data.mean(axis=0)
        sigma = np.sqrt(var / BOXES)
        assert np.all(np.abs(got - want) < SIGMA * sigma), ((got - want) / sigma).round(2)
        np.testing.assert_allclose(mean[0, 2], SHOT, rtol=1e-12)
        np.testing.assert_allclose(mean[1, 2], 0, atol=1e-12 * SHOT)
        n_k = half_lattice(dk, nb)[2]
        excess = np.sum(n_k * (got[:nb] / SHOT - 1)) / n_k.sum()
        excess_sigma = np.sqrt(np.sum(n_k**2 * var[:nb] / BOXES)) / SHOT / n_k.sum()
        assert abs(excess) < SIGMA * excess_sigma, (dk, excess, excess_sigma)


@pytest.mark.slow
def test_poisson_covariance_is_the_analytic_one(poisson):
    """Measured over analytic variance, (2l + 1)^2 <L_l^2>_bin / n^2 / N_k, is 1 within its
    sampling error (2/(B - 1) plus the kurtosis term; per element and pooled): along z (dk = 1
    and 2) and for one line of sight from the three axes (covariance.statistics' "redshift")."""
    cases = (
        (poisson["stats"]["real"], 1, NB1, loadings(1, NB1, SHOT)[:, 2]),
        (poisson["stats2"], 2, NB2, loadings(2, NB2, SHOT)[:, 2]),
        (poisson["stats"]["redshift"], 1, NB1, loadings(1, NB1, SHOT)),
    )
    for i, (group, dk, nb, a) in enumerate(cases):
        _, cov = theory(loadings(dk, nb, SHOT), dk, nb)
        ratio = np.diag(group["covariance"]) / np.diag(z_covariance(cov))
        assert_ratio_one(ratio.reshape(3, nb), diag_ratio_cov(a, dk, nb, BOXES), i)


@pytest.mark.slow
def test_poisson_covariance_between_k_bins_is_zero(poisson):
    assert_uncorrelated_between_bins(poisson["stats"]["real"]["correlation"], NB1, BOXES, 1)
    assert_uncorrelated_between_bins(poisson["stats2"]["correlation"], NB2, BOXES, 2)


@pytest.mark.slow
def test_poisson_three_axis_mean(poisson):
    """Var(mean3) / Var(one line of sight) through calc_power: P0 is the same along every
    axis (ratio 1), the three P2 cancel mode by mode (ratio 0), P4's ratio is the lattice's
    (about 7/12), per bin and pooled."""
    s = poisson["stats"]
    ratio = np.diag(s["redshift_mean3"]["covariance"]) / np.diag(s["redshift"]["covariance"])
    ratio = ratio.reshape(3, NB1)
    np.testing.assert_allclose(ratio[0], 1, atol=1e-3)
    assert np.all(ratio[1] < 1e-6), ratio[1]
    want, rel = mean3_ratios(loadings(1, NB1, SHOT), 1, NB1, BOXES)
    sigma = want[2] * rel[2]
    assert np.all(np.abs(ratio[2] - want[2]) < SIGMA * sigma), (ratio[2] - want[2]) / sigma
    pooled_sigma = np.sqrt(np.sum(sigma**2)) / NB1
    assert abs(np.mean(ratio[2] - want[2])) < SIGMA * pooled_sigma


@pytest.mark.slow
def test_poisson_reference_from_the_measured_mean(poisson):
    """The Gaussian reference from the ensemble-mean multipoles (covariance.statistics'
    gaussian_covariance; dk = 2: covariance_gaussian of the mean) has the analytic diagonal
    within the noise of the mean, along z."""
    stored = {1: poisson["stats"]["real"]["gaussian_covariance"]}
    stored[2] = gaussian.covariance(poisson["stats2"]["mean"].reshape(3, NB2),
                                               poisson["n_modes"][1], 2)  # fmt: skip
    for dk, nb in ((1, NB1), (2, NB2)):
        mean, cov = theory(loadings(dk, nb, SHOT), dk, nb)
        want = np.diag(z_covariance(cov))
        sigma = reference_sigma(mean[:, 2], cov[:, :, 2, :, 2] / BOXES, dk)
        dev = (np.diag(stored[dk]) - want) / sigma
        assert np.all(np.abs(dev) < SIGMA), (dk, dev.round(1))


# --- Gaussian field on the lattice --------------------------------------------------------


def test_three_axis_mean_variance_ratio_matches_linear_theory(field):
    """Var(mean3) / Var(one line of sight) per pole and bin matches the lattice's linear
    theory within its sampling error, per bin and pooled over the high-k bins, where the
    lattice's ratios approach the continuum's 0.92, 0.08, 0.54."""
    measured = np.diag(field["mean3"]["covariance"]) / np.diag(field["single"]["covariance"])
    measured = measured.reshape(3, NB_FIELD)
    want, rel = mean3_ratios(field["a"], 1, NB_FIELD, REALIZATIONS)
    sigma = want * rel
    assert np.all(np.abs(measured - want) < SIGMA * sigma), ((measured - want) / sigma).round(1)
    continuum = continuum_ratios(BIAS, GROWTH)
    for ell in range(3):
        high = want[ell, HIGH_K]
        pooled_sigma = np.sqrt(np.sum(sigma[ell, HIGH_K] ** 2)) / len(high)
        gap = measured[ell, HIGH_K].mean() - high.mean()
        assert abs(gap) < SIGMA * pooled_sigma, (ell, gap, pooled_sigma)
        assert abs(high.mean() - continuum[ell]) < 0.01, (ell, high.mean(), continuum[ell])


def test_single_los_covariance_is_the_gaussian_one(field):
    """The single line-of-sight statistics of the Gaussian field: the mean is the lattice's
    (the axes' mean multipoles), the variances the lattice sum (per element and pooled), and
    covariance_gaussian of the ensemble-mean multipoles (covariance.statistics' reference for
    "redshift") agrees with the measured variances within the noise of both."""
    a, nb = field["a"], NB_FIELD
    mean, cov = theory(a, 1, nb)
    single = field["single"]
    mean_sigma = np.sqrt(cov.sum(axis=(2, 4)).diagonal(0, 1, 2).T.ravel() / 9 / REALIZATIONS)
    dev = (single["mean"] - mean.mean(axis=1).ravel()) / mean_sigma
    assert np.all(np.abs(dev) < SIGMA), dev.round(1)
    expect = np.diag(z_covariance(cov))
    measured = np.diag(single["covariance"])
    blocks = diag_ratio_cov(a, 1, nb, REALIZATIONS)
    assert_ratio_one((measured / expect).reshape(3, nb), blocks, "single")

    n_k = half_lattice(1, nb)[2]
    reference = np.diag(gaussian.covariance(single["mean"].reshape(3, nb), 2 * n_k, 1))
    bins = half_lattice(1, nb)[1]
    abar = a.mean(axis=1)  # the single line-of-sight mean: over the axes and realizations
    cov_mean = np.array([abar[:, bins == b] @ abar[:, bins == b].T for b in range(nb)])
    ref_sigma = reference_sigma(mean[:, 2], cov_mean / REALIZATIONS, 1)
    sigma = np.hypot(ref_sigma, np.sqrt(np.einsum("bii->ib", blocks)).ravel() * expect)
    dev = (measured - reference) / sigma
    assert np.all(np.abs(dev) < SIGMA), dev.round(1)


@pytest.mark.slow
def test_sparse_boxes_need_the_shot_noise_scatter(estimator):
    """Boxes of a Poisson number of points (mean 150): each box's multipoles keep their own
    shot noise V/N, whose scatter adds Var(V/N) to every P0 element (about N_k / N of the
    Gaussian term: 1.3 to 2 times it at the top bins here). The stored reference, Gaussian
    plus ``shot_noise_covariance``, matches the measured P0 variances within their noise; the
    Gaussian term alone falls short by the predicted factor. (What the production file's
    rehearsal met: 100-200 galaxies a box, measured/Gaussian up to 3 before this term.)"""
    rng = np.random.default_rng(31)
    boxes, mean_n = 300, 150
    counts = rng.poisson(mean_n, boxes)
    samples = []
    for n in counts:
        pos = (rng.random((n, 3)) * BOX).astype(np.float32)
        poles = multipoles(pos, BOX, DK1)["poles"].ravel()
        samples.append({"real": poles, "redshift": np.array([poles] * 3),
                        "attrs": {"shot_noise_mpc3_h3": BOX**3 / n}})  # fmt: skip
    n_k = half_lattice(1, NB1)[2]
    got = ensemble.statistics(samples, np.arange(boxes), 2 * n_k, 1)["real"]
    measured = np.diag(got["covariance"])[:NB1]
    reference = np.diag(got["gaussian_covariance"])[:NB1]
    gaussian_only = np.diag(gaussian.covariance(got["mean"].reshape(3, -1),
                                                           2 * n_k, 1))[:NB1]  # fmt: skip
    shot_var = np.var(BOX**3 / counts, ddof=1)
    np.testing.assert_allclose(reference - gaussian_only, shot_var, rtol=1e-10)
    assert np.all(shot_var / gaussian_only[-3:] > 1)  # the term dominates the top bins
    err = np.sqrt(2 / (boxes - 1) + 6 / n_k / boxes)  # a variance's relative noise
    assert np.all(np.abs(measured / reference - 1) < 4.5 * err), measured / reference
    assert np.all(measured[-3:] / gaussian_only[-3:] > 1.8)
