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
