"""Halo sources: one interface, three readers (AbacusSummit CompaSO, generic HDF5, synthetic).

Every source yields ``HaloBlock``s in catalog order, in the simulation's own units:
positions comoving Mpc/h in [0, box_size), velocities km/s, masses Msun/h, radii
comoving Mpc/h, ids uint64. The mass cut is applied here, at the source, and is given in
log10(Msun) (no h) like every mass the model sees; conversion goes through
``covmocks.units``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from covmocks import units
from covmocks.errors import InputError

log = logging.getLogger(__name__)

# AbacusSummit c000 baryon density (omega_b = Omega_b h^2); CompaSO headers of small test
# boxes omit it.
ABACUS_C000_OMEGA_B = 0.02237
SOURCE_KINDS = ("abacus", "hdf5", "synthetic")


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


def _cut(block: HaloBlock, log10_mmin_msun: float, h: float) -> HaloBlock:
    keep = units.log_mass_h_to_msun(np.log10(block.mass), h) >= log10_mmin_msun
    return block.select(keep)


def _split(block: HaloBlock, max_hosts: int) -> Iterator[HaloBlock]:
    for start in range(0, len(block), max_hosts):
        yield block.select(slice(start, start + max_hosts))


class AbacusSource:
    """An AbacusSummit CompaSO catalog directory (``.../halos/zZ.ZZZ``), read slab by slab.

    Columns: ``id``; mass = ``N`` x ``ParticleMassHMsun``; position ``x_L2com`` and
    velocity ``v_L2com`` (centre of mass of the largest L2 subhalo, i.e. the halo core);
    radius ``r100_L2com`` (radius of the L2 halo enclosing all its particles).
    """

    FIELDS = ["id", "N", "x_L2com", "v_L2com", "r100_L2com"]

    def __init__(self, path, log10_mmin_msun: float = -np.inf, redshift: float | None = None):
        self.path = Path(path)
        self.log10_mmin_msun = float(log10_mmin_msun)
        self.slab_files = sorted((self.path / "halo_info").glob("halo_info_*.asdf"))
        if not self.path.is_dir() or not self.slab_files:
            raise InputError(f"halo catalog not found: {self.path} (no halo_info/halo_info_*.asdf)")
        self._raw_header = self._read_header()
        self.header = self._make_header(self._raw_header)
        if redshift is not None and abs(self.header.redshift - redshift) > 1e-3:
            raise InputError(
                f"{self.path}: catalog redshift {self.header.redshift} does not match the "
                f"requested snapshot redshift {redshift}"
            )

    def _open(self, files, fields):
        from abacusnbody.data.compaso_halo_catalog import CompaSOHaloCatalog

        try:
            return CompaSOHaloCatalog(files, fields=fields, cleaned=False)
        except Exception as exc:  # abacusutils raises many types for one problem
            raise InputError(f"cannot read halo catalog {self.path}: {exc}") from exc

    def _read_header(self) -> dict:
        cat = self._open(str(self.slab_files[0]), ["id"])
        return dict(cat.header)

    def _make_header(self, raw: dict) -> SimulationHeader:
        for key in ("BoxSize", "H0", "Omega_M", "Redshift", "ParticleMassHMsun"):
            if key not in raw:
                raise InputError(f"{self.path}: header has no {key}")
        notes = ""
        omega_b = raw.get("omega_b")
        if omega_b is None:
            omega_b = ABACUS_C000_OMEGA_B
            notes = f"header has no omega_b; used AbacusSummit c000 omega_b={omega_b}"
            log.warning("%s: %s", self.path, notes)
        cosmo = Cosmology(
            h=raw["H0"] / 100.0,
            Om0=raw["Omega_M"],
            omega_b=float(omega_b),
            w0=raw.get("w0", -1.0),
            wa=raw.get("wa", 0.0),
        )
        return SimulationHeader(
            box_size=float(raw["BoxSize"]),
            redshift=float(raw["Redshift"]),
            cosmology=cosmo,
            sim_name=str(raw.get("SimName", self.path.parent.parent.name)),
            mass_definition="N x ParticleMassHMsun (CompaSO L1 halo)",
            position_definition="x_L2com (centre of mass of the L2 core)",
            radius_definition="r100_L2com (radius enclosing 100% of L2 particles)",
            notes=notes,
        )

    @property
    def slabs(self) -> list[Path]:
        """The slab files: the natural unit of input to share among MPI ranks."""
        return list(self.slab_files)

    def read_slab(self, slab: Path) -> HaloBlock:
        halos = self._open(str(slab), self.FIELDS).halos
        h, box = self.header.cosmology.h, self.header.box_size
        block = HaloBlock(
            ids=np.asarray(halos["id"], dtype=np.uint64),
            pos=units.wrap_periodic(np.asarray(halos["x_L2com"], dtype=np.float64) + box / 2, box),
            vel=np.asarray(halos["v_L2com"], dtype=np.float64),
            mass=np.asarray(halos["N"], dtype=np.float64) * self._raw_header["ParticleMassHMsun"],
            radius=np.asarray(halos["r100_L2com"], dtype=np.float64),
        )
        return _cut(block, self.log10_mmin_msun, h)

    def iter_blocks(self, max_hosts: int, slabs=None) -> Iterator[HaloBlock]:
        for slab in self.slab_files if slabs is None else slabs:
            yield from _split(self.read_slab(slab), max_hosts)

    def describe(self) -> str:
        return str(self.path)


class HDF5Source:
    """A generic HDF5 halo file; schema in docs/schema.md.

    Datasets ``id`` (n,) integer, ``pos`` (n, 3) comoving Mpc/h, ``vel`` (n, 3) km/s,
    ``mass`` (n,) Msun/h, ``radius`` (n,) comoving Mpc/h. Attributes ``box_size``
    (Mpc/h), ``h``, ``Om0``, ``omega_b`` (Omega_b h^2), ``redshift``; optional ``w0``,
    ``wa``, ``sim_name``, ``mass_definition``, ``radius_definition``.
    """

    DATASETS = ("id", "pos", "vel", "mass", "radius")
    REQUIRED_ATTRS = ("box_size", "h", "Om0", "omega_b", "redshift")

    def __init__(self, path, log10_mmin_msun: float = -np.inf, redshift: float | None = None):
        import h5py

        self.path = Path(path)
        self.log10_mmin_msun = float(log10_mmin_msun)
        if not self.path.is_file():
            raise InputError(f"halo catalog not found: {self.path}")
        try:
            with h5py.File(self.path, "r") as f:
                attrs = dict(f.attrs)
                missing = [d for d in self.DATASETS if d not in f]
                self._count = f["id"].shape[0] if "id" in f else 0
        except OSError as exc:
            raise InputError(f"cannot read halo catalog {self.path}: {exc}") from exc
        if missing:
            raise InputError(f"{self.path}: missing datasets {missing}")
        absent = [a for a in self.REQUIRED_ATTRS if a not in attrs]
        if absent:
            raise InputError(f"{self.path}: header has no {', '.join(absent)}")
        self.header = SimulationHeader(
            box_size=float(attrs["box_size"]),
            redshift=float(attrs["redshift"]),
            cosmology=Cosmology(
                h=float(attrs["h"]),
                Om0=float(attrs["Om0"]),
                omega_b=float(attrs["omega_b"]),
                w0=float(attrs.get("w0", -1.0)),
                wa=float(attrs.get("wa", 0.0)),
            ),
            sim_name=str(attrs.get("sim_name", self.path.stem)),
            mass_definition=str(attrs.get("mass_definition", "unspecified")),
            position_definition=str(attrs.get("position_definition", "unspecified")),
            radius_definition=str(attrs.get("radius_definition", "unspecified")),
        )
        if redshift is not None and abs(self.header.redshift - redshift) > 1e-3:
            raise InputError(
                f"{self.path}: catalog redshift {self.header.redshift} does not match the "
                f"requested snapshot redshift {redshift}"
            )

    def iter_blocks(self, max_hosts: int) -> Iterator[HaloBlock]:
        import h5py

        box, h = self.header.box_size, self.header.cosmology.h
        with h5py.File(self.path, "r") as f:
            for start in range(0, self._count, max_hosts):
                sl = slice(start, start + max_hosts)
                block = HaloBlock(
                    ids=np.asarray(f["id"][sl], dtype=np.uint64),
                    pos=units.wrap_periodic(np.asarray(f["pos"][sl], dtype=np.float64), box),
                    vel=np.asarray(f["vel"][sl], dtype=np.float64),
                    mass=np.asarray(f["mass"][sl], dtype=np.float64),
                    radius=np.asarray(f["radius"][sl], dtype=np.float64),
                )
                yield _cut(block, self.log10_mmin_msun, h)

    def describe(self) -> str:
        return str(self.path)


# Planck-2018-like cosmology (AbacusSummit c000) for synthetic boxes.
SYNTHETIC_COSMOLOGY = Cosmology(h=0.6736, Om0=0.315192, omega_b=ABACUS_C000_OMEGA_B)


class SyntheticSource:
    """Host halos drawn from diffsky's halo mass function in a periodic box.

    ``n_hosts`` hosts above ``log10_mmin_msun``; the box side follows from the HMF's number
    density so that the box holds that many hosts on average. Hosts are drawn in fixed
    blocks of ``BLOCK`` from a NumPy Philox stream keyed by (seed, block), so the
    catalog does not depend on how a reader chunks it. Radius: R200m from the mass.
    Velocities: Gaussian, 300 km/s per component (a stand-in bulk flow).
    """

    BLOCK = 65536
    VELOCITY_DISPERSION_KMS = 300.0

    def __init__(
        self,
        n_hosts: int,
        log10_mmin_msun: float = 11.0,
        redshift: float = 0.0,
        seed: int = 0,
        cosmology: Cosmology = SYNTHETIC_COSMOLOGY,
    ):
        if n_hosts < 1:
            raise InputError(f"synthetic source needs n_hosts >= 1, got {n_hosts}")
        self.n_hosts = int(n_hosts)
        self.log10_mmin_msun = float(log10_mmin_msun)
        self.seed = int(seed)
        self._lgm_table, self._cdf_table, density = _hmf_tables(self.log10_mmin_msun, redshift)
        h = cosmology.h
        volume_mpc_h = self.n_hosts / density * h**3  # density per Mpc^3 -> per (Mpc/h)^3
        self.header = SimulationHeader(
            box_size=float(volume_mpc_h ** (1 / 3)),
            redshift=float(redshift),
            cosmology=cosmology,
            sim_name=f"synthetic_n{self.n_hosts}_seed{self.seed}",
            mass_definition="diffsky SMDPL-calibrated host HMF draw (Msun/h)",
            position_definition="uniform in the box",
            radius_definition="R200m from the mass",
        )

    def _block(self, b: int) -> HaloBlock:
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

    def iter_blocks(self, max_hosts: int) -> Iterator[HaloBlock]:
        n_blocks = -(-self.n_hosts // self.BLOCK)
        pending = None
        for b in range(n_blocks):
            block = self._block(b)
            if pending is not None:
                block = HaloBlock(
                    *(
                        np.concatenate([getattr(pending, f.name), getattr(block, f.name)])
                        for f in dataclasses.fields(HaloBlock)
                    )
                )
            while len(block) >= max_hosts:
                yield block.select(slice(0, max_hosts))
                block = block.select(slice(max_hosts, None))
            pending = block if len(block) else None
        if pending is not None:
            yield pending

    def describe(self) -> str:
        return f"synthetic(n_hosts={self.n_hosts}, seed={self.seed})"


def _hmf_tables(log10_mmin_msun: float, redshift: float):
    """CDF tables of the host mass function above the cut, and n(>M) in Mpc^-3."""
    from diffsky.mass_functions.hmf_model import DEFAULT_HMF_PARAMS
    from diffsky.mass_functions.mc_hosts import _compute_nhalos_tot, _get_hmf_cdf_interp_tables

    lgm, cdf = _get_hmf_cdf_interp_tables(DEFAULT_HMF_PARAMS, log10_mmin_msun, redshift)
    density = float(_compute_nhalos_tot(DEFAULT_HMF_PARAMS, log10_mmin_msun, redshift, 1.0))
    return np.asarray(lgm, dtype=np.float64), np.asarray(cdf, dtype=np.float64), density


def open_source(
    kind: str,
    path=None,
    *,
    redshift: float | None = None,
    log10_mmin_msun: float = -np.inf,
    n_hosts: int | None = None,
    seed: int = 0,
):
    """Open a halo source by kind: 'abacus' (path), 'hdf5' (path) or 'synthetic' (n_hosts)."""
    if kind == "abacus":
        return AbacusSource(path, log10_mmin_msun, redshift)
    if kind == "hdf5":
        return HDF5Source(path, log10_mmin_msun, redshift)
    if kind == "synthetic":
        if n_hosts is None:
            raise InputError("synthetic source needs n_hosts")
        mmin = 11.0 if not np.isfinite(log10_mmin_msun) else log10_mmin_msun
        return SyntheticSource(n_hosts, mmin, 0.0 if redshift is None else redshift, seed)
    raise InputError(f"unknown halo source {kind!r}; expected one of {', '.join(SOURCE_KINDS)}")


def write_hdf5_halos(path, block: HaloBlock, header: SimulationHeader) -> None:
    """Write ``block`` as a generic HDF5 halo file (the schema ``HDF5Source`` reads)."""
    import h5py

    c = header.cosmology
    with h5py.File(path, "w") as f:
        for name, data in (("id", block.ids), ("pos", block.pos), ("vel", block.vel),
                           ("mass", block.mass), ("radius", block.radius)):  # fmt: skip
            f[name] = data
        f.attrs.update(
            box_size=header.box_size, h=c.h, Om0=c.Om0, omega_b=c.omega_b, w0=c.w0, wa=c.wa,
            redshift=header.redshift, sim_name=header.sim_name,
            mass_definition=header.mass_definition,
            position_definition=header.position_definition,
            radius_definition=header.radius_definition,
        )  # fmt: skip
