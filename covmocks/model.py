"""Galaxy models: a small registry, and covmocks' diffsky population model.

A model turns a block of host halos into galaxies. It is named and versioned, so a new
model version plugs in by registering a class; the pipeline only calls ``populate``.

Randomness never depends on how hosts are chunked or which process runs them: every
host has its own key, ``fold_in(fold_in(snapshot_key, id >> 32), id & 0xffffffff)``,
split per purpose; satellite ``j`` of a host is keyed ``fold_in(satellite_base, j)``; all
draws are per object (``vmap`` over single-object kernels). ``snapshot_key`` derives
from (seed, realization, snapshot).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math

import numpy as np

from covmocks import units
from covmocks.errors import InputError
from covmocks.halos import HaloBlock, SimulationHeader

log = logging.getLogger(__name__)

MODELS: dict[str, type] = {}


def register_model(cls):
    """Class decorator: make a model available by its ``name``."""
    MODELS[cls.name] = cls
    return cls


def get_model(name: str, params: dict | None = None):
    """Instantiate a registered model by name with its parameters."""
    if name not in MODELS:
        raise InputError(f"unknown galaxy model {name!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[name](**(params or {}))


def snapshot_key(seed: int, realization: int, snapshot: int):
    """The root random key of one (seed, realization, snapshot) box."""
    from jax import random as jran

    key = jran.PRNGKey(seed)
    return jran.fold_in(jran.fold_in(key, realization), snapshot)


@dataclasses.dataclass(frozen=True)
class CosmicTimes:
    """Cosmic times of one snapshot (t_obs: age at its redshift; t0: age today), in Gyr,
    from the simulation's own cosmology."""

    header: SimulationHeader
    t_obs: float
    t0: float

    @classmethod
    def from_header(cls, header: SimulationHeader) -> CosmicTimes:
        from dsps.cosmology.flat_wcdm import _age_at_z_kern, age_at_z0

        c = header.cosmology
        cosmo = (c.Om0, c.w0, c.wa, c.h)
        return cls(header, float(_age_at_z_kern(header.redshift, *cosmo)), float(age_at_z0(*cosmo)))


# A galaxy is quenched at the snapshot where its specific star formation rate is below this
# many times 1 / t_obs (t_obs: the cosmic age at the snapshot): sSFR < 1 / (5 t_H), the
# definition of Franx et al. (2008) and Pacifici et al. (2016).
QUENCHED_SSFR_TIMES_T_OBS = 0.2


def quenched_log_ssfr_threshold(t_obs_gyr: float) -> float:
    """log10 of the sSFR (1/yr) below which a galaxy is quenched at cosmic age ``t_obs_gyr``
    (Gyr): log10(0.2 / t_obs), t_obs in yr. The one definition of ``is_quenched``.

    A catalog's ``is_quenched`` is ``log10_ssfr < float32(quenched_log_ssfr_threshold(
    t_obs_gyr))`` with its stored float32 ``log10_ssfr`` and its ``t_obs_gyr`` attribute.
    """
    return math.log10(QUENCHED_SSFR_TIMES_T_OBS / (float(t_obs_gyr) * 1e9))


def quenched_at_snapshot(log10_sfr, log10_mstar, t_obs_gyr: float) -> np.ndarray:
    """``is_quenched``: the sSFR state at the snapshot (``quenched_log_ssfr_threshold``),
    evaluated on sSFR as the catalog stores it (float32), so the column agrees exactly
    with the file's ``log10_ssfr``."""
    log10_ssfr = (np.asarray(log10_sfr) - np.asarray(log10_mstar)).astype(np.float32)
    return log10_ssfr < np.float32(quenched_log_ssfr_threshold(t_obs_gyr))


# Galaxy columns a model returns, in galaxy order (each central followed by its satellites).
GALAXY_COLUMNS = (
    "pos",  # (n, 3) comoving Mpc/h in [0, box)
    "vel",  # (n, 3) km/s
    "is_central",  # (n,) bool
    "host_local",  # (n,) index of the host halo within the block
    "log10_mhalo",  # (n,) log10 Msun at the snapshot
    "log10_mpeak",  # (n,) log10 Msun
    "log10_mstar",  # (n,) log10 Msun, stellar mass formed by t_obs
    "log10_sfr",  # (n,) log10 Msun/yr at t_obs
    "is_quenched",  # (n,) bool, quenched at t_obs: quenched_at_snapshot (the sSFR state)
    "diffstar_quenched_branch",  # (n,) bool, diffstarpop's Monte Carlo branch: NOT the state
)


