"""Population-level checks of a catalog: statistics over all its satellites (or centrals)
against the model's expectation, tight enough to catch a unit error (a stray h, 1 + z or
sqrt(3)) that the per-galaxy limits of ``catalog.checks`` let through.

Fed chunk by chunk (``CatalogChecks`` calls ``add_satellites`` and ``add_centrals``); keeps
a fixed-size histogram, two sums and the log10 M*/M_halo of the centrals in the peak bin.
Each check passes with "not judged" where it has fewer than ``MIN_MEMBERS`` members; otherwise
its tolerance is a band (what good inputs of every source may shift the statistic by) widened
by ``K_SIGMA`` times the statistic's sampling error for its number of members n,
sigma_1 / sqrt(n), sigma_1 measured by ``bench/population_checks.py`` over good boxes
(docs/schema.md, "Population checks"). K_SIGMA = 5.5 makes a false failure of a good box
less likely than 1e-6 per check (a Gaussian's two-sided 5.5 sigma tail is 4e-8; the margin
covers the non-Gaussian tails of small n).

Expectations, all computed from the catalog's own host columns and attributes:
- r / R200m: the model draws x = r / r_host from an NFW profile of concentration c(M, z)
  (``core.nfw``) truncated at x = 1, so log10(r / (m(c) R200m)) has median 0 where r_host is
  R200m (synthetic hosts, ``radius_definition`` = ``units.R200M_DEFINITION``), m(c) the
  profile's median x; another input radius (AbacusSummit's r100_L2com) shifts it by
  log10(r_host / R200m) (the Mini box: -0.080).
- |v - v_host| / V_vir(R200m): Gaussian with 1D dispersion V(r_host) / sqrt(3), so its rms is
  sqrt(R200m / r_host): 1 on R200m hosts (the Mini box: 10^0.040).
- log10(M* / M_halo) of centrals at the peak of the ratio: the median that the model (default
  parameters) gives there, ``SMHM_REFERENCE`` (measured by the bench), interpolated in z.
"""

from __future__ import annotations

import numpy as np

from covmocks.core import nfw, units

# the checks, in their order (names of ``CatalogChecks.finish``)
CHECKS = ("satellite_radius_max", "satellite_radius_median", "satellite_velocity_rms",
          "central_smhm_peak")  # fmt: skip
K_SIGMA = 5.5
MIN_MEMBERS = 100
# A satellite lies within its host's input radius: the largest r / R200m where the input radius
# is R200m (``units.R200M_DEFINITION``; 1.02 leaves room for float32 positions), and for any
# other input radius (AbacusSummit r100_L2com / R200m reaches 1.26 among the Mini box's 381
# hosts, median 0.84; 1.6 is a guess beyond that tail, not a measured bound).
RADIUS_MAX_R200M = {True: 1.02, False: 1.6}
# log10 of the median r / (m(c) R200m): the band of input radii, zero width on R200m inputs,
# else r_host / R200m from 0.63 (R200c-like) to 1.12 (the Mini box: -0.080); sigma_1 (dex).
RADIUS_MEDIAN_BAND_DEX = {True: (0.0, 0.0), False: (-0.2, 0.05)}
RADIUS_MEDIAN_SIGMA1_DEX = 0.52
# log10 of rms |v - v_host| / V_vir: -1/2 log10(r_host / R200m) over the same band (the Mini
# box: +0.040); sigma_1 (dex).
VELOCITY_RMS_BAND_DEX = {True: (0.0, 0.0), False: (-0.025, 0.1)}
VELOCITY_RMS_SIGMA1_DEX = 0.21
# Centrals of log10 M_halo (Msun) in [SMHM_BIN): by redshift, the median log10(M* / M_halo)
# that the model (default population parameters) gives and sigma_1 (dex) of that median
# (``bench/population_checks.py smhm``: one synthetic box of 2000 hosts above 10^11.7 Msun
# per redshift, 930 to 1100 centrals in the bin; sigma_1 the largest over subsets of 30, 100
# and 300 centrals, times 1.1); both interpolated linearly in z. SMHM_SYSTEMATIC_DEX bounds
# the table's error: its own sampling (sigma_1 / sqrt(1000), at most 0.016 dex at z = 3) plus
# its interpolation (dropping z = 2.5 from the table moved it by 0.042 dex; with it, the
# spacing is half as wide, an error about 4 times smaller).
SMHM_MODEL = "diffsky_sfh"
SMHM_BIN = (11.8, 12.2)
SMHM_REFERENCE = {  # z: (median log10(M*/M_halo), sigma_1 dex)
    0.0: (-1.4370, 0.23), 0.25: (-1.4685, 0.21), 0.5: (-1.5079, 0.20), 0.75: (-1.5521, 0.19),
    1.0: (-1.6211, 0.20), 1.5: (-1.7448, 0.25), 2.0: (-1.8298, 0.35), 2.5: (-1.9013, 0.49),
    3.0: (-1.8884, 0.56),
}  # fmt: skip
SMHM_SYSTEMATIC_DEX = 0.04
# What the satellite checks allow beyond their sampling error, dex: the histogram's half bin
# (5e-5), the model's G (4.3e-9 against NEWTON_G's 4.30091e-9: 5e-5 dex in velocity), float32
# positions; it matters only beyond 1e7 satellites, where 5.5 sigma_1 / sqrt(n) is 0.001 dex.
FLOOR_DEX = 0.001
# histogram of log10(r / (m(c) R200m)) for its median: 1e-4 dex bins, the ends overflow
_EDGES = np.linspace(-3.0, 1.0, 40001)


