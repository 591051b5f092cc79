"""The surviving stellar mass: DSPS's fraction against a published curve, and the weights
that integrate a history to its surviving mass."""

import numpy as np
import pytest

from covmocks.galaxies import mass_loss
from covmocks.report.reference import surviving_fraction_bwc13

# Behroozi, Wechsler & Conroy (2013, ApJ 770, 57), eq. 14: the fraction of the mass formed
# lost by a population of age t, f_loss = 0.05 ln(1 + t / 1.4 Myr), their fit to FSPS for a
# Chabrier IMF. Surviving fraction 1 - f_loss at 0.1, 1 and 10 Gyr:
BWC13_SURVIVING = {0.1: 0.7859, 1.0: 0.6714, 10.0: 0.5563}


def test_bwc13_values_are_their_formula():
    for age_gyr, value in BWC13_SURVIVING.items():
        assert surviving_fraction_bwc13(age_gyr) == pytest.approx(value, abs=1e-4)


def test_surviving_fraction_follows_the_published_chabrier_curve():
    ages = np.array(list(BWC13_SURVIVING))
    got = mass_loss.surviving_fraction(ages)
    np.testing.assert_allclose(got, list(BWC13_SURVIVING.values()), atol=0.02)
    assert np.all(np.diff(mass_loss.surviving_fraction(np.geomspace(1e-3, 13.8, 50))) <= 0)


def test_weights_are_the_trapezoid_times_the_fraction():
    """With the history constant, the weighted sum is the integral of the fraction over the
    ages (to 1e-4), and the weights never exceed the trapezoid's."""
    from diffstar.defaults import T_BIRTH_MIN, T_TABLE_MIN

    t_obs, n_t = 13.0, 36
    w = mass_loss.surviving_weights(t_obs, n_t)
    nodes = np.concatenate([[T_BIRTH_MIN], np.linspace(T_TABLE_MIN, t_obs, n_t)])
    trapezoid = np.zeros(n_t + 1)
    trapezoid[:-1] += 0.5 * np.diff(nodes)
    trapezoid[1:] += 0.5 * np.diff(nodes)
    assert np.all(w <= trapezoid) and np.all(w > 0.5 * trapezoid)
    ages = np.linspace(0.0, t_obs - T_BIRTH_MIN, 2_000_001)
    exact = np.trapezoid(mass_loss.surviving_fraction(ages), ages)
    assert w.sum() == pytest.approx(exact, rel=1e-4)
    # the youngest interval: the fraction falls from 0.995 to about 0.7 across it
    assert w[-1] < 0.9 * trapezoid[-1]