def bucket_size(n: int, smallest: int, largest: int) -> int:
    """The padded batch length for ``n`` objects: a power of two in [smallest, largest]."""
    size = smallest
    while size < n and size < largest:
        size *= 2
    return min(size, largest)


def padded_map(fn, arrays: dict, smallest: int, largest: int) -> dict:
    """Apply ``fn`` to ``arrays`` (leading axis n) in padded batches of a few fixed shapes.

    Padding repeats the first row so the kernels see valid inputs; outputs are trimmed.
    Returns NumPy arrays concatenated along the leading axis.
    """
    n = len(next(iter(arrays.values())))
    outputs = []
    for start in range(0, n, largest):
        stop = min(start + largest, n)
        size = bucket_size(stop - start, smallest, largest)
        batch = {}
        for name, arr in arrays.items():
            part = arr[start:stop]
            pad = np.repeat(part[:1], size - len(part), axis=0)
            batch[name] = np.concatenate([part, pad])
        result = fn(**batch)
        outputs.append({k: np.asarray(v)[: stop - start] for k, v in result.items()})
    if not outputs:
        return {}
    return {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}


def _argus_inverse_cdf_table(chi: float, n: int = 4096):
    """Tables (cdf, x) for sampling the ARGUS(chi) distribution by interpolation.

    With y = 1 - x^2 the ARGUS density becomes a Gamma(3/2, rate chi^2/2) density
    truncated to 0 < y < 1, whose CDF is a regularized incomplete gamma function.
    """
    from scipy.special import gammainc

    y = np.linspace(0.0, 1.0, n)
    cdf_y = gammainc(1.5, 0.5 * chi**2 * y) / gammainc(1.5, 0.5 * chi**2)
    # x = sqrt(1 - y) decreases with y: P(X <= x) = 1 - F_y(1 - x^2)
    x = np.sqrt(1.0 - y)[::-1]
    cdf_x = 1.0 - cdf_y[::-1]
    return cdf_x, x


def concentration_dm14(log10_mass_msun_h, redshift):
    """NFW concentration from Dutton & Maccio (2014), their c200c-M200c fit (M in Msun/h)."""
    b = -0.101 + 0.026 * redshift
    a = 0.520 + (0.905 - 0.520) * np.exp(-0.617 * redshift**1.21)
    return 10 ** (a + b * (log10_mass_msun_h - 12.0))


