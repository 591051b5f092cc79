"""The population checks (``catalog.population``) catch unit errors that the per-galaxy limits
let through: a good catalog broken by each factor fails the check named for it, and good
catalogs of every source, chunked or written by MPI ranks (test_mpi.py), pass."""

import shutil

import h5py
import numpy as np
import pytest

from covmocks.box import populate
from covmocks.box.spec import BoxSpec
from covmocks.catalog import hdf5, population, validation
from covmocks.core import nfw
from covmocks.halos import blocks, sources

H = 0.6736  # the synthetic box's h (checked below)
Z = 0.5


@pytest.fixture(scope="module")
def good_boxes(tmp_path_factory, mini_catalog_dir, model):
    """Good catalogs: synthetic at z=0.5 (3000 hosts above 10^11 Msun, in 3 chunks), the Mini
    AbacusSummit box in chunks of 150 hosts, and an HDF5 halo file (the synthetic hosts above
    10^11.3 Msun) in chunks of 500."""
    out = tmp_path_factory.mktemp("population")
    halos = out / "halos.hdf5"
    synthetic = sources.open_source("synthetic", n_hosts=3000, seed=3, redshift=Z,
                                    log10_mhost_min_msun=11.0)  # fmt: skip
    blocks.write_hdf5_halos(halos, next(synthetic.iter_blocks(3000)), synthetic.header)
    specs = {
        "synthetic": BoxSpec(source="synthetic", n_hosts=3000, output=out / "synthetic.hdf5",
                             seed=3, redshift=Z, log10_mhost_min_msun=11.0, chunk_hosts=1000),
        "abacus": BoxSpec(source="abacus", input=mini_catalog_dir, output=out / "mini.hdf5",
                          seed=7, redshift=0.0, chunk_hosts=150),
        "hdf5": BoxSpec(source="hdf5", input=halos, output=out / "hdf5.hdf5", seed=1,
                        log10_mhost_min_msun=11.3, chunk_hosts=500),
    }  # fmt: skip
    for spec in specs.values():
        source = spec.open_source()
        populate.generate_box(source, model, spec.resolved(source.header))
    return {name: spec.output for name, spec in specs.items()}


def scale_satellites(path, column: str, factor: float) -> None:
    """Satellites' offsets from their host in ``column`` (pos or vel) times ``factor``
    (positions: the periodic offset, wrapped into the box)."""
    with h5py.File(path, "r+") as f:
        sat = ~f["is_central"][:]
        host = f["host_index"][:][sat]
        values = f[column][:].astype(np.float64)
        offset = values[sat] - values[host]
        if column == "pos":  # the periodic offset, and the new position wrapped
            box = float(f.attrs["box_size"])
            offset -= box * np.round(offset / box)
            values[sat] = (values[host] + factor * offset) % box
        else:
            values[sat] = values[host] + factor * offset
        f[column][:] = values.astype(np.float32)


def scale_mstar(path, factor: float) -> None:
    """Every galaxy's stellar mass times ``factor`` (sSFR kept as SFR / M*)."""
    with h5py.File(path, "r+") as f:
        mstar = f["log10_mstar"][:] + np.float32(np.log10(factor))
        f["log10_mstar"][:] = mstar
        f["log10_ssfr"][:] = f["log10_sfr"][:] - mstar


ERRORS = {  # name -> (break the catalog, the check that must catch it)
    "positions x 1/h": (lambda p: scale_satellites(p, "pos", 1 / H), "satellite_radius_median"),
    "positions x (1+z)": (lambda p: scale_satellites(p, "pos", 1 + Z), "satellite_radius_median"),
    "positions x 0.5": (lambda p: scale_satellites(p, "pos", 0.5), "satellite_radius_median"),
    "velocities x sqrt(3)": (lambda p: scale_satellites(p, "vel", 3**0.5),
                             "satellite_velocity_rms"),
    "velocities x (1+z)": (lambda p: scale_satellites(p, "vel", 1 + Z), "satellite_velocity_rms"),
    "velocities x h": (lambda p: scale_satellites(p, "vel", H), "satellite_velocity_rms"),
    "M* x h": (lambda p: scale_mstar(p, H), "central_smhm_peak"),
    "M* / h": (lambda p: scale_mstar(p, 1 / H), "central_smhm_peak"),
}  # fmt: skip


