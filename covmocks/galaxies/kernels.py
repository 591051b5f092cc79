"""The diffsky model's JAX kernels: per-object draws (``vmap`` over single-object kernels) and
the star-formation-history evaluation.

Four kernels, each jitted once per process and per setting (``build_draw_kernels``,
``build_sfh_kernel``):

- ``central``: a host's mass assembly (diffmahpop, early/late, shifted through the catalog
  mass), its satellite count and key, and its diffstarpop parameters (the branch picked);
- ``subhalo_cdf``: the CDF table of mu = Mpeak,sub / Mhost of a host with satellites
  (diffsky's ``generate_subhalopop_kern`` builds it per satellite; it depends on the host
  alone, so it is built once per host), and ``satellite_uniform``, the uniform a satellite
  draws for its mu; ``subhalo_lgmu`` inverts the host's table at it (NumPy, ``jnp.interp``'s
  arithmetic), so no satellite carries its host's whole table;
- ``satellite``: a satellite's infall time, mass assembly and diffstarpop parameters, and
  the uniforms and normals of its phase space;
- ``sfh``: the star-formation history of any galaxy on ``n_t`` time steps, integrated to the
  stellar mass formed by t_obs and to the mass surviving at t_obs (``galaxies.mass_loss``),
  and the SFR at t_obs, in float32 or float64 arithmetic.

The random draws are always float64 (diffsky switches on JAX's 64-bit mode), so both
precisions draw the same galaxies and differ only in the arithmetic of the histories. Only the
branch the galaxy is on is evaluated (diffstarpop's ``mc_diffstar_sfh_singlegal`` evaluates
both the main-sequence and the quenched history and then one is kept).
"""

from __future__ import annotations

import functools

import numpy as np

from covmocks.core.remembered import remembered
from covmocks.galaxies.exported import StoredKernel

# The parameters a galaxy's history needs, in the ``sfh`` kernel's order.
MAH_FIELDS = 5  # DiffmahParams: logm0, logtc, early_index, late_index, t_peak
SFH_FIELDS = 8  # diffstar params: lgmcrit, lgy_at_mcrit, indx_lo, indx_hi, lg_qt, qlglgdt, ...


def argus_inverse_cdf_table(chi: float, n: int = 4096):
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


DRAW_KERNELS = ("central", "subhalo_cdf", "satellite_uniform", "satellite")


@functools.cache
def build_draw_kernels():
    """(central, subhalo_cdf, satellite_uniform, satellite): jitted, vmapped per-object draw
    kernels, shared by every model instance of the process (each padded batch shape compiles
    once per process), each a ``StoredKernel`` (a fresh process loads its exported form and
    imports none of the model stack). The population parameters are passed as plain tuples
    of their values, in the namedtuples' field order."""
    return tuple(StoredKernel(name, functools.partial(lambda i: _draw_functions()[i], i))
                 for i, name in enumerate(DRAW_KERNELS))  # fmt: skip


