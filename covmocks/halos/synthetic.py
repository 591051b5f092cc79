"""Synthetic host halos: diffsky's halo mass function drawn in a periodic box
(``SyntheticSource``), of a given number of hosts or of a given box size."""

from __future__ import annotations

import math

import numpy as np

from covmocks.core import units
from covmocks.core.errors import InputError
from covmocks.core.limits import SYNTHETIC_MHOST_RANGE
from covmocks.core.remembered import remembered
from covmocks.halos.blocks import (
    SYNTHETIC_COSMOLOGY,
    Cosmology,
    HaloBlock,
    SimulationHeader,
    _concat,
    _RowBlocks,
)


class SyntheticSource(_RowBlocks):
    """Host halos drawn from diffsky's halo mass function in a periodic box.

    Exactly one of: ``n_hosts`` hosts above ``log10_mhost_min_msun`` (required: the box spec
    decides it), in a box that holds that many on average; or a box of ``box_size`` (comoving
    Mpc/h) holding ``synthetic_hosts`` of them: the fraction ``host_fraction`` (0 < F <= 1)
    of what the mass function puts there. Hosts are drawn in fixed blocks of ``BLOCK`` from a
    NumPy Philox stream keyed by (seed, block), so the catalog does not depend on how a reader
    chunks it, and reading blocks [first, last) draws only the ``BLOCK``s they overlap.
    Positions uniform; radius R200m from the mass; velocities Gaussian, 300 km/s a component.
    """

    BLOCK = 65536
    VELOCITY_DISPERSION_KMS = 300.0

    def __init__(self, n_hosts: int | None, log10_mhost_min_msun: float, redshift: float = 0.0,
                 seed: int = 0, cosmology: Cosmology = SYNTHETIC_COSMOLOGY, *,
                 box_size: float | None = None, host_fraction: float = 1.0):  # fmt: skip
        if (n_hosts is None) == (box_size is None):
            raise InputError("synthetic source needs exactly one of n_hosts and box_size")
        if n_hosts is not None and n_hosts < 1:
            raise InputError(f"synthetic source needs n_hosts >= 1, got {n_hosts}")
        if box_size is not None:
            _check_box(box_size, host_fraction)
        if log10_mhost_min_msun is None or not math.isfinite(log10_mhost_min_msun):
            raise InputError(
                f"synthetic source needs a finite host mass cut: {log10_mhost_min_msun}"
            )
        self.log10_mhost_min_msun = float(log10_mhost_min_msun)
        self.seed = int(seed)
        low, high = SYNTHETIC_MHOST_RANGE
        if not low <= self.log10_mhost_min_msun <= high:
            raise InputError(f"synthetic source: host mass cut {self.log10_mhost_min_msun:g} is "
                             f"outside the mass function's range [{low:g}, {high:g}] "
                             "(log10 Msun)")  # fmt: skip
        self._lgm_table, self._cdf_table, density = _hmf_tables(self.log10_mhost_min_msun, redshift)
        cdf = self._cdf_table
        usable = np.isfinite(cdf).all() and (np.diff(cdf) > -1e-9).all() and cdf[-1] > cdf[0]
        if not (usable and np.isfinite(self._lgm_table).all() and 0 < density < np.inf):
            raise InputError(f"synthetic source: the halo mass function has no usable hosts "
                             f"above 10^{self.log10_mhost_min_msun:g} Msun at z={redshift:g} "
                             f"(host density {density:.3g} per Mpc^3)")  # fmt: skip
        self.box_size, self.host_fraction = box_size, float(host_fraction)
        if box_size is None:
            self.n_hosts = int(n_hosts)
            volume_mpc_h = self.n_hosts / density * cosmology.h**3  # per Mpc^3 -> per (Mpc/h)^3
            box_size, name = float(volume_mpc_h ** (1 / 3)), f"synthetic_n{self.n_hosts}"
        else:
            self.n_hosts = _expected(density, box_size, host_fraction, cosmology.h)
            if self.n_hosts < 1:
                cut = self.log10_mhost_min_msun
                raise InputError(f"synthetic source: a {box_size:g} Mpc/h box at host fraction "
                                 f"{host_fraction:g} holds no host above 10^{cut:g} Msun at "
                                 f"z={redshift:g}")  # fmt: skip
            name = f"synthetic_L{box_size:g}_f{host_fraction:g}"
        self.n_rows = self.n_hosts
        self.header = SimulationHeader(
            box_size=float(box_size),
            redshift=float(redshift),
            cosmology=cosmology,
            sim_name=f"{name}_seed{self.seed}",
            mass_definition="diffsky SMDPL-calibrated host HMF draw (Msun/h)",
            position_definition="uniform in the box",
            radius_definition=units.R200M_DEFINITION,
        )

    def _block(self, b: int) -> HaloBlock:
        """The ``b``-th ``BLOCK`` of hosts, drawn from its own random stream."""
        start = b * self.BLOCK
        n = min(self.BLOCK, self.n_hosts - start)
        rng = np.random.Generator(np.random.Philox(key=[self.seed, b]))
        hdr = self.header
        h, box = hdr.cosmology.h, hdr.box_size
        lgm_msun = np.interp(rng.random(n), self._cdf_table, self._lgm_table)
        mass = 10 ** units.log_mass_msun_to_h(lgm_msun, h)
        rho_m = 200.0 * hdr.cosmology.Om0 * units.RHO_CRIT0_H
        return HaloBlock(
            ids=np.arange(start, start + n, dtype=np.uint64),
            pos=rng.random((n, 3)) * box,
            vel=rng.normal(0.0, self.VELOCITY_DISPERSION_KMS, (n, 3)),
            mass=mass,
            radius=(3 * mass / (4 * np.pi * rho_m)) ** (1 / 3),
        )

    def read_blocks(self, max_hosts: int, first: int = 0, last: int | None = None):
        """Blocks [first, last) of ``max_hosts`` hosts: the same hosts as a full stream, drawn
        from only the ``BLOCK``s that overlap them."""
        start, stop = self._rows(max_hosts, first, last)
        pending = None
        for b in range(start // self.BLOCK, -(-stop // self.BLOCK) if start < stop else 0):
            offset = b * self.BLOCK
            block = self._block(b).select(slice(max(start - offset, 0), stop - offset))
            if pending is not None:
                block = _concat(pending, block)
            while len(block) >= max_hosts:
                yield block.select(slice(0, max_hosts))
                block = block.select(slice(max_hosts, None))
            pending = block if len(block) else None
        if pending is not None:
            yield pending

    def describe(self) -> str:
        if self.box_size is None:
            return f"synthetic(n_hosts={self.n_hosts}, seed={self.seed})"
        return (f"synthetic(box_size={self.box_size:g} Mpc/h, host_fraction="
                f"{self.host_fraction:g}, n_hosts={self.n_hosts}, seed={self.seed})")  # fmt: skip


def _check_box(box_size: float, host_fraction: float) -> None:
    """Refuse a box size (Mpc/h) that is not a positive number, or a host fraction outside
    (0, 1]: InputError."""
    if not (isinstance(box_size, int | float) and math.isfinite(box_size) and box_size > 0):
        raise InputError(f"synthetic source: box_size must be a positive number (Mpc/h), got "
                         f"{box_size!r}")  # fmt: skip
    if not (isinstance(host_fraction, int | float) and 0 < host_fraction <= 1):
        raise InputError(f"synthetic source: host_fraction must be in (0, 1], got "
                         f"{host_fraction!r}")  # fmt: skip


def _expected(density: float, box_size: float, host_fraction: float, h: float) -> int:
    """round(F n V): hosts of a fraction F of a box (Mpc/h) at ``density`` per Mpc^3."""
    return int(round(host_fraction * density * (box_size / h) ** 3))


def spawned(function, *args):
    """``function(*args)`` in a fresh (spawned) process: the mass function's JAX stays out of
    a driver, which goes on to fork Parsl's processes (a forked JAX can deadlock)."""
    import concurrent.futures
    import multiprocessing

    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
        return pool.submit(function, *args).result()


def box_sizes(n_hosts: int, log10_mhost_min_msun: float, redshifts) -> list[float]:
    """Box sides (comoving Mpc/h) of synthetic boxes of ``n_hosts`` hosts at ``redshifts``."""
    return [SyntheticSource(n_hosts, log10_mhost_min_msun, z).header.box_size for z in redshifts]


def synthetic_hosts(box_size: float, log10_mhost_min_msun: float, redshift: float,
                    host_fraction: float = 1.0, cosmology=SYNTHETIC_COSMOLOGY) -> int:  # fmt: skip
    """Hosts a synthetic box of ``box_size`` (comoving Mpc/h) holds: round(F x n(>M_cut, z) x
    V), n from the mass function (per Mpc^3), V = (box_size / h)^3 in Mpc^3."""
    _check_box(box_size, host_fraction)
    density = _hmf_tables(float(log10_mhost_min_msun), redshift)[2]
    return _expected(density, box_size, host_fraction, cosmology.h)


def _hmf_tables(log10_mhost_min_msun: float, redshift: float):
    """CDF tables of the host mass function above the cut, and n(>M) in Mpc^-3; remembered
    (``core.remembered``: a fresh process need not import diffsky)."""
    args = (float(log10_mhost_min_msun), float(redshift))
    t = remembered("diffsky/hmf_tables", _diffsky_hmf_tables, *args)
    return t["lgm"], t["cdf"], float(t["density"])


def _diffsky_hmf_tables(mmin: float, redshift: float) -> dict:
    from diffsky.mass_functions.hmf_model import DEFAULT_HMF_PARAMS
    from diffsky.mass_functions.mc_hosts import _compute_nhalos_tot, _get_hmf_cdf_interp_tables

    lgm, cdf = _get_hmf_cdf_interp_tables(DEFAULT_HMF_PARAMS, mmin, redshift)
    density = _compute_nhalos_tot(DEFAULT_HMF_PARAMS, mmin, redshift, 1.0)
    return {"lgm": np.asarray(lgm, np.float64), "cdf": np.asarray(cdf, np.float64),
            "density": np.float64(density)}  # fmt: skip