@functools.cache
def _build_kernels(n_t: int):
    """JIT-compiled per-object kernels, vmapped over a batch.

    Cached per process, so every model instance shares the compiled kernels: each padded
    batch shape compiles once per process (or loads from the persistent cache).
    """
    import jax
    from diffmah.diffmah_kernels import DiffmahParams, _log_mah_kern
    from diffmah.diffmahpop_kernels.mc_bimod_cens import mc_diffmah_params_singlecen
    from diffmah.diffmahpop_kernels.mc_bimod_sats import mc_diffmah_params_singlesat
    from diffsky.mass_functions.mc_subs import (
        _compute_mean_subhalo_counts,
        generate_subhalopop_kern,
    )
    from diffsky.mass_functions.mc_tinfall import ARGUS_CHI, _get_dt_argus
    from diffstar.defaults import T_TABLE_MIN
    from diffstar.diffstarpop import mc_diffstar_sfh_singlegal
    from diffstar.utils import cumulative_mstar_formed
    from jax import numpy as jnp
    from jax import random as jran

    argus_cdf, argus_x = (jnp.asarray(a) for a in _argus_inverse_cdf_table(ARGUS_CHI))

    def pick(is_a, a, b):
        return DiffmahParams(*[jnp.where(is_a, x, y) for x, y in zip(a, b, strict=True)])

    def corrected(mah, lgm_obs, t_obs, lgt0):
        # diffmahpop's draws land ~0.025 dex above the requested mass at t_obs; shift
        # logm0 so the history passes through the catalog mass (as diffsky does).
        delta = _log_mah_kern(mah, t_obs, lgt0) - lgm_obs
        return mah._replace(logm0=mah.logm0 - delta)

    def star_formation(sfhpop, mah, upid, lgmu_inf, lgmhost_inf, dt_inf, key, ctx):
        t0 = 10 ** ctx["lgt0"]
        tarr = jnp.linspace(T_TABLE_MIN, ctx["t_obs"], n_t)
        logmp0 = _log_mah_kern(mah, t0, ctx["lgt0"])
        res = mc_diffstar_sfh_singlegal(
            sfhpop, mah, logmp0, upid, lgmu_inf, lgmhost_inf, dt_inf, key, tarr,
            lgt0=ctx["lgt0"], fb=ctx["fb"],
        )  # fmt: skip
        sfh = jnp.where(res.mc_is_q, res.sfh_q, res.sfh_ms)
        mstar = cumulative_mstar_formed(tarr, sfh)[-1]
        return jnp.log10(mstar), jnp.log10(sfh[-1]), res.mc_is_q

    def central(key_hi, key_lo, lgm_obs, mahpop, sfhpop, ctx, root):
        key = jran.fold_in(jran.fold_in(root, key_hi), key_lo)
        k_mah, k_early, k_nsat, k_sats, k_sfh = jran.split(key, 5)
        t_obs, lgt0 = ctx["t_obs"], ctx["lgt0"]
        early, late, frac_early = mc_diffmah_params_singlecen(mahpop, lgm_obs, t_obs, k_mah, lgt0)
        mah = corrected(pick(jran.uniform(k_early) < frac_early, early, late), lgm_obs, t_obs, lgt0)
        mean_nsat = _compute_mean_subhalo_counts(lgm_obs, ctx["lgmsub_min"])
        n_sat = jran.poisson(k_nsat, mean_nsat)
        lgmstar, lgsfr, is_q = star_formation(sfhpop, mah, -1, 0.0, 0.0, -100.0, k_sfh, ctx)
        return dict(
            mah=jnp.array(mah),
            n_sat=n_sat,
            sat_key=k_sats,
            log10_mpeak=_log_mah_kern(mah, jnp.minimum(mah.t_peak, t_obs), lgt0),
            log10_mstar=lgmstar,
            log10_sfr=lgsfr,
            diffstar_quenched_branch=is_q,
        )

    def satellite(sat_key, j, host_lgm, host_mah, mahpop, sfhpop, ctx):
        key = jran.fold_in(sat_key, j)
        k_mu, k_inf, k_mah, k_early, k_sfh, k_pos, k_vel = jran.split(key, 7)
        t_obs, lgt0 = ctx["t_obs"], ctx["lgt0"]
        host_mah = DiffmahParams(*host_mah)
        lgmu = generate_subhalopop_kern(jran.uniform(k_mu), host_lgm, ctx["lgmsub_min"])
        # time since infall: diffsky's ARGUS model (mc_tinfall), drawn per object
        x = jnp.interp(jran.uniform(k_inf), argus_cdf, argus_x)
        dt_inf = (1.0 - x) * _get_dt_argus(lgmu, t_obs) * t_obs
        t_inf = jnp.maximum(t_obs - dt_inf, 2 * T_TABLE_MIN)
        dt_inf = t_obs - t_inf
        lgm_sub = host_lgm + lgmu
        early, late, frac_early = mc_diffmah_params_singlesat(
            mahpop, lgm_sub, t_obs, k_mah, lgt0, t_peak=t_inf
        )
        mah = corrected(pick(jran.uniform(k_early) < frac_early, early, late), lgm_sub, t_obs, lgt0)
        lgmhost_inf = _log_mah_kern(host_mah, t_inf, lgt0)
        lgm_inf = _log_mah_kern(mah, t_inf, lgt0)
        lgmstar, lgsfr, is_q = star_formation(
            sfhpop, mah, 0, lgm_inf - lgmhost_inf, lgmhost_inf, dt_inf, k_sfh, ctx
        )
        return dict(
            log10_mhalo=_log_mah_kern(mah, t_obs, lgt0),
            log10_mpeak=lgm_inf,
            log10_mstar=lgmstar,
            log10_sfr=lgsfr,
            diffstar_quenched_branch=is_q,
            u_pos=jran.uniform(k_pos, (3,)),
            n_vel=jran.normal(k_vel, (3,)),
        )

    central_batch = jax.jit(jax.vmap(central, in_axes=(0, 0, 0, None, None, None, None)))
    satellite_batch = jax.jit(jax.vmap(satellite, in_axes=(0, 0, 0, 0, None, None, None)))
    return central_batch, satellite_batch