@functools.cache
def _draw_functions():
    """The jitted draw kernels of ``build_draw_kernels`` (imports the model stack)."""
    import jax
    from diffmah.diffmah_kernels import DiffmahParams, _log_mah_kern
    from diffmah.diffmahpop_kernels.bimod_censat_params import DEFAULT_DIFFMAHPOP_PARAMS
    from diffmah.diffmahpop_kernels.mc_bimod_cens import mc_diffmah_params_singlecen
    from diffmah.diffmahpop_kernels.mc_bimod_sats import mc_diffmah_params_singlesat
    from diffsky.mass_functions.ccshmf_model import DEFAULT_CCSHMF_PARAMS, predict_ccshmf
    from diffsky.mass_functions.mc_subs import U_TABLE, _compute_mean_subhalo_counts
    from diffsky.mass_functions.mc_tinfall import ARGUS_CHI, _get_dt_argus
    from diffsky.mass_functions.measure_ccshmf import get_lgmu_cutoff
    from diffstar.defaults import T_TABLE_MIN
    from diffstar.diffstarpop import DEFAULT_DIFFSTARPOP_PARAMS
    from diffstar.diffstarpop.mc_diffstarpop_mgash import mc_diffstar_params_singlegal
    from jax import numpy as jnp
    from jax import random as jran

    argus_cdf, argus_x = (jnp.asarray(a) for a in argus_inverse_cdf_table(ARGUS_CHI))

    def pick(is_a, a, b):
        return DiffmahParams(*[jnp.where(is_a, x, y) for x, y in zip(a, b, strict=True)])

    def corrected(mah, lgm_obs, t_obs, lgt0):
        # diffmahpop's draws land ~0.025 dex above the requested mass at t_obs; shift
        # logm0 so the history passes through the catalog mass (as diffsky does).
        delta = _log_mah_kern(mah, t_obs, lgt0) - lgm_obs
        return mah._replace(logm0=mah.logm0 - delta)

    def diffstar_params(sfhpop, mah, upid, lgmu_inf, lgmhost_inf, dt_inf, key, ctx):
        """diffstarpop's draw (as ``mc_diffstar_sfh_singlegal``), the branch's params kept."""
        logmp0 = _log_mah_kern(mah, 10 ** ctx["lgt0"], ctx["lgt0"])
        res = mc_diffstar_params_singlegal(
            sfhpop, logmp0, mah.t_peak, upid, lgmu_inf, lgmhost_inf, dt_inf, key
        )
        params = [jnp.where(res.mc_is_q, q, ms) for ms, q in
                  zip(res.diffstar_params_ms, res.diffstar_params_q, strict=True)]  # fmt: skip
        return jnp.array(params), res.mc_is_q

    def populations(mahpop, sfhpop):  # the tuples of values as the namedtuples diffsky takes
        return DEFAULT_DIFFMAHPOP_PARAMS._make(mahpop), DEFAULT_DIFFSTARPOP_PARAMS._make(sfhpop)

    def central(key_hi, key_lo, lgm_obs, mahpop, sfhpop, ctx, root):
        mahpop, sfhpop = populations(mahpop, sfhpop)
        key = jran.fold_in(jran.fold_in(root, key_hi), key_lo)
        k_mah, k_early, k_nsat, k_sats, k_sfh = jran.split(key, 5)
        t_obs, lgt0 = ctx["t_obs"], ctx["lgt0"]
        early, late, frac_early = mc_diffmah_params_singlecen(mahpop, lgm_obs, t_obs, k_mah, lgt0)
        mah = corrected(pick(jran.uniform(k_early) < frac_early, early, late), lgm_obs, t_obs, lgt0)
        mean_nsat = _compute_mean_subhalo_counts(lgm_obs, ctx["lgmsub_min"])
        sfh_params, is_q = diffstar_params(sfhpop, mah, -1, 0.0, 0.0, -100.0, k_sfh, ctx)
        return dict(
            mah=jnp.array(mah),
            n_sat=jran.poisson(k_nsat, mean_nsat),
            sat_key=k_sats,
            log10_mpeak=_log_mah_kern(mah, jnp.minimum(mah.t_peak, t_obs), lgt0),
            sfh_params=sfh_params,
            diffstar_quenched_branch=is_q,
        )

    def subhalo_cdf(host_lgm, ctx):
        # generate_subhalopop_kern's table, per host: lgmu_table = U_TABLE * cutoff
        lgmu_cutoff = get_lgmu_cutoff(host_lgm, ctx["lgmsub_min"], 1)
        lgmu_table = U_TABLE * lgmu_cutoff
        cdf_counts = 10 ** predict_ccshmf(DEFAULT_CCSHMF_PARAMS, host_lgm, lgmu_table)
        cdf_counts = cdf_counts - cdf_counts[0]
        return dict(lgmu_cutoff=lgmu_cutoff, cdf=cdf_counts / cdf_counts[-1])

    def satellite_uniform(sat_key, j):
        return dict(u_mu=jran.uniform(jran.split(jran.fold_in(sat_key, j), 7)[0]))

    def satellite(sat_key, j, host_lgm, host_mah, lgmu, mahpop, sfhpop, ctx):
        mahpop, sfhpop = populations(mahpop, sfhpop)
        key = jran.fold_in(sat_key, j)
        _, k_inf, k_mah, k_early, k_sfh, k_pos, k_vel = jran.split(key, 7)
        t_obs, lgt0 = ctx["t_obs"], ctx["lgt0"]
        host_mah = DiffmahParams(*host_mah)
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
        sfh_params, is_q = diffstar_params(
            sfhpop, mah, 0, lgm_inf - lgmhost_inf, lgmhost_inf, dt_inf, k_sfh, ctx
        )
        return dict(
            mah=jnp.array(mah),
            log10_mhalo=_log_mah_kern(mah, t_obs, lgt0),
            log10_mpeak=lgm_inf,
            sfh_params=sfh_params,
            diffstar_quenched_branch=is_q,
            u_pos=jran.uniform(k_pos, (3,)),
            n_vel=jran.normal(k_vel, (3,)),
        )

    central_batch = jax.vmap(central, in_axes=(0, 0, 0, None, None, None, None))
    subhalo_cdf_batch = jax.vmap(subhalo_cdf, in_axes=(0, None))
    uniform_batch = jax.vmap(satellite_uniform)
    satellite_batch = jax.vmap(satellite, in_axes=(0, 0, 0, 0, 0, None, None, None))
    return tuple(map(jax.jit, (central_batch, subhalo_cdf_batch, uniform_batch, satellite_batch)))


