"""The halos just below a box's host mass cut, subsampled: what ``covmocks.box.probe``
populates to measure how many galaxies the cut misses (``BelowCut``).

A halo of mass M (log10 Msun) is in the window when ``cut - PROBE_DEX <= M < cut``
(``covmocks.core.limits``), and kept when a
hash of its id and a salt falls below the sampling fraction: the same halos whatever the
chunking or the number of MPI ranks, and independent of the random streams of the box.
"""

from __future__ import annotations

import numpy as np

from covmocks.core import units


def keep_fraction(ids: np.ndarray, fraction: float, salt: int) -> np.ndarray:
    """Bool (n,): the ids kept by a subsample of ``fraction``, by a SplitMix64 hash of
    (id, ``salt``) mapped to [0, 1); deterministic per id."""
    with np.errstate(over="ignore"):
        z = np.asarray(ids, np.uint64) ^ np.uint64(salt & 0xFFFFFFFFFFFFFFFF)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53 < fraction


class BelowCut:
    """The halos of ``source`` (opened with the cut ``log10_mhost_cut_msun - PROBE_DEX``)
    lighter than ``log10_mhost_cut_msun``, subsampled to ``fraction`` (``keep_fraction``
    with ``salt``). Reads like a source: ``header``, ``n_units``, ``unit_name``,
    ``read_units``, ``iter_blocks``; blocks of at most ``max_hosts``, maybe empty."""

    def __init__(self, source, log10_mhost_cut_msun: float, fraction: float, salt: int):
        self.source = source
        self.header = source.header
        self.log10_mhost_cut_msun = float(log10_mhost_cut_msun)
        self.fraction = float(fraction)
        self.salt = int(salt)

    def _window(self, block):
        lgm = units.log_mass_h_to_msun(np.log10(block.mass), self.header.cosmology.h)
        keep = lgm < self.log10_mhost_cut_msun
        keep[keep] = keep_fraction(block.ids[keep], self.fraction, self.salt)
        return block.select(keep)

    def n_units(self, max_hosts: int) -> int:
        return self.source.n_units(max_hosts)

    def unit_name(self, unit: int) -> str:
        return self.source.unit_name(unit)

    def read_units(self, max_hosts: int, first: int = 0, last: int | None = None):
        """The source's units [first, last), each a list of window blocks."""
        for blocks in self.source.read_units(max_hosts, first, last):
            yield [self._window(block) for block in blocks]

    def iter_blocks(self, max_hosts: int):
        return (self._window(block) for block in self.source.iter_blocks(max_hosts))
