"""Satellite phase space on their hosts (NumPy: diffsky's ``fake_sats`` kernels).

NFW radii (``_qnfw``, Dutton & Maccio 2014 concentration) out to the host radius, isotropic
directions, Gaussian velocities with 1D dispersion V_vir/sqrt(3)
(``calculate_virial_velocity``) about the host velocity. Everything that depends on the
host alone (concentration, virial velocity) is computed once per host, then gathered.
"""

from __future__ import annotations

import numpy as np

from covmocks.core import units
from covmocks.core.nfw import concentration_dm14


def satellite_phase_space(hosts, sat_host, u_pos, n_vel, header) -> tuple[np.ndarray, np.ndarray]:
    """Positions (comoving Mpc/h, wrapped into the box) and velocities (km/s) of satellites
    ``sat_host`` (host index of each) drawn from their uniforms ``u_pos`` (n, 3) and normals
    ``n_vel`` (n, 3)."""
    from diffsky.fake_sats.ellipsoidal_velocities import calculate_virial_velocity
    from diffsky.fake_sats.nfw_config_space import _qnfw, _random_spherical_position

    n = len(sat_host)
    if not n:
        return np.zeros((0, 3)), np.zeros((0, 3))
    h, z, box = header.cosmology.h, header.redshift, header.box_size
    has_sats = np.unique(sat_host)  # per host, only the hosts that have satellites
    conc_host = np.zeros(len(hosts))
    conc_host[has_sats] = concentration_dm14(np.log10(hosts.mass[has_sats]), z)
    sigma_host = np.zeros(len(hosts))
    sigma_host[has_sats] = calculate_virial_velocity(
        units.mass_h_to_msun(hosts.mass[has_sats], h),
        units.comoving_h_to_physical_mpc(hosts.radius[has_sats], h, z),
    ) / np.sqrt(3.0)
    u = np.asarray(u_pos, dtype=np.float64)
    r_frac = _qnfw(u[:, 0].copy(), conc_host[sat_host])  # _qnfw scales its input in place
    direction = np.stack(_random_spherical_position(np.concatenate([u[:, 1], u[:, 2]])), axis=1)
    offset = direction * (r_frac * hosts.radius[sat_host])[:, None]
    pos = units.wrap_periodic(hosts.pos[sat_host] + offset, box)
    vel = hosts.vel[sat_host] + n_vel * sigma_host[sat_host][:, None]
    return pos, vel
