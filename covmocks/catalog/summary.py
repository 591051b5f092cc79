"""Per-box science statistics, accumulated chunk by chunk while the catalog is written.

Everything accumulated adds: integer histograms and counts, and sums of stellar mass and SFR
in fixed point (integers of ``MSTAR_QUANTUM`` Msun and ``SFR_QUANTUM`` Msun/yr), so that the
statistics of a box are bit-identical whatever the chunk size or the number of MPI ranks
(a float sum would depend on the order of addition). Masses log10(Msun), SFR log10(Msun/yr),
no h; volumes and densities comoving, per (Mpc/h)^3 and per Mpc^3 where said.

Stellar mass here is the observers' (``log10_mstar_surviving``: the mass formed less stellar
mass loss), what observed mass functions, M* thresholds and stellar mass densities count: the
mass functions, the stellar-to-halo histograms, the occupation thresholds, the completeness
limit and ``mstar_density_msun_mpc3``. The mass formed (``log10_mstar``) is summed too, for
``mstar_formed_density_msun_mpc3``.

Completeness (``completeness``, ``covmocks.catalog.completeness``): the limits above which the
halos just below the host cut would add less than 1% of the galaxies, from the galaxies of a
subsample of those halos (``add_probe``: the ``probe_*`` histograms; never in the catalog).
Stored per box in ``qa/<task>.stats.hdf5`` (``write``; ``read`` loads it).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from covmocks.catalog import completeness as complete
from covmocks.core.limits import PROBE_DEX

MSTAR_EDGES = np.round(np.arange(5.0, 13.0 + 1e-9, 0.1), 1)  # log10 Msun, 0.1 dex
SFR_EDGES = np.round(np.arange(-6.0, 4.0 + 1e-9, 0.1), 1)  # log10 Msun/yr
SSFR_EDGES = np.round(np.arange(-15.0, -7.0 + 1e-9, 0.1), 1)  # log10 1/yr
MHALO_EDGES = np.round(np.arange(9.0, 16.0 + 1e-9, 0.1), 1)  # log10 Msun
OCCUPATION_THRESHOLDS = (8.0, 9.0, 10.0, 11.0)  # log10 Msun: N(> M*) per host
MSTAR_QUANTUM = 1e3  # Msun: fixed-point unit of the stellar mass sum
SFR_QUANTUM = 1e-6  # Msun/yr: fixed-point unit of the SFR sum

# name -> (edges along each axis); all int64 counts
HISTOGRAMS = {
    "smf_all": ("mstar",),
    "smf_centrals": ("mstar",),
    "smf_satellites": ("mstar",),
    "smf_quenched": ("mstar",),
    "sfr_all": ("sfr",),
    "ssfr_by_mstar": ("mstar", "ssfr"),
    "centrals_mhalo_mstar": ("mhalo", "mstar"),
    "centrals_mhalo_sfr": ("mhalo", "sfr"),
    "satellites_mpeak_mstar": ("mhalo", "mstar"),
    "satellites_mpeak_sfr": ("mhalo", "sfr"),
    "hosts_mhalo": ("mhalo",),
    "occupation_mhalo": ("threshold", "mhalo"),
    "probe_mstar": ("mstar",),
    "probe_sfr": ("sfr",),
}
EDGES = {"mstar": MSTAR_EDGES, "sfr": SFR_EDGES, "ssfr": SSFR_EDGES, "mhalo": MHALO_EDGES}


BIN_DEX = 0.1  # every axis: 0.1 dex bins


def _index(x, axis: str) -> np.ndarray:
    """Bin of each value along ``axis`` (``EDGES``), -1 outside the range (or NaN)."""
    edges = EDGES[axis]
    i = np.floor((np.asarray(x, np.float64) - edges[0]) / BIN_DEX)
    inside = (i >= 0) & (i < len(edges) - 1)  # False for NaN
    return np.where(inside, i, -1).astype(np.int64)


def _count(shape: tuple[int, ...], *indices) -> np.ndarray:
    """Counts of the index tuples (one array per axis), entries with a -1 left out."""
    keep = np.logical_and.reduce([i >= 0 for i in indices])
    flat = np.ravel_multi_index([i[keep] for i in indices], shape)
    return np.bincount(flat, minlength=int(np.prod(shape))).reshape(shape).astype(np.int64)


def _shape(axes) -> tuple[int, ...]:
    sizes = {"threshold": len(OCCUPATION_THRESHOLDS)} | {k: len(v) - 1 for k, v in EDGES.items()}
    return tuple(sizes[a] for a in axes)


def _quanta(log10_values: np.ndarray, quantum: float) -> int:
    """Sum of ``10**log10_values`` in integer units of ``quantum``, over the finite values
    only: a NaN or infinite galaxy (which fails validation) adds nothing, where a cast
    would add an arbitrary integer."""
    values = 10 ** log10_values[np.isfinite(log10_values)]
    return int(np.rint(values / quantum).astype(np.int64).sum())


@dataclasses.dataclass
class BoxStatistics:
    """Counts of one box (or part of one): histograms, galaxy counts, fixed-point sums."""

    counts: dict = dataclasses.field(
        default_factory=lambda: {k: np.zeros(_shape(a), np.int64) for k, a in HISTOGRAMS.items()}
    )
    n_centrals: int = 0
    n_satellites: int = 0
    mstar_sum: int = 0  # surviving mass, units of MSTAR_QUANTUM Msun
    mstar_formed_sum: int = 0  # mass formed, units of MSTAR_QUANTUM Msun
    sfr_sum: int = 0  # units of SFR_QUANTUM Msun/yr

    def add(self, columns: dict, first_row: int) -> None:
        """Count one chunk of catalog columns (``box.populate.catalog_columns``) whose first
        galaxy is row ``first_row`` of its file (host indices are file rows)."""
        cen = columns["is_central"]
        mstar = columns["log10_mstar_surviving"].astype(np.float64)
        sfr = columns["log10_sfr"].astype(np.float64)
        mhalo = columns["log10_mhalo"].astype(np.float64)
        sat, quenched = ~cen, columns["is_quenched"]
        i_m, i_s = _index(mstar, "mstar"), _index(sfr, "sfr")
        i_ss, i_h = _index(columns["log10_ssfr"], "ssfr"), _index(mhalo, "mhalo")
        i_p = _index(columns["log10_mpeak"], "mhalo")
        n_m, n_s, n_ss, n_h = (_shape((a,))[0] for a in ("mstar", "sfr", "ssfr", "mhalo"))
        c = self.counts
        c["smf_all"] += _count((n_m,), i_m)
        c["smf_centrals"] += _count((n_m,), i_m[cen])
        c["smf_satellites"] += _count((n_m,), i_m[sat])
        c["smf_quenched"] += _count((n_m,), i_m[quenched])
        c["sfr_all"] += _count((n_s,), i_s)
        c["ssfr_by_mstar"] += _count((n_m, n_ss), i_m, i_ss)
        c["centrals_mhalo_mstar"] += _count((n_h, n_m), i_h[cen], i_m[cen])
        c["centrals_mhalo_sfr"] += _count((n_h, n_s), i_h[cen], i_s[cen])
        c["satellites_mpeak_mstar"] += _count((n_h, n_m), i_p[sat], i_m[sat])
        c["satellites_mpeak_sfr"] += _count((n_h, n_s), i_p[sat], i_s[sat])
        c["hosts_mhalo"] += _count((n_h,), i_h[cen])
        i_host = i_h[columns["host_index"] - first_row]
        for t, threshold in enumerate(OCCUPATION_THRESHOLDS):
            c["occupation_mhalo"][t] += _count((n_h,), i_host[mstar > threshold])
        self.n_centrals += int(cen.sum())
        self.n_satellites += int((~cen).sum())
        self.mstar_sum += _quanta(mstar, MSTAR_QUANTUM)
        self.mstar_formed_sum += _quanta(columns["log10_mstar"].astype(np.float64), MSTAR_QUANTUM)
        self.sfr_sum += _quanta(sfr, SFR_QUANTUM)

    def add_probe(self, columns: dict) -> None:
        """Count the galaxies of a chunk of the completeness probe's halos (the model's
        columns; ``covmocks.box.probe``) in each selection variable's probe histogram."""
        for select, (_, name) in complete.HISTOGRAM_OF.items():
            (axis,) = HISTOGRAMS[name]
            values = columns[complete.SELECT_COLUMN[select]].astype(np.float64)
            self.counts[name] += _count(_shape((axis,)), _index(values, axis))

    def merge(self, other: BoxStatistics) -> None:
        """Add the counts of another part of the same box (another MPI rank's units)."""
        for key in self.counts:
            self.counts[key] += other.counts[key]
        self.n_centrals += other.n_centrals
        self.n_satellites += other.n_satellites
        self.mstar_sum += other.mstar_sum
        self.mstar_formed_sum += other.mstar_formed_sum
        self.sfr_sum += other.sfr_sum

    def completeness(self, probe_fraction: float) -> dict:
        """Stellar-mass and SFR limits (``covmocks.catalog.completeness.limits``), the probe
        subsampled at ``probe_fraction`` (NaN: no probe)."""
        return complete.limits(self.counts, probe_fraction, EDGES)

    def summary(self, *, box_size: float, h: float, log10_mhost_min_msun: float,
                log10_msub_min_msun: float, probe_fraction: float) -> dict:  # fmt: skip
        """Derived numbers of the box: counts, number densities per (Mpc/h)^3, cosmic SFR
        density (Msun/yr/Mpc^3) and stellar mass densities (Msun/Mpc^3: surviving, formed),
        completeness limits (the probe subsampled at ``probe_fraction``, NaN: none)."""
        volume_h = box_size**3  # (Mpc/h)^3
        volume = volume_h / h**3  # Mpc^3
        n = self.n_centrals + self.n_satellites
        return {
            "n_galaxies": n,
            "n_centrals": self.n_centrals,
            "n_satellites": self.n_satellites,
            "volume_mpc3_per_h3": volume_h,
            "number_density_h3_mpc3": n / volume_h,
            "number_density_centrals_h3_mpc3": self.n_centrals / volume_h,
            "number_density_satellites_h3_mpc3": self.n_satellites / volume_h,
            "sfr_density_msun_yr_mpc3": self.sfr_sum * SFR_QUANTUM / volume,
            "mstar_density_msun_mpc3": self.mstar_sum * MSTAR_QUANTUM / volume,
            "mstar_formed_density_msun_mpc3": self.mstar_formed_sum * MSTAR_QUANTUM / volume,
            "log10_mhost_min_msun": log10_mhost_min_msun,
            "log10_msub_min_msun": log10_msub_min_msun,
            **self.completeness(probe_fraction),
            "completeness_probe_fraction": probe_fraction,
            "completeness_probe_dex": PROBE_DEX,
            "completeness_definition": complete.DEFINITION,
        }

    def write(self, path: Path, attrs: dict) -> None:
        """Write the counts, bin edges and ``attrs`` (e.g. ``summary``) to ``path``,
        atomically (a temporary file renamed)."""
        from covmocks.catalog.hdf5 import replaced_file, write_attrs

        with replaced_file(path) as f:
            for name, values in self.counts.items():
                f.create_dataset(name, data=values, compression="gzip", shuffle=True)
                f[name].attrs["axes"] = ",".join(HISTOGRAMS[name])
            for axis, edges in EDGES.items():
                f[f"edges_{axis}"] = edges
            f["occupation_thresholds"] = np.asarray(OCCUPATION_THRESHOLDS)
            write_attrs(f, {**attrs, "mstar_sum_quanta": self.mstar_sum,
                            "mstar_formed_sum_quanta": self.mstar_formed_sum,
                            "sfr_sum_quanta": self.sfr_sum,
                            "mstar_quantum_msun": MSTAR_QUANTUM,
                            "sfr_quantum_msun_yr": SFR_QUANTUM})  # fmt: skip


def read(path) -> dict:
    """A statistics file as plain arrays and attributes (``{"attrs": {...}, name: array}``)."""
    import h5py

    with h5py.File(path, "r") as f:
        out = {name: f[name][...] for name in f}
        out["attrs"] = dict(f.attrs)
    return out