@register_model
class DiffskySFH:
    """Hosts -> centrals + synthetic subhalo satellites with diffstar star-formation histories.

    Physics (the Roman GRS PIT diffsky model's building blocks):
    - central mass assembly: diffmahpop early/late mixture (``mc_bimod_cens``), history
      shifted to pass through the catalog mass at t_obs;
    - satellites: Poisson count and Mpeak/Mhost from diffsky's CCSHMF (``mc_subs``),
      time since infall from diffsky's ARGUS model, assembly from ``mc_bimod_sats`` with
      t_peak at infall; NFW radii (``fake_sats`` ``_qnfw``, Dutton & Maccio 2014
      concentration) out to the host radius, isotropic directions, Gaussian velocities
      with 1D dispersion V_vir/sqrt(3) (``fake_sats.calculate_virial_velocity``) about
      the host velocity;
    - star formation: diffstarpop (``diffstar.diffstarpop``) main-sequence/quenched draw
      with lgt0 and fb from the simulation's cosmology; stellar mass is the mass formed
      by t_obs (no mass loss), SFR is the instantaneous rate at t_obs.
    - ``is_quenched`` is the galaxy's state at t_obs, sSFR < 0.2 / t_obs
      (``quenched_log_ssfr_threshold``); diffstarpop's Monte Carlo branch is kept as
      ``diffstar_quenched_branch`` (a quenched-branch history may still be star-forming at
      t_obs: it can quench later).

    Versions: 1.0 wrote the branch as ``is_quenched``; 1.1 writes the state as
    ``is_quenched`` and the branch as ``diffstar_quenched_branch`` (every other column and
    every random draw unchanged).

    Parameters: ``log10_msub_min_msun``, the smallest synthetic subhalo Mpeak, log10 Msun;
    ``n_t_table``, time steps of the star-formation history; ``diffmahpop`` and
    ``diffstarpop``, overrides of the population parameters by name; ``batch_min`` and
    ``batch_max``, the smallest and largest padded batch (objects per kernel call).
    """

    name = "diffsky_sfh"
    version = "1.1"

    def __init__(
        self,
        log10_msub_min_msun: float = 10.5,
        n_t_table: int = 100,
        diffmahpop: dict | None = None,
        diffstarpop: dict | None = None,
        batch_min: int = 1024,
        batch_max: int = 65536,
    ):
        import jax

        # Importing diffsky switches jax_enable_x64 on. Switch it on before any population
        # parameter array exists, so the arrays' dtypes (and the output's last bits) never
        # depend on whether a halo source happened to import diffsky first.
        jax.config.update("jax_enable_x64", True)
        from diffmah.diffmahpop_kernels.bimod_censat_params import DEFAULT_DIFFMAHPOP_PARAMS
        from diffstar.diffstarpop import DEFAULT_DIFFSTARPOP_PARAMS

        self.log10_msub_min_msun = float(log10_msub_min_msun)
        self.n_t_table = int(n_t_table)
        self.batch_min, self.batch_max = int(batch_min), int(batch_max)
        if not (0 < self.batch_min <= self.batch_max):
            raise InputError(
                f"batch sizes must satisfy 0 < batch_min <= batch_max: {batch_min}, {batch_max}"
            )
        self.mahpop = _override(DEFAULT_DIFFMAHPOP_PARAMS, diffmahpop, "diffmahpop")
        self.sfhpop = _override(DEFAULT_DIFFSTARPOP_PARAMS, diffstarpop, "diffstarpop")
        self.params = {
            "log10_msub_min_msun": self.log10_msub_min_msun,
            "n_t_table": self.n_t_table,
            "diffmahpop": dict(diffmahpop or {}),
            "diffstarpop": dict(diffstarpop or {}),
        }
        self._central, self._satellite = _build_kernels(self.n_t_table)

    def context(self, snap: CosmicTimes) -> dict:
        """Per-snapshot scalars that the kernels take as traced values (no recompile)."""
        import jax.numpy as jnp

        return {
            "t_obs": jnp.float32(snap.t_obs),
            "lgt0": jnp.float32(np.log10(snap.t0)),
            "fb": jnp.float32(snap.header.cosmology.fb),
            "lgmsub_min": jnp.float32(self.log10_msub_min_msun),
        }

    def populate(self, hosts: HaloBlock, snap: CosmicTimes, root_key) -> dict:
        """Galaxies of ``hosts``: ``GALAXY_COLUMNS``, each central followed by its satellites."""
        header = snap.header
        h, z, box = header.cosmology.h, header.redshift, header.box_size
        ctx = self.context(snap)
        n_host = len(hosts)
        lgm_host = units.log_mass_h_to_msun(np.log10(hosts.mass), h)
        ids = hosts.ids.astype(np.uint64)

        cen = padded_map(
            lambda key_hi, key_lo, lgm_obs: self._central(
                key_hi, key_lo, lgm_obs, self.mahpop, self.sfhpop, ctx, root_key
            ),
            {
                "key_hi": (ids >> np.uint64(32)).astype(np.uint32),
                "key_lo": (ids & np.uint64(0xFFFFFFFF)).astype(np.uint32),
                "lgm_obs": lgm_host.astype(np.float32),
            },
            self.batch_min,
            self.batch_max,
        )
        n_sat = cen["n_sat"].astype(np.int64)
        sat_host = np.repeat(np.arange(n_host), n_sat)
        first_sat = np.cumsum(n_sat) - n_sat
        j = np.arange(len(sat_host)) - first_sat[sat_host]
        sat = padded_map(
            lambda sat_key, j, host_lgm, host_mah: self._satellite(
                sat_key, j, host_lgm, host_mah, self.mahpop, self.sfhpop, ctx
            ),
            {
                "sat_key": cen["sat_key"][sat_host],
                "j": j.astype(np.uint32),
                "host_lgm": lgm_host[sat_host].astype(np.float32),
                "host_mah": cen["mah"][sat_host],
            },
            self.batch_min,
            self.batch_max,
        )

        # Satellite phase space on the host (NumPy: diffsky's fake_sats kernels).
        from diffsky.fake_sats.ellipsoidal_velocities import calculate_virial_velocity
        from diffsky.fake_sats.nfw_config_space import _qnfw, _random_spherical_position

        sat_pos = np.zeros((len(sat_host), 3))
        sat_vel = np.zeros((len(sat_host), 3))
        if len(sat_host):
            u = sat["u_pos"].astype(np.float64)
            conc = concentration_dm14(np.log10(hosts.mass[sat_host]), z)
            r_frac = _qnfw(u[:, 0].copy(), conc)  # _qnfw scales its input in place
            direction = np.stack(
                _random_spherical_position(np.concatenate([u[:, 1], u[:, 2]])), axis=1
            )
            r_host = hosts.radius[sat_host]
            sat_pos = units.wrap_periodic(
                hosts.pos[sat_host] + direction * (r_frac * r_host)[:, None], box
            )
            vvir = calculate_virial_velocity(
                units.mass_h_to_msun(hosts.mass[sat_host], h),
                units.comoving_h_to_physical_mpc(r_host, h, z),
            )
            sat_vel = hosts.vel[sat_host] + sat["n_vel"] * (vvir / np.sqrt(3.0))[:, None]

        # Interleave: host i's central at offset[i], its satellites right after it.
        n_gal = n_host + len(sat_host)
        offset = np.arange(n_host) + first_sat
        is_central = np.zeros(n_gal, dtype=bool)
        is_central[offset] = True
        sat_slot = ~is_central
        out = {
            "pos": np.empty((n_gal, 3)),
            "vel": np.empty((n_gal, 3)),
            "is_central": is_central,
            "host_local": np.repeat(np.arange(n_host), n_sat + 1),
        }
        out["pos"][offset], out["pos"][sat_slot] = hosts.pos, sat_pos
        out["vel"][offset], out["vel"][sat_slot] = hosts.vel, sat_vel
        cen_cols = {**cen, "log10_mhalo": lgm_host}
        for name in ("log10_mhalo", "log10_mpeak", "log10_mstar", "log10_sfr",
                     "diffstar_quenched_branch"):  # fmt: skip
            col = np.empty(n_gal, dtype=cen_cols[name].dtype)
            col[offset] = cen_cols[name]
            col[sat_slot] = sat[name] if len(sat_host) else []
            out[name] = col
        out["is_quenched"] = quenched_at_snapshot(out["log10_sfr"], out["log10_mstar"], snap.t_obs)
        return out


def _override(defaults, overrides: dict | None, label: str):
    """Replace named fields of a population parameter namedtuple."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(defaults._fields))
    if unknown:
        raise InputError(f"unknown {label} parameter(s): {', '.join(unknown)}")
    return defaults._replace(**{k: float(v) for k, v in overrides.items()})
