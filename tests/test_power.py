"""covmocks.clustering.power: the estimator's conventions and the physics it must reproduce.

Poisson points test the shot noise 1/n, the mode counts and the Gaussian variance; a constant
velocity tests the redshift-space displacement; clumps smeared along one axis (fingers of
god) test that the line of sight is the axis asked for. calc_power compiles with numba on
its first call (~30 s on 2 cores); the fixture below pays it once.
"""

import gc
import json

import h5py
import numpy as np
import pytest
from scipy import stats

from covmocks.clustering import power
from covmocks.clustering.power import (
    PowerSettings,
    measure,
    multipoles,
    read_record,
    redshift_space,
    write_record,
)

BOX = 500.0  # Mpc/h
NMESH = 32  # fundamental kf = 2 pi / BOX, Nyquist 16 kf
KF = 2 * np.pi / BOX
HALF_NYQUIST = PowerSettings(nmesh=NMESH)  # default k_max = 8 kf: 7 bins kf wide, centres kf..7kf
TO_NYQUIST = PowerSettings(nmesh=NMESH, k_max=np.pi * NMESH / BOX)  # 15 bins, centres kf..15kf


@pytest.fixture(scope="module", autouse=True)
def compiled():
    """Compile calc_power once, then freeze the objects alive (calc_power calls gc.collect
    three times a call, ~0.15 s each in a process holding numba's compiled code)."""
    multipoles(np.random.default_rng(0).random((100, 3)) * BOX, BOX, HALF_NYQUIST)
    gc.freeze()
    yield
    gc.unfreeze()


def legendre(ell, mu2):
    return {0: np.ones_like(mu2), 2: (3 * mu2 - 1) / 2, 4: (35 * mu2**2 - 30 * mu2 + 3) / 8}[ell]


def lattice(settings):
    """The modes of each k bin, enumerated independently of calc_power: every k = kf n of
    the mesh (k and -k both counted) with lo < |k| <= hi; the edges must lie half-way
    between multiples of kf, so that no shell |n|^2 = m (integer) sits on one.
    Returns counts, mean |k|, <L_l> (3, nb), <L_l L_l'> (3, 3, nb)."""
    edges = settings.k_edges(BOX) / KF
    np.testing.assert_allclose(edges, np.round(edges - 0.5) + 0.5, atol=1e-9)
    edges2 = edges**2
    n = np.fft.fftfreq(NMESH, 1 / NMESH).round().astype(int)
    nx, ny, nz = np.meshgrid(n, n, n, indexing="ij")
    n2 = (nx**2 + ny**2 + nz**2).ravel()
    keep = (n2 > edges2[0]) & (n2 <= edges2[-1])
    n2, nz2 = n2[keep], (nz**2).ravel()[keep]
    b = np.searchsorted(edges2, n2, side="left") - 1
    nb = len(edges2) - 1
    counts = np.bincount(b, minlength=nb)
    k_mean = np.bincount(b, KF * np.sqrt(n2), nb) / counts
    leg = np.array([legendre(ell, nz2 / n2) for ell in power.POLES])
    mean_l = np.array([np.bincount(b, w, nb) for w in leg]) / counts
    mean_ll = np.array([[np.bincount(b, u * v, nb) for v in leg] for u in leg]) / counts
    return counts, k_mean, mean_l, mean_ll


def poisson_moments(settings, n_objects):
    """Expected multipoles and their covariance for unclustered points (P = 1/n at every
    mode, Gaussian modes): P_l = (2l+1) sum_modes P L_l / N; a bin holds N/2 independent
    modes (k, -k are one), each Var |delta_k|^2 = P^2, so
    Cov(P_l, P_l') = (2l+1)(2l'+1) P^2 <L_l L_l'> / (N/2)."""
    counts, _, mean_l, mean_ll = lattice(settings)
    shot = BOX**3 / n_objects
    w = 2 * np.array(power.POLES) + 1
    mean = w[:, None] * shot * mean_l
    cov = w[:, None, None] * w[None, :, None] * shot**2 * mean_ll * 2 / counts
    return mean, cov


def uniform(rng, n, dtype=np.float32):
    return (rng.random((n, 3)) * BOX).astype(dtype)