def smhm_reference(redshift: float) -> tuple[float, float]:
    """(median log10(M* / M_halo), sigma_1 dex) of the model's centrals in ``SMHM_BIN`` at
    ``redshift``: linear in z between the table's redshifts, NaN beyond them."""
    z = np.array(sorted(SMHM_REFERENCE))
    if not z[0] <= redshift <= z[-1]:
        return float("nan"), float("nan")
    median, sigma1 = np.array([SMHM_REFERENCE[k] for k in z]).T
    return float(np.interp(redshift, z, median)), float(np.interp(redshift, z, sigma1))


def log_radius_over_median(x, log10_mhalo, h: float, redshift: float) -> np.ndarray:
    """log10(x / m(c)): ``x`` = r / R200m of satellites of hosts of ``log10_mhalo`` (Msun), m(c)
    the median r / r_host of the NFW profile the model draws them from."""
    c = nfw.concentration_dm14(units.log_mass_msun_to_h(np.asarray(log10_mhalo, np.float64), h),
                               redshift)  # fmt: skip
    return np.log10(x) - np.log10(nfw.median_radius_fraction(c))


def _judge(what: str, value: float, n: int, band, sigma1: float, floor: float = 0.0):
    """(passed, reason): ``value`` (dex) of ``n`` members within ``band`` widened by K_SIGMA
    sampling errors and ``floor``; 'not judged' where n < MIN_MEMBERS."""
    if n < MIN_MEMBERS:
        return True, f"not judged: {n} members of {MIN_MEMBERS} needed"
    margin = K_SIGMA * sigma1 / np.sqrt(n) + floor
    lo, hi = band[0] - margin, band[1] + margin
    if lo <= value <= hi:
        return True, ""
    return False, f"{what} {value:+.3f} dex over {n}: expected {lo:+.3f} to {hi:+.3f}"


