"""Halo sources: their shared types and interface, and the generic HDF5 reader; AbacusSummit
catalogs are read by ``covmocks.halos.abacus``, synthetic halos drawn by
``covmocks.halos.synthetic``, any source opened by ``covmocks.halos.sources``.

Every source yields ``HaloBlock``s in catalog order, in the simulation's own units:
positions comoving Mpc/h in [0, box_size), velocities km/s, masses Msun/h, radii
comoving Mpc/h, ids uint64. The host mass cut (``log10_mhost_min_msun``) is applied here, at
the source, and is given in log10(Msun) (no h) like every mass the model sees; conversion goes
through ``covmocks.core.units``.

Work units, the same for any number of processes (an Abacus slab file, else a block of
``max_hosts`` rows): ``n_units``, ``unit_name``, ``read_units(max_hosts, first, last)`` reads
units [first, last) only. A failed read raises ``errors.read_error`` (transient or not).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from covmocks.core import units
from covmocks.core.errors import InputError, read_error
from covmocks.core.oneline import reason
from covmocks.halos import checks

log = logging.getLogger(__name__)

# AbacusSummit c000 baryon density (omega_b = Omega_b h^2); CompaSO headers of small test
# boxes omit it.
ABACUS_C000_OMEGA_B = 0.02237


@dataclasses.dataclass(frozen=True)
class Cosmology:
    """Flat w0waCDM. ``omega_b`` is the physical density Omega_b h^2."""

    h: float
    Om0: float
    omega_b: float
    w0: float = -1.0
    wa: float = 0.0

    @property
    def fb(self) -> float:
        """Cosmic baryon fraction Omega_b / Omega_m."""
        return self.omega_b / self.h**2 / self.Om0

    def hubble_e(self, redshift: float) -> float:
        """H(z)/H0 of flat w0waCDM, radiation neglected (a relative 1e-4 at z < 3)."""
        a = 1.0 / (1.0 + redshift)
        de = a ** (-3 * (1 + self.w0 + self.wa)) * np.exp(-3 * self.wa * (1 - a))
        return float(np.sqrt(self.Om0 * a**-3 + (1 - self.Om0) * de))


@dataclasses.dataclass(frozen=True)
class SimulationHeader:
    """What a halo catalog says about itself. ``box_size`` in comoving Mpc/h."""

    box_size: float
    redshift: float
    cosmology: Cosmology
    sim_name: str
    mass_definition: str
    position_definition: str
    radius_definition: str
    notes: str = ""
    hubble_now: float | None = None  # H(z)/H0 as the simulation computed it (Abacus HubbleNow)

    @property
    def hubble_e(self) -> float:
        """H(z)/H0 at the snapshot: the simulation's own where given, else the cosmology's."""
        if self.hubble_now is not None:
            return self.hubble_now
        return self.cosmology.hubble_e(self.redshift)


@dataclasses.dataclass
class HaloBlock:
    """A contiguous block of host halos, shape (n,) or (n, 3)."""

    ids: np.ndarray  # uint64
    pos: np.ndarray  # comoving Mpc/h, [0, box_size)
    vel: np.ndarray  # km/s
    mass: np.ndarray  # Msun/h
    radius: np.ndarray  # comoving Mpc/h

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, mask) -> HaloBlock:
        return HaloBlock(*(getattr(self, f.name)[mask] for f in dataclasses.fields(self)))


def cut(block: HaloBlock, log10_mhost_min_msun: float, h: float) -> HaloBlock:
    keep = units.log_mass_h_to_msun(np.log10(block.mass), h) >= log10_mhost_min_msun
    return block.select(keep)


def split(block: HaloBlock, max_hosts: int) -> Iterator[HaloBlock]:
    for start in range(0, len(block), max_hosts):
        yield block.select(slice(start, start + max_hosts))


def _concat(a: HaloBlock, b: HaloBlock) -> HaloBlock:
    return HaloBlock(*(np.concatenate([getattr(a, f.name), getattr(b, f.name)])
                       for f in dataclasses.fields(HaloBlock)))  # fmt: skip


# Largest accepted |ln((1 + z_header) / (1 + z_requested))|. AbacusSummit lands its time
# step exactly on its 12 primary redshifts only; its 21 secondary outputs (1.025, 1.175, ...)
# are "only approximate and may not match from simulation to simulation" (AbacusSummit
# documentation, Data Products). 0.01 (1% in 1 + z, a few time steps) accepts them, and stays
# well below half the closest spacing of any two outputs (Delta z = 0.075 at z = 1.1-1.7,
# 0.028 in ln(1 + z)), so a directory of another snapshot is never taken for the right one.
REDSHIFT_TOLERANCE = 0.01


def check_redshift(path, header: SimulationHeader, redshift: float | None) -> None:
    """Refuse a catalog of another snapshot: its header redshift (the exact one, which the
    physics uses) must be within ``REDSHIFT_TOLERANCE`` of the requested (nominal) one."""
    if redshift is None:
        return
    offset = math.log((1 + header.redshift) / (1 + redshift))
    if abs(offset) > REDSHIFT_TOLERANCE:
        raise InputError(
            f"{path}: header redshift {header.redshift:g} is not snapshot z={redshift:g} "
            f"(|ln((1+z_header)/(1+z))| = {abs(offset):.3g} > {REDSHIFT_TOLERANCE}): "
            "a catalog of another snapshot"
        )
    if header.redshift != redshift:
        log.info("%s: header redshift %r for snapshot z=%r (physics uses the header's)",
                 path, header.redshift, redshift)  # fmt: skip


CLEANING_TALLY = ("halos_merged_away", "halos_grown", "particles_merged", "slabs")


def add_tallies(tallies) -> dict:
    """The sum of cleaning tallies (of several slabs, or of several MPI ranks)."""
    return {k: sum(t.get(k, 0) for t in tallies) for k in CLEANING_TALLY}


class _RowBlocks:
    """A source read in blocks of ``max_hosts`` catalog rows (before the cut): work unit ``u``
    is block ``u``. Subclasses set ``n_rows`` and read blocks [first, last) in ``read_blocks``.
    Such sources are never cleaned."""

    n_rows: int
    cleaning_tally: dict = {}

    def cleaning_record(self) -> dict:
        return {"applied": False}

    def _rows(self, max_hosts: int, first: int, last: int | None) -> tuple[int, int]:
        last = self.n_units(max_hosts) if last is None else last
        return first * max_hosts, min(last * max_hosts, self.n_rows)

    def n_units(self, max_hosts: int) -> int:
        return -(-self.n_rows // max_hosts)

    def unit_name(self, unit: int) -> str:
        return f"host block {unit}"

    def read_units(self, max_hosts: int, first: int = 0, last: int | None = None):
        """Blocks [first, last), one block (a list of one, maybe empty after the cut) each."""
        return ([block] for block in self.read_blocks(max_hosts, first, last))

    def iter_blocks(self, max_hosts: int) -> Iterator[HaloBlock]:
        return self.read_blocks(max_hosts)


class HDF5Source(_RowBlocks):
    """A generic HDF5 halo file; schema in docs/schema.md.

    Datasets ``id`` (n,) integer, ``pos`` (n, 3) comoving Mpc/h, ``vel`` (n, 3) km/s,
    ``mass`` (n,) Msun/h, ``radius`` (n,) comoving Mpc/h. Attributes ``box_size``
    (Mpc/h), ``h``, ``Om0``, ``omega_b`` (Omega_b h^2), ``redshift``; optional ``w0``,
    ``wa``, ``sim_name``, ``mass_definition``, ``radius_definition``.

    Bad input is refused (``InputError``, one line naming the file and the dataset or
    attribute): the header and the datasets' layout and ids when the file is opened, the
    values of each block as it is read (``covmocks.halos.checks``).
    """

    DATASETS = ("id", "pos", "vel", "mass", "radius")
    COSMOLOGY_ATTRS = (("h", None), ("Om0", None), ("omega_b", None), ("w0", -1.0), ("wa", 0.0))
    DEFINITION_ATTRS = ("mass_definition", "position_definition", "radius_definition")
    REQUIRED_ATTRS = ("box_size", "h", "Om0", "omega_b", "redshift")

    def __init__(self, path, log10_mhost_min_msun: float = -np.inf, redshift=None):
        import h5py

        self.path = Path(path)
        self.log10_mhost_min_msun = float(log10_mhost_min_msun)
        try:
            found = self.path.is_file()
        except (OSError, ValueError) as exc:  # a name too long, a NUL
            raise InputError(f"cannot read halo catalog {self.path}: {reason(exc)}") from None
        if not found:
            raise InputError(f"halo catalog not found: {self.path}")
        try:
            with h5py.File(self.path, "r") as f:
                self._check_file(f)
        except OSError as exc:
            raise read_error(self.path, exc) from exc
        check_redshift(self.path, self.header, redshift)

    def _check_file(self, f) -> None:
        """The header and the datasets' layout and ids (``halos.checks``): InputError."""
        path, attrs = self.path, dict(f.attrs)
        missing = [d for d in self.DATASETS if d not in f and f.get(d, getlink=True) is None]
        if missing:
            raise InputError(f"{path}: missing datasets {missing}")
        absent = [a for a in self.REQUIRED_ATTRS if a not in attrs]
        if absent:
            raise InputError(f"{path}: header has no {', '.join(absent)}")
        lengths = {d: checks.dataset(path, f, d).shape[0] for d in self.DATASETS}
        self.n_rows = checks.check_lengths(path, lengths)
        cosmology = Cosmology(**{k: checks.header_number(path, attrs, k, d)
                                 for k, d in self.COSMOLOGY_ATTRS})  # fmt: skip
        checks.check_cosmology(path, cosmology.h, cosmology.Om0, cosmology.omega_b)
        self.header = SimulationHeader(
            box_size=checks.header_number(path, attrs, "box_size"),
            redshift=checks.header_number(path, attrs, "redshift"),
            cosmology=cosmology,
            sim_name=checks.header_text(attrs, "sim_name", self.path.stem),
            **{k: checks.header_text(attrs, k, "unspecified") for k in self.DEFINITION_ATTRS},
        )
        checks.check_ids(path, f["id"])

    def _read(self, f, start: int, stop: int) -> HaloBlock:
        """Rows [start, stop) of the open file, before the cut, their values checked."""
        c = {name: np.asarray(f[name][start:stop], dtype=np.float64) for name in self.DATASETS[1:]}
        checks.check_block(self.path, c, start, self.header.cosmology.Om0)
        pos = units.wrap_periodic(c.pop("pos"), self.header.box_size)
        return HaloBlock(ids=np.asarray(f["id"][start:stop]).astype(np.uint64), pos=pos, **c)

    def read_blocks(self, max_hosts: int, first: int = 0, last: int | None = None):
        """Blocks [first, last) of ``max_hosts`` rows, each cut by mass (maybe empty); only
        their rows are read."""
        import h5py

        start, stop = self._rows(max_hosts, first, last)
        if start >= stop:
            return
        try:
            f = h5py.File(self.path, "r")
        except OSError as exc:
            raise read_error(self.path, exc) from exc
        with f:
            for row in range(start, stop, max_hosts):
                try:
                    block = self._read(f, row, min(row + max_hosts, stop))
                except OSError as exc:  # h5py's I/O failures (errno kept where known)
                    raise read_error(self.path, exc) from exc
                yield cut(block, self.log10_mhost_min_msun, self.header.cosmology.h)

    def describe(self) -> str:
        return str(self.path)


# Planck-2018-like cosmology (AbacusSummit c000) for synthetic boxes.
SYNTHETIC_COSMOLOGY = Cosmology(h=0.6736, Om0=0.315192, omega_b=ABACUS_C000_OMEGA_B)


def write_hdf5_halos(path, block: HaloBlock, header: SimulationHeader) -> None:
    """Write ``block`` as a generic HDF5 halo file (the schema ``HDF5Source`` reads)."""
    import h5py

    names = ("box_size", "redshift", "sim_name", *HDF5Source.DEFINITION_ATTRS)
    with h5py.File(path, "w") as f:
        for name, field in zip(HDF5Source.DATASETS, dataclasses.fields(HaloBlock), strict=True):
            f[name] = getattr(block, field.name)
        f.attrs.update(
            dataclasses.asdict(header.cosmology), **{k: getattr(header, k) for k in names}
        )
