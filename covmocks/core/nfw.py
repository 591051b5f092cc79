"""The NFW profile the model places satellites on, in NumPy (no JAX): its concentration, the
quantiles of its truncated radial distribution, isotropic directions and the virial velocity.

A satellite's radius is r = x r_host with x in [0, 1] drawn from the NFW mass profile truncated
at the host radius: P(< x) = mu(c x) / mu(c), mu(y) = ln(1 + y) - y / (1 + y).

``radius_fraction``, ``spherical_directions`` and ``virial_velocity`` are diffsky's
``fake_sats`` functions (``_qnfw``, ``_random_spherical_position``,
``calculate_virial_velocity``) written out operation for operation, so that they give its bits
(``tests/test_validation_population.py`` holds them to it) without importing diffsky, which
costs a fresh process about 2.7 s (``covmocks.core.remembered``).
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


# diffsky's fake_sats.ellipsoidal_velocities.NEWTON_G, (Mpc / Msun) (km/s)^2
NEWTON_G = 4.3e-09


def radius_fraction(u, concentration) -> np.ndarray:
    """x = r / r_host (shape of ``u``) with P(< x) = ``u`` for NFW ``concentration``: the
    closed-form quantile through Lambert's W (diffsky's ``_qnfw``; ``u`` is not modified)."""
    from scipy import special

    y = 1 * np.asarray(concentration)
    p = np.asarray(u) * (np.log(1.0 + y) - y / (1.0 + y))
    return (-(1.0 / np.real(special.lambertw(-np.exp(-p - 1)))) - 1) / concentration


def spherical_directions(u) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit vectors (x, y, z), each of shape (n,), isotropic, from uniforms ``u`` of shape
    (2 n,): the first half gives cos(theta), the second phi (diffsky's
    ``_random_spherical_position``)."""
    nhalf = u.size // 2
    cos_t = 2 * u[:nhalf] - 1
    phi = 2 * np.pi * u[nhalf:]
    sin_t = np.sqrt(1.0 - cos_t * cos_t)
    return sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t


def virial_velocity(mass_msun, radius_mpc) -> np.ndarray:
    """V_vir = sqrt(G M / R) in km/s of halos of mass ``mass_msun`` (Msun) and radius
    ``radius_mpc`` (physical Mpc) (diffsky's ``calculate_virial_velocity``)."""
    return np.sqrt(NEWTON_G * mass_msun / radius_mpc)