class PopulationChecks:
    """The population checks of one catalog (module docstring), fed in any row order."""

    def __init__(self, h: float | None, redshift: float | None, model: str | None,
                 model_params: dict | None, r200m_radius: bool):  # fmt: skip
        self.h, self.z, self.r200m = h, redshift, bool(r200m_radius)
        self.judge_smhm = _smhm_reason(model, model_params, redshift)
        self.largest = -np.inf
        self.n_sat = self.n_vel = 0
        self.counts = np.zeros(len(_EDGES) + 1, np.int64)
        self.speed2 = 0.0
        self.smhm: list[np.ndarray] = []

    def add_satellites(self, x, speed, log10_mhalo) -> None:
        """Satellites at ``x`` = r / R200m of their host (of ``log10_mhalo``, Msun) and
        ``speed`` = |v - v_host| / V_vir (None where the velocity check has no attributes)."""
        if x is not None and len(x):
            self.n_sat += len(x)
            finite = np.isfinite(x)  # a NaN fails satellites_near_host
            if finite.any():
                self.largest = max(self.largest, float(np.max(x[finite])))
            if self.h is not None and self.z is not None:
                t = log_radius_over_median(x, log10_mhalo, self.h, self.z)
                self.counts += np.bincount(np.searchsorted(_EDGES, t), minlength=len(self.counts))
        if speed is not None:
            self.n_vel += len(speed)
            self.speed2 += float(np.sum(np.square(speed)))

    def add_centrals(self, log10_mhalo, log10_mstar) -> None:
        lgm = np.asarray(log10_mhalo, np.float64)
        peak = (lgm >= SMHM_BIN[0]) & (lgm < SMHM_BIN[1])
        self.smhm.append(np.asarray(log10_mstar, np.float64)[peak] - lgm[peak])

    def radius_median(self) -> float:
        """log10 of the median r / (m(c) R200m), from the histogram (to 5e-5 dex)."""
        n = int(self.counts.sum())
        i = int(np.searchsorted(np.cumsum(self.counts), 0.5 * n))
        i = min(max(i - 1, 0), len(_EDGES) - 2)
        return float(0.5 * (_EDGES[i] + _EDGES[i + 1]))

    def results(self, position_reason: str, velocity_reason: str) -> dict:
        """name -> (passed, reason); a check whose attributes are missing fails with
        ``position_reason`` or ``velocity_reason`` (the per-galaxy checks' reason)."""
        r200m = self.r200m
        limit = RADIUS_MAX_R200M[r200m]
        if position_reason:
            largest = median = (False, position_reason)
        else:
            beyond = f"a satellite at {self.largest:.3g} R200m of its host: beyond {limit:g}"
            largest = (True, "") if self.largest <= limit else (False, beyond)
            median = _judge(
                "median log10(r / r_NFW-median)",
                self.radius_median(),
                self.n_sat,
                RADIUS_MEDIAN_BAND_DEX[r200m],
                RADIUS_MEDIAN_SIGMA1_DEX,
                FLOOR_DEX,
            )
            if self.z is None:
                median = (False, "no attribute 'redshift'")
        if velocity_reason:
            rms = (False, velocity_reason)
        else:
            value = 0.5 * np.log10(self.speed2 / self.n_vel) if self.n_vel else np.nan
            rms = _judge(
                "log10 rms |v - v_host| / V_vir",
                value,
                self.n_vel,
                VELOCITY_RMS_BAND_DEX[r200m],
                VELOCITY_RMS_SIGMA1_DEX,
                FLOOR_DEX,
            )
        return dict(zip(CHECKS, (largest, median, rms, self._smhm()), strict=True))

    def _smhm(self) -> tuple[bool, str]:
        """``central_smhm_peak``: the median against ``SMHM_REFERENCE``."""
        if self.judge_smhm:
            return True, self.judge_smhm
        ratio = np.concatenate(self.smhm) if self.smhm else np.empty(0)
        ref, sigma1 = smhm_reference(self.z)
        value = float(np.median(ratio)) - ref if len(ratio) else np.nan
        band = (-SMHM_SYSTEMATIC_DEX, SMHM_SYSTEMATIC_DEX)
        return _judge(
            f"median log10(M*/M_halo) - model's {ref:.3f}", value, len(ratio), band, sigma1
        )


def _smhm_reason(model, model_params, redshift) -> str:
    """'' where ``SMHM_REFERENCE`` applies to the catalog's model, else why not judged."""
    if model != SMHM_MODEL:
        return f"not judged: no reference for model {model!r}"
    params = model_params if isinstance(model_params, dict) else {}
    if params.get("diffmahpop") or params.get("diffstarpop"):
        return "not judged: population parameters differ from the reference's defaults"
    if redshift is None or np.isnan(smhm_reference(redshift)[0]):
        return f"not judged: no reference at redshift {redshift}"
    return ""
