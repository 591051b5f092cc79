"""The one place where h-scaled simulation units become the model's physical units.

AbacusSummit (and most N-body codes) store masses in Msun/h and lengths in comoving
Mpc/h. The diffsky models take Msun and Mpc without h. Catalog outputs keep positions
in comoving Mpc/h (the simulation's frame) and masses in Msun.
"""

import numpy as np

# Critical density today in (Msun/h) / (comoving Mpc/h)^3.
RHO_CRIT0_H = 2.77536627e11

UNITS = {
    "position": "comoving Mpc/h",
    "velocity": "km/s (peculiar)",
    "mass": "Msun",
    "log_mass": "log10(Msun)",
    "log_sfr": "log10(Msun/yr)",
    "log_ssfr": "log10(1/yr)",
    "time": "Gyr",
    "radius": "comoving Mpc/h",
    "dimensionless": "dimensionless",
}


# A halo source's ``radius_definition`` where the host radius is R200m of its mass exactly
# (the population checks of a catalog then expect no shift from the input radius).
R200M_DEFINITION = "R200m from the mass"


def r200m_h(mass_msun_h, Om0: float) -> np.ndarray:
    """R200m (comoving Mpc/h) of halos of mass ``mass_msun_h`` (Msun/h): the radius within
    which the mean density is 200 times the mean matter density."""
    return np.cbrt(3 * np.asarray(mass_msun_h) / (4 * np.pi * 200 * Om0 * RHO_CRIT0_H))


def mass_h_to_msun(mass_msun_h, h):
    """Msun/h -> Msun."""
    return np.asarray(mass_msun_h, dtype=np.float64) / h


def log_mass_h_to_msun(log_mass_msun_h, h):
    """log10(Msun/h) -> log10(Msun)."""
    return np.asarray(log_mass_msun_h, dtype=np.float64) - np.log10(h)


def log_mass_msun_to_h(log_mass_msun, h):
    """log10(Msun) -> log10(Msun/h)."""
    return np.asarray(log_mass_msun, dtype=np.float64) + np.log10(h)


def comoving_h_to_physical_mpc(length_mpc_h, h, redshift):
    """Comoving Mpc/h -> physical (proper) Mpc at ``redshift``."""
    return np.asarray(length_mpc_h, dtype=np.float64) / h / (1.0 + redshift)


def physical_mpc_to_comoving_h(length_mpc, h, redshift):
    """Physical Mpc at ``redshift`` -> comoving Mpc/h."""
    return np.asarray(length_mpc, dtype=np.float64) * h * (1.0 + redshift)


def wrap_periodic(pos, box_size):
    """Wrap positions (any shape, same unit as ``box_size``) into [0, box_size), in float64
    and once stored as float32 (the catalog's ``pos``): a position less than half a float32
    step below ``box_size`` (1.5e-5 Mpc/h at 500 Mpc/h) would be stored as ``box_size``, so
    it is put at 0, its periodic image. A 2e6-host box (7.3e6 galaxies, 340 Mpc/h) held one
    such galaxy and failed ``positions_in_box``."""
    wrapped = np.mod(pos, box_size)
    # float rounding can map -tiny to exactly box_size
    wrapped = np.where(wrapped >= box_size, wrapped - box_size, wrapped)
    return np.where(wrapped.astype(np.float32) >= box_size, 0.0, wrapped)