def failed(path) -> dict:
    """Failed checks of the catalog at ``path``: name -> reason."""
    results = validation.check_reasons(hdf5.read_catalog(path))
    return {name: why for name, (ok, why) in results.items() if not ok}


@pytest.mark.slow
def test_good_boxes_pass(good_boxes):
    for name, path in good_boxes.items():
        assert validation.check_file(path) == [], name
        results = validation.check_reasons(hdf5.read_catalog(path))
        # the satellite checks judged (enough satellites); the Mini box has too few
        # centrals at the peak for the stellar-mass check
        for check in ("satellite_radius_median", "satellite_velocity_rms"):
            assert results[check] == (True, ""), (name, check)
        if name != "abacus":
            assert results["central_smhm_peak"] == (True, ""), name


@pytest.mark.slow
@pytest.mark.parametrize("error", ERRORS)
def test_unit_error_caught_by_name(error, good_boxes, tmp_path):
    path = tmp_path / "broken.hdf5"
    shutil.copy(good_boxes["synthetic"], path)
    with h5py.File(path) as f:
        assert float(f.attrs["h"]) == pytest.approx(H, abs=1e-4)
    assert failed(path) == {}
    breaks, check = ERRORS[error]
    breaks(path)
    why = failed(path)
    assert check in why, (error, why)
    assert any(line.startswith(check) for line in validation.check_file(path))
    # the per-galaxy limits alone let it through (why these checks exist)
    assert not {"satellites_near_host", "satellite_velocities_near_host"} & set(why)


def test_too_few_members_are_not_judged():
    checks = population.PopulationChecks(0.7, 0.5, "diffsky_sfh", {}, True)
    x = np.full(population.MIN_MEMBERS - 1, 0.9)  # far out: the median would fail
    checks.add_satellites(x, 3 * x, np.full(len(x), 12.0))
    results = checks.results("", "")
    for name in ("satellite_radius_median", "satellite_velocity_rms", "central_smhm_peak"):
        assert results[name][0] and results[name][1].startswith("not judged"), name
    assert results["satellite_radius_max"] == (True, "")


def test_overridden_population_parameters_are_not_judged():
    checks = population.PopulationChecks(0.7, 0.5, "diffsky_sfh", {"diffstarpop": {"a": 1}}, True)
    lgm = np.full(10 * population.MIN_MEMBERS, 12.0)
    checks.add_centrals(lgm, lgm - 5)  # far below the model
    ok, why = checks.results("", "")["central_smhm_peak"]
    assert ok and "population parameters" in why


def test_nfw_quantiles_are_the_models():
    """The checks' NFW (``core.nfw``, NumPy) is diffsky's ``_qnfw``, which places satellites."""
    from diffsky.fake_sats.nfw_config_space import _qnfw

    c = 10 ** np.linspace(-0.5, 2.5, 200)
    np.testing.assert_allclose(nfw.median_radius_fraction(c), _qnfw(np.full(200, 0.5), c),
                               atol=1e-5)  # fmt: skip
    p = np.random.default_rng(0).random(200)
    np.testing.assert_allclose(nfw.radius_fraction_quantile(p, c), _qnfw(p.copy(), c), atol=1e-12)


def test_the_phase_space_functions_are_diffskys_bits():
    """``core.nfw`` writes out diffsky's fake_sats functions so that a fresh process need not
    import diffsky: they must give its bits, on satellites' own range of inputs."""
    from diffsky.fake_sats.ellipsoidal_velocities import calculate_virial_velocity
    from diffsky.fake_sats.nfw_config_space import _qnfw, _random_spherical_position

    rng = np.random.default_rng(7)
    u = rng.random(100_000)
    u[:3] = 0.0, 1.0, 0.5
    c = 10 ** rng.uniform(-0.5, 2.5, u.size)
    kept = u.copy()
    assert np.array_equal(nfw.radius_fraction(u, c), _qnfw(u.copy(), c), equal_nan=True)
    assert np.array_equal(u, kept)  # diffsky's scales its input in place; this one does not
    assert all(map(np.array_equal, nfw.spherical_directions(u), _random_spherical_position(u)))
    mass, radius = 10 ** rng.uniform(10, 15.5, 1000), 10 ** rng.uniform(-2, 0.5, 1000)
    expected = calculate_virial_velocity(mass, radius)
    assert np.array_equal(nfw.virial_velocity(mass, radius), expected)
