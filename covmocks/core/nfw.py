"""The NFW profile the model places satellites on, in NumPy (no JAX): its concentration and
the quantiles of its truncated radial distribution.

A satellite's radius is r = x r_host with x in [0, 1] drawn from the NFW mass profile truncated
at the host radius: P(< x) = mu(c x) / mu(c), mu(y) = ln(1 + y) - y / (1 + y) (diffsky's
``fake_sats._qnfw``, which ``covmocks.galaxies.phase_space`` calls).
"""

from __future__ import annotations

import numpy as np

# Concentrations the quantile table spans (DM14 gives 3 to 15 for 1e9 to 1e16 Msun/h, z <= 5);
# outside it the quantile is the table's end value (clipped).
_LOG10_C = np.linspace(-1.0, 3.0, 401)


def concentration_dm14(log10_mass_msun_h, redshift):
    """NFW concentration from Dutton & Maccio (2014), their c200c-M200c fit (M in Msun/h)."""
    b = -0.101 + 0.026 * redshift
    a = 0.520 + (0.905 - 0.520) * np.exp(-0.617 * redshift**1.21)
    return 10 ** (a + b * (log10_mass_msun_h - 12.0))


def _mu(y):
    return np.log1p(y) - y / (1.0 + y)


def radius_fraction_quantile(p, concentration, steps: int = 60) -> np.ndarray:
    """x in [0, 1] with mu(c x) / mu(c) = ``p`` (broadcast with ``concentration``): the
    quantile of r / r_host, by bisection (to 2**-steps)."""
    p, c = np.broadcast_arrays(np.asarray(p, np.float64), np.asarray(concentration, np.float64))
    lo, hi = np.zeros_like(c), np.ones_like(c)
    target = p * _mu(c)
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        below = _mu(c * mid) < target
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return 0.5 * (lo + hi)


_MEDIAN_TABLE = radius_fraction_quantile(0.5, 10**_LOG10_C)


def median_radius_fraction(concentration) -> np.ndarray:
    """The median of x = r / r_host for NFW concentration ``concentration`` (any shape):
    tabulated on 401 log-spaced concentrations from 0.1 to 1000, interpolated in log c
    (within 1e-5 of the exact median)."""
    log_c = np.log10(np.asarray(concentration, dtype=np.float64))
    return np.interp(log_c, _LOG10_C, _MEDIAN_TABLE)