@pytest.mark.parametrize("settings", [HALF_NYQUIST, TO_NYQUIST], ids=["half-nyq", "nyq"])
def test_binning_matches_the_lattice(settings):
    """calc_power's k bins: lo < k <= hi, k >= k_max dropped, k = 0 dropped; N_mode counts k
    and -k (the full mesh)."""
    got = multipoles(uniform(np.random.default_rng(1), 1000), BOX, settings)
    counts, k_mean, _, _ = lattice(settings)
    np.testing.assert_array_equal(got["n_modes"], counts)
    assert got["n_modes"][0] == 18  # |n| = 1 (6 modes) and sqrt(2) (12), not the k = 0 one
    np.testing.assert_allclose(got["k_avg"], k_mean, rtol=1e-5)
    edges = settings.k_edges(BOX)
    np.testing.assert_allclose(got["k_mid"], (edges[1:] + edges[:-1]) / 2)
    assert got["poles"].shape == (3, len(edges) - 1)
    np.testing.assert_allclose(got["k_mid"] / KF, np.arange(1, len(edges)))  # centres on n kf


@pytest.mark.parametrize("settings", [HALF_NYQUIST, TO_NYQUIST], ids=["half-nyq", "nyq"])
def test_poisson_box_has_white_shot_noise(settings):
    """One box of uniform random points, 0 < k < k_max (half the Nyquist frequency, and the
    Nyquist frequency): P_l match (2l+1)/n <L_l> (P0 = 1/n; P2, P4 nonzero only where few
    modes sample mu) within Gaussian errors, bin by bin and as a chi-square over all bins;
    the mode-weighted mean of P0 n - 1 is zero within its error."""
    n_objects = 60000
    got = multipoles(uniform(np.random.default_rng(2), n_objects), BOX, settings)
    mean, cov = poisson_moments(settings, n_objects)
    resid = got["poles"] - mean
    sigma = np.sqrt(np.einsum("iib->ib", cov))
    assert np.all(np.abs(resid) < 5 * sigma), resid / sigma
    # few modes sample few mu: the covariance of a low-k bin can be singular (rank 2 at |k| = kf)
    bins = range(cov.shape[-1])
    chi2 = sum(resid[:, b] @ np.linalg.pinv(cov[:, :, b], rcond=1e-8) @ resid[:, b] for b in bins)
    dof = sum(np.linalg.matrix_rank(cov[:, :, b] / cov[0, 0, b], tol=1e-8) for b in bins)
    assert stats.chi2.sf(chi2, dof) > 1e-4, (chi2, dof)
    nmodes = got["n_modes"]
    excess = np.sum(nmodes * (got["poles"][0] * n_objects / BOX**3 - 1)) / nmodes.sum()
    assert abs(excess) < 5 * np.sqrt(2 / nmodes.sum()), excess


def test_synthetic_source_hosts_are_unclustered():
    """The synthetic source places its hosts uniformly and independently: their P0 is 1/n
    and P2 = P4 = 0 within Gaussian errors (positions rescaled to BOX, which keeps a uniform
    set uniform)."""
    from covmocks.halos.synthetic import SyntheticSource

    source = SyntheticSource(n_hosts=60000, log10_mhost_min_msun=11.0, redshift=0.5, seed=7)
    pos = np.concatenate([b.pos for b in source.iter_blocks(20000)])
    assert len(pos) == 60000
    got = multipoles(pos * (BOX / source.header.box_size), BOX, HALF_NYQUIST)
    mean, cov = poisson_moments(HALF_NYQUIST, len(pos))
    sigma = np.sqrt(np.einsum("iib->ib", cov))
    assert np.all(np.abs(got["poles"] - mean) < 5 * sigma), (got["poles"] - mean) / sigma
    nmodes = got["n_modes"]
    excess = np.sum(nmodes * (got["poles"][0] * len(pos) / BOX**3 - 1)) / nmodes.sum()
    assert abs(excess) < 5 * np.sqrt(2 / nmodes.sum()), excess


