"""AbacusSummit CompaSO halo catalogs (``.../halos/zZ.ZZZ``), raw or merger-tree cleaned,
read slab by slab through abacusutils' ``CompaSOHaloCatalog``.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from covmocks.core import units
from covmocks.core.errors import InputError, read_error
from covmocks.core.oneline import reason
from covmocks.halos import checks
from covmocks.halos.abacus_layout import box_dirs, cleaning_dir, describe, incomplete
from covmocks.halos.blocks import (
    ABACUS_C000_OMEGA_B,
    CLEANING_TALLY,
    Cosmology,
    HaloBlock,
    SimulationHeader,
    add_tallies,
    check_redshift,
    cut,
    split,
)

log = logging.getLogger(__name__)


class AbacusSource:
    """An AbacusSummit CompaSO catalog directory (``.../halos/zZ.ZZZ``), read slab by slab.

    Columns: ``id``; mass = ``N`` x ``ParticleMassHMsun``; position ``x_L2com`` and
    velocity ``v_L2com`` (centre of mass of the largest L2 subhalo, i.e. the halo core);
    radius ``r100_L2com`` (radius of the L2 halo enclosing all its particles).
    Work units: the slab files. They, and the cleaned files, are checked first against
    their directory's ``checksums.crc32`` (presence and size, ``_check_complete``).

    ``cleandir``: read the merger-tree-cleaned catalog (Bose et al. 2022) from this cleaning
    root (``cleaning_dir``): halos the finder split are merged back (their particles added to
    ``N``) and the fragments, left by abacusutils with ``N = 0``, are dropped here.
    ``cleaning_tally`` counts what cleaning changed in the slabs this process read.
    """

    FIELDS = ["id", "N", "x_L2com", "v_L2com", "r100_L2com"]
    CLEANING_FIELDS = ["N_merge"]

    def __init__(self, path, log10_mhost_min_msun: float = -np.inf, redshift=None,
                 cleandir=None):  # fmt: skip
        self.path = Path(path)
        self.log10_mhost_min_msun = float(log10_mhost_min_msun)
        try:
            found = self.path.is_dir()
            slabs, prefix = box_dirs(self.path)[0]
            self.slab_files = sorted(slabs.glob(f"{prefix}*.asdf"))
        except (OSError, ValueError) as exc:  # a name too long, a NUL
            raise InputError(f"cannot read halo catalog {self.path}: {reason(exc)}") from None
        if not found or not self.slab_files:
            raise InputError(f"halo catalog not found: {self.path} (no halo_info/halo_info_*.asdf)")
        self.cleandir = None if cleandir is None else Path(cleandir).absolute()
        if self.cleandir is not None:
            cleaned = cleaning_dir(self.path, self.cleandir)
            try:
                found = cleaned.is_dir()
            except (OSError, ValueError):
                found = False
            if not found:
                raise InputError(f"cleaned catalog not found: {cleaned} (for {self.path})")
        self._check_complete()
        self.cleaning_tally = dict.fromkeys(CLEANING_TALLY, 0)
        self._raw_header = dict(self._open(self.slab_files[0], ["id"], cleaned=False).header)
        self.header = self._make_header(self._raw_header)
        check_redshift(self.path, self.header, redshift)

    def _check_complete(self) -> None:
        """The files this box reads against their directories' ``checksums.crc32``: presence
        and size (``abacus_layout.incomplete``), before any halo is read. A directory still
        being staged is an InputError naming its missing or short files (never retried), not
        a box with halos missing. A directory without the file is read as it is."""
        for directory, prefix in box_dirs(self.path, self.cleandir):
            try:
                problems = incomplete(directory, prefix)
            except OSError as exc:
                raise read_error(directory, exc) from exc
            if problems:
                raise InputError(f"halo catalog incomplete: {describe(directory, problems)}")

    def _open(self, slab: Path, fields, cleaned: bool):
        from abacusnbody.data.compaso_halo_catalog import CompaSOHaloCatalog

        try:
            if not cleaned:
                return CompaSOHaloCatalog(str(slab), fields=fields, cleaned=False)
            return CompaSOHaloCatalog(str(slab), fields=fields + self.CLEANING_FIELDS,
                                      cleaned=True, cleandir=self.cleandir)  # fmt: skip
        except OSError as exc:
            raise read_error(slab, exc) from exc
        except Exception as exc:  # abacusutils raises many types for one problem
            raise InputError(f"cannot read halo catalog {slab}: {exc}") from exc

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
        values = {"box_size": raw["BoxSize"], "redshift": raw["Redshift"], "h": raw["H0"] / 100.0,
                  "Om0": raw["Omega_M"], "omega_b": omega_b, "w0": raw.get("w0", -1.0),
                  "wa": raw.get("wa", 0.0)}  # fmt: skip
        values = {k: checks.header_number(self.path, values, k) for k in values}
        cosmo = Cosmology(**{k: values[k] for k in ("h", "Om0", "omega_b", "w0", "wa")})
        checks.check_cosmology(self.path, cosmo.h, cosmo.Om0, cosmo.omega_b)
        return SimulationHeader(
            box_size=values["box_size"],
            redshift=values["redshift"],
            cosmology=cosmo,
            sim_name=str(raw.get("SimName", self.path.parent.parent.name)),
            mass_definition="N x ParticleMassHMsun (CompaSO L1 halo)",
            position_definition="x_L2com (centre of mass of the L2 core)",
            radius_definition="r100_L2com (radius enclosing 100% of L2 particles)",
            notes=notes,
            hubble_now=float(raw["HubbleNow"]) if "HubbleNow" in raw else None,
        )

    def read_slab(self, slab: Path) -> HaloBlock:
        halos = self._open(slab, self.FIELDS, cleaned=self.cleandir is not None).halos
        if self.cleandir is not None:
            halos = self._count_cleaning(slab, halos)
        h, box = self.header.cosmology.h, self.header.box_size
        block = HaloBlock(
            ids=np.asarray(halos["id"], dtype=np.uint64),
            pos=units.wrap_periodic(np.asarray(halos["x_L2com"], dtype=np.float64) + box / 2, box),
            vel=np.asarray(halos["v_L2com"], dtype=np.float64),
            mass=np.asarray(halos["N"], dtype=np.float64) * self._raw_header["ParticleMassHMsun"],
            radius=np.asarray(halos["r100_L2com"], dtype=np.float64),
        )
        return cut(block, self.log10_mhost_min_msun, h)

    def _count_cleaning(self, slab: Path, halos):
        """Drop the fragments that cleaning merged into other halos (``N == 0``); tally."""
        merged_away = np.asarray(halos["N"]) == 0
        n_merge = np.asarray(halos["N_merge"], dtype=np.int64)
        tally = {"halos_merged_away": int(merged_away.sum()),
                 "halos_grown": int((n_merge > 0).sum()), "particles_merged": int(n_merge.sum()),
                 "slabs": 1}  # fmt: skip
        log.info("%s cleaned: %d fragments merged away, %d halos grown by %d particles",
                 slab.name, tally["halos_merged_away"], tally["halos_grown"],
                 tally["particles_merged"])  # fmt: skip
        self.cleaning_tally = add_tallies([self.cleaning_tally, tally])
        return halos[~merged_away]

    def cleaning_record(self) -> dict:
        """What cleaning did to the slabs tallied (a catalog attribute)."""
        if self.cleandir is None:
            return {"applied": False}
        return {"applied": True, "cleandir": str(self.cleandir), **self.cleaning_tally}

    def n_units(self, max_hosts: int) -> int:
        return len(self.slab_files)

    def unit_name(self, unit: int) -> str:
        return self.slab_files[unit].name

    def read_units(self, max_hosts: int, first: int = 0, last: int | None = None):
        """Slab files [first, last), each as a list of blocks of at most ``max_hosts``."""
        for slab in self.slab_files[first:last]:
            yield list(split(self.read_slab(slab), max_hosts))

    def iter_blocks(self, max_hosts: int) -> Iterator[HaloBlock]:
        return itertools.chain.from_iterable(self.read_units(max_hosts))

    def describe(self) -> str:
        return str(self.path)