def subhalo_lgmu(u, host_row, cdf, lgmu_cutoff) -> np.ndarray:
    """log10 mu of satellites with uniforms ``u`` whose hosts are rows ``host_row`` of the
    per-host tables ``cdf`` (n_hosts, n_table) and ``lgmu_cutoff`` (n_hosts,): diffsky's
    ``generate_subhalopop_kern``, i.e. ``jnp.interp(u, cdf, U_TABLE * cutoff)``, vectorized
    over satellites with a binary search in each one's own row (float64, jnp.interp's
    formula; constant beyond the ends)."""
    u_table = remembered("diffsky/u_table", _u_table)["u_table"]
    u = np.asarray(u, np.float64)
    n_table = cdf.shape[1]
    lo = np.zeros(len(u), np.int64)  # searchsorted(row, u, side="right")
    hi = np.full(len(u), n_table, np.int64)
    while np.any(lo < hi):
        mid = (lo + hi) // 2
        right = cdf[host_row, np.minimum(mid, n_table - 1)] <= u
        lo, hi = np.where((lo < hi) & right, mid + 1, lo), np.where((lo < hi) & ~right, mid, hi)
    i = np.clip(lo, 1, n_table - 1)
    xp0, xp1 = cdf[host_row, i - 1], cdf[host_row, i]
    cutoff = lgmu_cutoff[host_row]
    fp0, fp1 = u_table[i - 1] * cutoff, u_table[i] * cutoff
    dx, df, delta = xp1 - xp0, fp1 - fp0, u - xp0
    dx0 = np.abs(dx) <= np.spacing(np.finfo(np.float64).eps)
    with np.errstate(invalid="ignore", divide="ignore"):
        f = np.where(dx0, fp0, fp0 + (delta / np.where(dx0, 1.0, dx)) * df)
    f = np.where(u < cdf[host_row, 0], u_table[0] * cutoff, f)
    return np.where(u > cdf[host_row, -1], u_table[-1] * cutoff, f)


def _u_table() -> dict:
    from diffsky.mass_functions.mc_subs import U_TABLE

    return {"u_table": U_TABLE}