def test_poisson_ensemble_variance_and_mean():
    """200 boxes of 2e4 points, 0 < k < k_Nyquist: the variance of P0 per bin is 2 P^2 /
    N_mode (N_mode counts k and -k), within the sampling error of a variance (Gaussian term
    2/(B-1) plus the kurtosis term 6/(N_mode/2)/B of a mean of N_mode/2 exponential |delta_k|^2);
    the ensemble mean of P0 n - 1 is zero per bin (shot noise unbiased to 0.2% at k_Nyquist:
    aliasing removed by interlacing and compensation); P2, P4 variances match the formula
    pooled over the bins of >= 100 modes."""
    boxes, n_objects = 200, 20000
    rng = np.random.default_rng(3)
    runs = np.array(
        [multipoles(uniform(rng, n_objects), BOX, TO_NYQUIST)["poles"] for _ in range(boxes)]
    )
    mean, cov = poisson_moments(TO_NYQUIST, n_objects)
    nmodes = lattice(TO_NYQUIST)[0]
    ratio = runs.var(axis=0, ddof=1) / np.einsum("iib->ib", cov)
    err0 = np.sqrt(2 / (boxes - 1) + 6 / (nmodes / 2) / boxes)
    assert np.all(np.abs(ratio[0] - 1) < 4 * err0), (ratio[0] - 1) / err0
    big = nmodes >= 100
    for ell in (1, 2):
        pooled = ratio[ell, big].mean()
        assert abs(pooled - 1) < 4 * np.sqrt(2 / (boxes - 1) / big.sum()), (ell, pooled)
    shot = BOX**3 / n_objects
    mean_err = np.sqrt(np.einsum("iib->ib", cov)[0] / boxes)
    assert np.all(np.abs(runs[:, 0].mean(axis=0) - mean[0]) < 4 * mean_err)
    top = slice(8, None)  # k_Nyquist/2 < k < k_Nyquist: 0.1-0.2% errors per bin
    assert np.all(np.abs(runs[:, 0, top].mean(axis=0) / shot - 1) < 4 * mean_err[top] / shot)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_constant_velocity_shifts_along_one_axis(dtype):
    redshift, hubble_e, v = 0.5, 1.3, 300.0
    shift = v * (1 + redshift) / (100 * hubble_e)  # 3.4615 Mpc/h
    pos = np.array([[1.0, 2.0, 3.0], [BOX - 1.0, BOX - 2.0, BOX - 0.5], [250.0, 0.0, 499.9]])
    pos = pos.astype(dtype)
    for axis in range(3):
        for sign in (1, -1):
            vel = np.zeros_like(pos)
            vel[:, axis] = sign * v
            got = redshift_space(pos, vel, axis, redshift, hubble_e, BOX)
            assert got.dtype == dtype and got is not pos
            want = np.mod(pos[:, axis].astype(np.float64) + sign * shift, BOX)
            np.testing.assert_allclose(got[:, axis], want, atol=1e-4)
            others = [a for a in range(3) if a != axis]
            np.testing.assert_array_equal(got[:, others], pos[:, others])
            assert np.all((got >= 0) & (got < BOX))
    # rounding to float32 would give box_size itself: wrapped to 0
    tiny = redshift_space(np.zeros((1, 3), np.float32), np.full((1, 3), -1e-6), 0, 0, 1, BOX)
    assert 0 <= tiny[0, 0] < BOX


def test_zero_velocity_redshift_space_is_real_space():
    rng = np.random.default_rng(4)
    pos = uniform(rng, 5000)
    got = measure(pos, np.zeros_like(pos), BOX, 0.8, 1.5, HALF_NYQUIST)
    np.testing.assert_array_equal(redshift_space(pos, np.zeros_like(pos), 1, 0.8, 1.5, BOX), pos)
    np.testing.assert_array_equal(got["redshift_z"], got["real"])
    for axis, name in enumerate("xy"):
        want = multipoles(pos, BOX, HALF_NYQUIST, los_axis=axis)["poles"]
        np.testing.assert_array_equal(got[f"redshift_{name}"], want)
    np.testing.assert_allclose(got["redshift"][0], got["real"][0], rtol=1e-5)
    assert got["n_objects"] == 5000
    assert got["number_density"] == pytest.approx(5000 / BOX**3)
    assert got["shot_noise"] == pytest.approx(BOX**3 / 5000)


