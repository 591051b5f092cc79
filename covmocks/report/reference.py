"""The report's reference curves: Madau & Dickinson (2014, ARA&A 52, 415), eq. 15 (cosmic SFR
density, Salpeter IMF) and the stellar mass density it implies, in the fit's cosmology
(h=0.7, Om0=0.3, OL=0.7). Densities per comoving Mpc^3, times in yr.

The stellar mass density is given three ways, so that each is compared with its like:
``"published"``, their eq. 2, (1 - R) times the SFRD integrated over time with R = 0.27 (their
return fraction, for a Salpeter IMF); ``"formed"``, the integral alone (the catalogs'
``log10_mstar``, mass formed); ``"surviving"``, the integral weighted by the fraction surviving
at each age, Behroozi, Wechsler & Conroy (2013, ApJ 770, 57) eq. 14 for a Chabrier IMF,
1 - 0.05 ln(1 + t / 1.4 Myr): within 0.02 of DSPS's, which makes the catalogs'
``log10_mstar_surviving`` (``tests/test_mass_loss.py``), and numpy only, so that the report
imports no JAX.
"""

from __future__ import annotations

import numpy as np

MD14_SALPETER_TO_CHABRIER = 0.63
MD14_RETURN_FRACTION = 0.27
MD14_H, MD14_OM0, MD14_OL0 = 0.7, 0.3, 0.7
MASSES = ("published", "formed", "surviving")
_KM_PER_MPC, _S_PER_YR = 3.0856775814913673e19, 3.15576e7
_H0_PER_YR = 100.0 * MD14_H * _S_PER_YR / _KM_PER_MPC
_X_MAX, _N_X = np.log(51.0), 40001  # the surviving integral's grid in ln(1+z), to z = 50


def md14_sfrd(z, chabrier: bool = True) -> np.ndarray:
    """Madau & Dickinson (2014) cosmic SFR density, Msun/yr/Mpc^3 (Salpeter, x0.63 for
    Chabrier)."""
    zp1 = 1.0 + np.asarray(z, np.float64)
    psi = 0.015 * zp1**2.7 / (1.0 + (zp1 / 2.9) ** 5.6)
    return psi * (MD14_SALPETER_TO_CHABRIER if chabrier else 1.0)


def _hubble_per_yr(z):
    return _H0_PER_YR * np.sqrt(MD14_OM0 * (1.0 + z) ** 3 + MD14_OL0)


def md14_smd(z, chabrier: bool = True, mass: str = "published") -> np.ndarray:
    """Stellar mass density (Msun/Mpc^3) at ``z`` implied by ``md14_sfrd``: ``mass`` one of
    ``MASSES`` (module docstring), integrated numerically."""
    if mass not in MASSES:
        raise ValueError(f"mass must be one of {MASSES}, got {mass!r}")
    z = np.asarray(z, np.float64)
    if mass == "surviving":
        return _surviving(z, chabrier)
    from scipy.integrate import quad

    def integrand(x):
        return md14_sfrd(x, chabrier) / ((1.0 + x) * _hubble_per_yr(x))

    values = np.array([quad(integrand, zi, np.inf, limit=200)[0] for zi in np.atleast_1d(z)])
    kept = 1.0 - MD14_RETURN_FRACTION if mass == "published" else 1.0
    return kept * values.reshape(np.shape(z))


def surviving_fraction_bwc13(age_gyr) -> np.ndarray:
    """Fraction of the mass formed still in stars at ``age_gyr`` (Gyr), Chabrier IMF:
    Behroozi, Wechsler & Conroy (2013) eq. 14."""
    return 1.0 - 0.05 * np.log1p(np.asarray(age_gyr, np.float64) * 1e9 / 1.4e6)


def _surviving(z: np.ndarray, chabrier: bool) -> np.ndarray:
    """The SFRD integrated over ln(1+z') > ln(1+z), weighted by the fraction surviving at
    the age t(z) - t(z') (trapezoid rule on ``_N_X`` steps to z = 50)."""
    x = np.linspace(0.0, _X_MAX, _N_X)
    zx = np.expm1(x)
    dt_dx = 1.0 / _hubble_per_yr(zx)  # yr per unit ln(1+z)
    # time after z = 50 at each x (yr): the age differences are what matter
    t = np.concatenate([[0.0], np.cumsum(0.5 * np.diff(x) * (dt_dx[1:] + dt_dx[:-1]))])
    t = t[-1] - t
    psi_dt = md14_sfrd(zx, chabrier) * dt_dx
    out = []
    for zi in np.atleast_1d(z):
        xi = np.log1p(zi)
        before = x >= xi
        xs = np.concatenate([[xi], x[before]])
        ti = np.interp(xi, x, t)
        ages_gyr = (ti - np.concatenate([[ti], t[before]])) / 1e9
        g = np.concatenate([[np.interp(xi, x, psi_dt)], psi_dt[before]])
        g = g * surviving_fraction_bwc13(ages_gyr)
        out.append(np.sum(0.5 * np.diff(xs) * (g[1:] + g[:-1])))
    return np.array(out).reshape(np.shape(z))