def time_table(t_obs, n_t: int, dtype):
    """The ``n_t`` times (Gyr) of a star-formation history: T_TABLE_MIN to t_obs, linear, the
    last exactly t_obs."""
    from diffstar.defaults import T_TABLE_MIN
    from jax import numpy as jnp

    return jnp.linspace(jnp.asarray(T_TABLE_MIN, dtype), jnp.asarray(t_obs, dtype), n_t)


@functools.cache
def build_sfh_kernel(n_t: int, precision: str):
    """The ``sfh`` kernel for ``n_t`` time steps in ``precision`` ("float32" or "float64"):
    ``fn(mah (n, 5), sfh_params (n, 8), t_obs, lgt0, fb, weights (n_t + 1,)) ->
    (log10_mstar, log10_mstar_surviving, log10_sfr)``.

    Call it through ``evaluate_sfh``, which casts the inputs and sets JAX's 64-bit mode for
    the call (a float32 kernel is traced with 64-bit mode off).

    Stellar mass formed by t_obs: diffstar's ``cumulative_mstar_formed`` at its last time,
    as one trapezoid sum (constant SFR_MIN from T_BIRTH_MIN to the first time) instead of a
    cumulative scan; surviving mass: the same history summed with
    ``mass_loss.surviving_weights`` (SFR_MIN's weight first), in time order; SFR: the history
    at t_obs, the last time of the table.
    """
    return StoredKernel(f"sfh/{n_t}/{precision}", lambda: _sfh_function(n_t))


@functools.cache
def _sfh_function(n_t: int):
    """``build_sfh_kernel``'s jitted kernel (imports the model stack)."""
    import jax
    from diffmah.diffmah_kernels import DiffmahParams
    from diffstar.defaults import SFR_MIN, T_BIRTH_MIN
    from diffstar.kernels.history_kernel_builders import _sfh_singlegal_kern
    from diffstar.utils import YEAR_PER_GYR
    from jax import numpy as jnp

    def one(mah, params, t_obs, lgt0, fb, weights):
        tarr = time_table(t_obs, n_t, mah.dtype)
        sfh = _sfh_singlegal_kern(tarr, DiffmahParams(*mah), params[:4], params[4:], lgt0, fb)
        terms = (tarr[1:] - tarr[:-1]) * (sfh[1:] + sfh[:-1])
        # summed in time order, one add at a time: a reduction's order could follow the
        # batch shape, and the result must not
        total = (tarr[0] - T_BIRTH_MIN) * (sfh[0] + SFR_MIN)
        for k in range(n_t - 1):
            total = total + terms[k]
        mstar = 0.5 * total * YEAR_PER_GYR
        surviving = weights[0] * SFR_MIN
        for k in range(n_t):
            surviving = surviving + weights[k + 1] * sfh[k]
        return jnp.log10(mstar), jnp.log10(surviving * YEAR_PER_GYR), jnp.log10(sfh[-1])

    return jax.jit(jax.vmap(one, in_axes=(0, 0, None, None, None, None)))


def evaluate_sfh(n_t: int, precision: str, mah, sfh_params, t_obs, lgt0, fb):
    """``build_sfh_kernel(n_t, precision)`` on one padded batch, with the surviving-mass
    weights of ``t_obs`` (``mass_loss.surviving_weights``); outputs float64 NumPy."""
    import jax

    from covmocks.galaxies.mass_loss import surviving_weights

    dtype = np.dtype(precision)
    kernel = build_sfh_kernel(n_t, precision)
    weights = surviving_weights(float(t_obs), n_t).astype(dtype)
    with jax.enable_x64(precision == "float64"):
        args = [np.asarray(a, dtype) for a in (mah, sfh_params)]
        scalars = [np.asarray(s, dtype) for s in (t_obs, lgt0, fb)]
        lgm, lgm_surviving, lgsfr = kernel(*args, *scalars, weights)
        return {
            "log10_mstar": np.asarray(lgm).astype(np.float64),
            "log10_mstar_surviving": np.asarray(lgm_surviving).astype(np.float64),
            "log10_sfr": np.asarray(lgsfr).astype(np.float64),
        }