def clumps(rng, n_clumps=500, per_clump=40, radius=0.5):
    """Tight clumps: P(k) ~ per_clump / n well above the shot noise at k radius << 1."""
    centres = rng.random((n_clumps, 1, 3)) * BOX
    pos = centres + rng.normal(0, radius, (n_clumps, per_clump, 3))
    return np.mod(pos.reshape(-1, 3), BOX).astype(np.float32)


def fog_ratio(poles, n_modes):
    """Mode-weighted mean of P2/P0 over k_Nyquist/2 < k < k_Nyquist (k sigma 1.25 to 2.5)."""
    top = slice(8, None)
    return np.sum(n_modes[top] * poles[1, top] / poles[0, top]) / n_modes[top].sum()


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_fingers_of_god_along_the_line_of_sight(axis):
    """Clumps smeared along axis a by a 10 Mpc/h dispersion: P(k, mu) ~ exp(-(k sigma mu)^2)
    along a, so P2 measured with los_axis = a is strongly negative (P2/P0 -> -5/4 at
    k sigma >> 1) and positive with either other axis (the surviving modes lie at mu_a = 0,
    spread in mu over the other two: P2/P0 -> +5/8). A wrong axis permutation fails this.
    The three P2 add up to zero (L2(mu_x) + L2(mu_y) + L2(mu_z) = 0 mode by mode)."""
    rng = np.random.default_rng(10 + axis)
    pos = clumps(rng)
    redshift, hubble_e = 0.5, 1.3
    vel = np.zeros_like(pos)
    vel[:, axis] = rng.normal(0, 10.0 * 100 * hubble_e / (1 + redshift), len(pos))
    moved = redshift_space(pos, vel, axis, redshift, hubble_e, BOX)
    got = [multipoles(moved, BOX, TO_NYQUIST, los_axis=los) for los in range(3)]
    for los, r in enumerate(got):
        ratio = fog_ratio(r["poles"], r["n_modes"])
        if los == axis:
            p0, p2 = r["poles"][:2, 8:]
            assert np.all(p2 < -0.2 * p0) and ratio < -0.9, (los, p2 / p0)
        else:
            assert ratio > 0.3, (los, ratio)
    p2_sum = sum(r["poles"][1] for r in got)
    np.testing.assert_allclose(p2_sum / got[0]["poles"][0], 0, atol=1e-4)


def test_measure_pairs_each_displacement_with_its_line_of_sight():
    rng = np.random.default_rng(20)
    pos = clumps(rng)
    vel = np.zeros_like(pos)
    vel[:, 0] = rng.normal(0, 1000.0, len(pos))  # x only: 10 Mpc/h at z = 0, E = 1
    got = measure(pos, vel, BOX, 0.0, 1.0, TO_NYQUIST)
    assert fog_ratio(got["redshift_x"], got["n_modes"]) < -0.9
    for axis, name in ((1, "y"), (2, "z")):  # not displaced: real space along y, z
        want = multipoles(pos, BOX, TO_NYQUIST, los_axis=axis)["poles"]
        np.testing.assert_array_equal(got[f"redshift_{name}"], want)
    np.testing.assert_array_equal(got["real"], got["redshift_z"])
    mean = (got["redshift_x"] + got["redshift_y"] + got["redshift_z"]) / 3
    np.testing.assert_allclose(got["redshift"], mean, rtol=1e-12)


def test_empty_sample_gives_nan_poles():
    empty = np.zeros((0, 3), np.float32)
    got = measure(empty, empty, BOX, 0.5, 1.3, HALF_NYQUIST)
    assert got["n_objects"] == 0 and got["number_density"] == 0
    assert got["shot_noise"] == np.inf
    for key in ("real", "redshift_x", "redshift"):
        assert got[key].shape == (3, 7) and np.all(np.isnan(got[key]))
    np.testing.assert_array_equal(got["n_modes"], lattice(HALF_NYQUIST)[0])


