"""Model pieces: registry, padding, ARGUS sampling, concentration."""

import numpy as np
import pytest

from covmocks import model
from covmocks.errors import InputError


def test_registry_names_and_unknown_model():
    assert "diffsky_sfh" in model.MODELS
    with pytest.raises(InputError, match="unknown galaxy model"):
        model.get_model("nope")


def test_unknown_population_parameter():
    with pytest.raises(InputError, match="diffstarpop parameter"):
        model.get_model("diffsky_sfh", {"diffstarpop": {"not_a_param": 1.0}})


def test_bucket_sizes_are_few():
    sizes = {model.bucket_size(n, 1024, 65536) for n in range(1, 200000, 37)}
    assert sizes == {1024 * 2**k for k in range(7)}


def test_padded_map_trims_and_splits():
    calls = []

    def fn(x):
        calls.append(len(x))
        return {"y": x * 2}

    out = model.padded_map(fn, {"x": np.arange(10)}, smallest=4, largest=4)
    np.testing.assert_array_equal(out["y"], np.arange(10) * 2)
    assert calls == [4, 4, 4]


def test_argus_table_matches_scipy():
    from scipy.stats import argus

    cdf, x = model._argus_inverse_cdf_table(1.5)
    u = np.random.default_rng(1).random(200000)
    sample = np.interp(u, cdf, x)
    assert sample.mean() == pytest.approx(argus.mean(1.5), abs=2e-3)
    assert sample.std() == pytest.approx(argus.std(1.5), abs=2e-3)


def test_concentration_decreases_with_mass():
    c = model.concentration_dm14(np.array([11.0, 12.0, 13.0, 14.0]), 0.0)
    assert np.all(np.diff(c) < 0)
    assert c[1] == pytest.approx(10**0.905, rel=1e-6)


def test_quenched_threshold_is_one_fifth_of_the_inverse_cosmic_age():
    """sSFR < 1/(5 t_obs) (Franx et al. 2008; Pacifici et al. 2016), t_obs in yr."""
    assert model.quenched_log_ssfr_threshold(10.0) == pytest.approx(np.log10(0.2 / 1e10), abs=1e-12)
    assert model.quenched_log_ssfr_threshold(13.8) == pytest.approx(-10.8388, abs=1e-4)
    # earlier snapshots (younger universe) quench at a higher sSFR
    assert model.quenched_log_ssfr_threshold(3.0) > model.quenched_log_ssfr_threshold(8.6)


def test_quenched_at_snapshot_uses_the_stored_float32_ssfr():
    t_obs = 8.59
    threshold = np.float32(model.quenched_log_ssfr_threshold(t_obs))
    below = float(np.nextafter(threshold, np.float32(-np.inf)))
    log10_mstar = np.array([10.0, 10.0, 10.0, 10.0])
    log10_ssfr = np.array([-12.0, below, float(threshold), -9.5])
    is_q = model.quenched_at_snapshot(log10_ssfr + log10_mstar, log10_mstar, t_obs)
    stored = (log10_ssfr + log10_mstar - log10_mstar).astype(np.float32)  # as the catalog keeps it
    np.testing.assert_array_equal(is_q, stored < threshold)
    assert is_q[0] and not is_q[-1]


def test_model_version_and_columns_name_the_state_and_the_branch():
    """1.1: is_quenched is the state at the snapshot; diffstarpop's branch has its own name."""
    assert model.MODELS["diffsky_sfh"].version == "1.1"
    assert {"is_quenched", "diffstar_quenched_branch"} <= set(model.GALAXY_COLUMNS)
