"""Satellite phase space on their hosts (NumPy: diffsky's ``fake_sats`` kernels, as
``covmocks.core.nfw`` writes them out).

NFW radii (``nfw.radius_fraction``, Dutton & Maccio 2014 concentration) out to the host radius,
isotropic directions, Gaussian velocities with 1D dispersion V_vir/sqrt(3)
(``nfw.virial_velocity``) about the host velocity. Everything that depends on the
host alone (concentration, virial velocity) is computed once per host, then gathered.
"""

from __future__ import annotations

import numpy as np

from covmocks.core import nfw, units


def satellite_phase_space(hosts, sat_host, u_pos, n_vel, header) -> tuple[np.ndarray, np.ndarray]:
    """Positions (comoving Mpc/h, wrapped into the box) and velocities (km/s) of satellites
    ``sat_host`` (host index of each) drawn from their uniforms ``u_pos`` (n, 3) and normals
    ``n_vel`` (n, 3)."""
    n = len(sat_host)
    if not n:
        return np.zeros((0, 3)), np.zeros((0, 3))
    h, z, box = header.cosmology.h, header.redshift, header.box_size
    has_sats = np.unique(sat_host)  # per host, only the hosts that have satellites
    conc_host = np.zeros(len(hosts))
    conc_host[has_sats] = nfw.concentration_dm14(np.log10(hosts.mass[has_sats]), z)
    sigma_host = np.zeros(len(hosts))
    sigma_host[has_sats] = nfw.virial_velocity(
        units.mass_h_to_msun(hosts.mass[has_sats], h),
        units.comoving_h_to_physical_mpc(hosts.radius[has_sats], h, z),
    ) / np.sqrt(3.0)
    u = np.asarray(u_pos, dtype=np.float64)
    r_frac = nfw.radius_fraction(u[:, 0], conc_host[sat_host])
    direction = np.stack(nfw.spherical_directions(np.concatenate([u[:, 1], u[:, 2]])), axis=1)
    offset = direction * (r_frac * hosts.radius[sat_host])[:, None]
    pos = units.wrap_periodic(hosts.pos[sat_host] + offset, box)
    vel = hosts.vel[sat_host] + n_vel * sigma_host[sat_host][:, None]
    return pos, vel