def test_settings_are_checked_and_described():
    with pytest.raises(ValueError, match="Nyquist"):
        multipoles(np.zeros((1, 3)), BOX, PowerSettings(nmesh=NMESH, k_max=0.3))
    with pytest.raises(ValueError, match="box_size"):
        multipoles(np.full((1, 3), BOX + 1), BOX, HALF_NYQUIST)
    with pytest.raises(ValueError, match="los_axis"):
        multipoles(np.zeros((1, 3)), BOX, HALF_NYQUIST, los_axis=3)
    with pytest.raises(ValueError, match="nmesh"):
        PowerSettings(nmesh=31)
    with pytest.raises(ValueError, match="paste"):
        PowerSettings(paste="tsc")
    described = json.loads(json.dumps(PowerSettings().describe()))
    assert described["nmesh"] == 128 and described["k_max"] is None
    assert described["paste"] == "TSC" and described["interlaced"] and described["compensated"]
    default = PowerSettings().k_edges(2000.0)  # k_max = 32 kf: edges 0.5 .. 31.5 kf
    kf = 2 * np.pi / 2000.0
    assert default[-1] == pytest.approx(31.5 * kf) and len(default) == 32
    np.testing.assert_allclose(PowerSettings(k_max=0.4, dk=2).k_edges(500.0) / KF,
                               0.5 + 2 * np.arange(16))  # fmt: skip
    assert "below the first bin" in PowerSettings(k_max=1.4 * KF).problem(BOX)
    assert PowerSettings(k_max=1.5 * KF).problem(BOX) is None
    with pytest.raises(ValueError, match="dk"):
        PowerSettings(dk=1.5)


def sample(rng, n, **selection):
    pos = uniform(rng, n)
    out = measure(pos, rng.normal(0, 300, pos.shape), BOX, 0.5, 1.3, HALF_NYQUIST)
    return {**out, "selection": selection}


def test_record_round_trip_and_atomicity(tmp_path):
    rng = np.random.default_rng(30)
    samples = {
        "mstar_gt_10": sample(rng, 3000, select="log10_mstar", threshold=10.0,
                              threshold_origin="config", below_completeness=False),
        "sfr_gt_0": sample(rng, 2000, select="log10_sfr", threshold=0.0),
        "none": {**measure(np.zeros((0, 3)), np.zeros((0, 3)), BOX, 0.5, 1.3, HALF_NYQUIST),
                 "selection": {}},
    }  # fmt: skip
    attrs = {"realization": 7, "box_size": BOX, "estimator": HALF_NYQUIST.describe()}
    path = tmp_path / "rec" / "box.power.hdf5"
    write_record(path, samples, attrs)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    rec = read_record(path)
    root = rec["attrs"]
    assert root["realization"] == 7 and root["box_size"] == BOX
    assert json.loads(root["estimator"]) == json.loads(json.dumps(HALF_NYQUIST.describe()))
    assert json.loads(root["poles"]) == [0, 2, 4]
    assert root["k_units"] == "h/Mpc" and root["power_units"] == "(Mpc/h)^3"
    assert "line of sight" in root["los_convention"]
    assert set(rec["samples"]) == set(samples)
    for name, want in samples.items():
        got = rec["samples"][name]
        for key in power.ARRAYS:
            np.testing.assert_array_equal(got[key], want[key])
        a = got["attrs"]
        assert a["n_objects"] == want["n_objects"] and a["shot_noise_subtracted"] is False
        assert a["number_density_h3_mpc3"] == want["number_density"]
        assert a["shot_noise_mpc3_h3"] == want["shot_noise"]
        for key, value in want["selection"].items():
            assert a[key] == value
    assert rec["samples"]["mstar_gt_10"]["attrs"]["select"] == "log10_mstar"
    with h5py.File(path) as f:
        assert f["mstar_gt_10/real"].attrs["units"] == "(Mpc/h)^3"

    # a failure mid-write (a sample lacking an array) keeps the old record, leaves nothing
    broken = {"ok": samples["sfr_gt_0"], "bad": {k: v for k, v in samples["sfr_gt_0"].items()
                                                 if k != "redshift"}}  # fmt: skip
    before = path.read_bytes()
    with pytest.raises(KeyError):
        write_record(path, broken, attrs)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    fresh = tmp_path / "fresh.hdf5"
    with pytest.raises(KeyError):
        write_record(fresh, broken, attrs)
    assert not fresh.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["rec"]
