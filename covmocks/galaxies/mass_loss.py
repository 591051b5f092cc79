"""Stellar mass loss: the fraction of the mass formed that survives as a population ages, and
the quadrature weights that turn a star-formation history into its surviving mass.

The surviving fraction is DSPS's ``dsps.imf.surviving_mstar`` with its default parameters,
its fit for a Chabrier IMF (the IMF of diffsky's and DSPS's stellar populations). It is close
to Behroozi, Wechsler & Conroy (2013, ApJ 770, 57, eq. 14), 1 - 0.05 ln(1 + age / 1.4 Myr),
their fit to FSPS for a Chabrier IMF (``tests/test_mass_loss.py`` compares the two).

The surviving mass at t_obs of a history SFR(t) is the integral of SFR(t) f(t_obs - t) dt.
``surviving_weights`` gives it as a weighted sum of the history's values on the model's time
table, SFR interpolated linearly between the table's times (and from SFR_MIN at T_BIRTH_MIN
to the first), exactly as the mass formed is (the trapezoid rule of
``covmocks.galaxies.kernels``): with f = 1 the weights are the trapezoid's. The weights depend
on t_obs and the table alone, so each snapshot computes them once (float64, fine quadrature)
and every galaxy's surviving mass is one dot product.
"""

from __future__ import annotations

import numpy as np

from covmocks.core.remembered import remembered

AGE_MIN_YR = 1.0  # the fraction is evaluated at ages of at least this (0.995 below ~1e5 yr)
N_FINE = 20001  # points of each fine grid (linear in time, geometric in age) of the quadrature


def surviving_fraction(age_gyr) -> np.ndarray:
    """Fraction of the mass formed that survives at ``age_gyr`` (Gyr, any shape): DSPS's
    ``surviving_mstar`` for a Chabrier IMF, ages floored at ``AGE_MIN_YR``; float64."""
    import jax
    from dsps.imf.surviving_mstar import surviving_mstar

    age_yr = np.maximum(np.asarray(age_gyr, np.float64) * 1e9, AGE_MIN_YR)
    with jax.enable_x64(True):
        return np.asarray(surviving_mstar(np.log10(age_yr)), np.float64)


def surviving_weights(t_obs: float, n_t: int) -> np.ndarray:
    """Weights w (Gyr), shape (n_t + 1,), read-only, such that the surviving mass at ``t_obs``
    (Gyr) is 1e9 * (w[0] * SFR_MIN + sum_k w[k + 1] * sfr[k]) Msun, sfr (Msun/yr) on
    ``kernels.time_table(t_obs, n_t)``: the integral of each node's piecewise-linear hat
    function times the surviving fraction at the age t_obs - t. Remembered per (t_obs, n_t)
    (``core.remembered``: a fresh process need not import DSPS)."""
    args = (float(t_obs), int(n_t))
    return remembered("mass_loss/surviving_weights", _surviving_weights, *args)["weights"]


def _surviving_weights(t_obs: float, n_t: int) -> dict:
    from diffstar.defaults import T_BIRTH_MIN, T_TABLE_MIN

    nodes = np.concatenate([[T_BIRTH_MIN], np.linspace(T_TABLE_MIN, t_obs, n_t)])
    # fine grid: the nodes, linear steps, and geometric steps in age (the fraction falls
    # by 30% in the first 0.3 Gyr, most of it in the first 100 Myr)
    ages = np.geomspace(AGE_MIN_YR * 1e-9, t_obs - T_BIRTH_MIN, N_FINE)
    t = np.unique(np.concatenate([nodes, np.linspace(T_BIRTH_MIN, t_obs, N_FINE), t_obs - ages]))
    t = t[(t >= T_BIRTH_MIN) & (t <= t_obs)]
    f = surviving_fraction(t_obs - t)
    dt = np.diff(t)
    weights = np.empty(len(nodes))
    for j in range(len(nodes)):
        hat = np.interp(t, nodes, np.eye(len(nodes))[j]) * f
        weights[j] = np.sum(0.5 * dt * (hat[1:] + hat[:-1]))
    return {"weights": weights}
