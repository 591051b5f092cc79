"""The galaxy catalog file: HDF5 schema, atomic writer, and reader (schema in docs/schema.md).

One file per (realization, snapshot). Datasets are chunked, compressed and carry a
``units`` and a ``description`` attribute; file attributes describe the simulation, the
model, the random seed and the software that made it. Every writer (``CatalogWriter`` here,
the collective one in ``covmocks.catalog_mpio``) lays the file out with ``create_datasets``
and ``write_attrs`` and publishes it with ``publish``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import h5py

from covmocks.errors import OutputError

# The state at the snapshot (covmocks.model.quenched_log_ssfr_threshold is the one definition).
QUENCHED_DESCRIPTION = (
    "True where the galaxy is quenched at the snapshot: specific star formation rate below "
    "1/(5 t_obs), log10_ssfr < log10(0.2 / t_obs), t_obs the cosmic age at the snapshot in yr "
    "(file attribute t_obs_gyr x 1e9), compared in float32 as stored (Franx et al. 2008; "
    "Pacifici et al. 2016); covmocks.model.quenched_log_ssfr_threshold"
)
BRANCH_DESCRIPTION = (
    "diffstarpop's Monte-Carlo branch choice (quenched-branch SFH); NOT the state: the galaxy "
    "may still be star-forming at the snapshot; see is_quenched"
)
# name: (dtype, trailing shape, units, description)
SCHEMA = {
    "pos": ("f4", (3,), "comoving Mpc/h", "position in [0, box_size)"),
    "vel": ("f4", (3,), "km/s", "peculiar velocity"),
    "is_central": ("bool", (), "dimensionless", "True for the central galaxy of a host halo"),
    "host_index": ("i8", (), "dimensionless", "row of this galaxy's host central in this file"),
    "halo_id": ("u8", (), "dimensionless", "id of the host halo in the input catalog"),
    "log10_mhalo": ("f4", (), "log10(Msun)", "(sub)halo mass at the snapshot"),
    "log10_mpeak": ("f4", (), "log10(Msun)", "peak (sub)halo mass up to the snapshot"),
    "log10_mstar": ("f4", (), "log10(Msun)", "stellar mass formed by the snapshot"),
    "log10_sfr": ("f4", (), "log10(Msun/yr)", "star formation rate at the snapshot"),
    "log10_ssfr": ("f4", (), "log10(1/yr)", "specific star formation rate SFR/Mstar"),
    "is_quenched": ("bool", (), "dimensionless", QUENCHED_DESCRIPTION),
    "diffstar_quenched_branch": ("bool", (), "dimensionless", BRANCH_DESCRIPTION),
}
COMPRESSIONS = ("gzip", "lzf", "none")
# Rows per HDF5 chunk of every dataset: the file's storage layout (not box.CHUNK_HOSTS, the
# hosts populated at a time).
CHUNK_ROWS = 65536


class OutputExistsError(OutputError):
    """The final catalog appeared while this one was being written."""


def compression_args(compression: str, level: int | None = None) -> dict:
    """h5py ``create_dataset`` keywords of a compression name; OutputError if unknown."""
    if compression not in COMPRESSIONS:
        raise OutputError(f"unknown compression {compression!r}; expected one of {COMPRESSIONS}")
    if compression == "none":
        return {}
    if compression == "gzip":
        return {"compression": "gzip", "compression_opts": 4 if level is None else level}
    return {"compression": "lzf"}


def _attr_value(value):
    """HDF5 attributes take scalars and strings: dicts and None become JSON."""
    if isinstance(value, dict | list | tuple) or value is None:
        return json.dumps(value, sort_keys=True)
    return value


def create_datasets(f, n_rows: int, compression: dict, chunk_rows: int = CHUNK_ROWS) -> None:
    """The SCHEMA datasets in the open file ``f``: ``n_rows`` rows, resizable, chunked,
    compressed (``compression_args``), with their ``units`` and ``description``."""
    for name, (dtype, shape, unit, description) in SCHEMA.items():
        ds = f.create_dataset(
            name, shape=(n_rows, *shape), maxshape=(None, *shape), dtype=dtype,
            chunks=(chunk_rows, *shape), shuffle=bool(compression), **compression,
        )  # fmt: skip
        ds.attrs["units"] = unit
        ds.attrs["description"] = description


def write_attrs(f, attrs: dict) -> None:
    """File attributes; dicts, lists and None as JSON."""
    for key, value in attrs.items():
        f.attrs[key] = _attr_value(value)


def publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Make the closed temporary file ``tmp`` durable (fsync) and rename it to ``path``;
    refuse (OutputExistsError) where ``path`` appeared meanwhile, unless ``overwrite``."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"output appeared while writing: {path}")
    os.replace(tmp, path)


def check_output_path(path: Path, overwrite: bool) -> None:
    """Fail early, with one line, where ``path`` cannot or must not be written."""
    if path.exists() and not overwrite:
        raise OutputError(f"output exists: {path} (pass --overwrite to replace it)")
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"cannot create output directory {parent}: a file is in the way")
    if not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create output directory {parent}: {exc.strerror}") from exc
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"output directory is not writable: {parent}")


class CatalogWriter:
    """Append galaxy blocks to a temporary file; publish it under the final name on success.

    The temporary file sits beside the final one (same filesystem, so the rename is
    atomic); it is flushed and fsynced before the rename, and deleted on any error. A
    crash therefore never leaves a file under the final name.
    """

    def __init__(self, path, attrs: dict, *, compression="gzip", level=None,
                 chunk_rows=CHUNK_ROWS, overwrite=False):  # fmt: skip
        self.path = Path(path)
        check_output_path(self.path, overwrite)
        self.overwrite = overwrite
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self.attrs = attrs
        self.compression = compression_args(compression, level)
        self.chunk_rows = chunk_rows
        self.n = 0
        self._file = None

    def __enter__(self) -> CatalogWriter:
        self._file = h5py.File(self.tmp, "w")
        create_datasets(self._file, 0, self.compression, self.chunk_rows)
        return self

    def append(self, columns: dict) -> None:
        """Append one block; ``columns`` holds every SCHEMA name, same length."""
        n = len(columns["halo_id"])
        for name in SCHEMA:
            ds = self._file[name]
            ds.resize(self.n + n, axis=0)
            ds[self.n : self.n + n] = columns[name]
        self.n += n

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                write_attrs(self._file, {**self.attrs, "n_galaxies": self.n})
            self._file.close()
            if exc_type is None:
                publish(self.tmp, self.path, self.overwrite)
        finally:
            if self.tmp.exists():
                self.tmp.unlink()


@dataclasses.dataclass
class Catalog:
    """A catalog read back: ``data[name]`` arrays, ``units[name]`` strings, file ``attrs``."""

    path: Path
    data: dict
    units: dict
    attrs: dict

    def __len__(self) -> int:
        return int(self.attrs["n_galaxies"])


def read_catalog(path, columns=None) -> Catalog:
    """Read a catalog (all columns, or the named ones) with units and attributes.

    JSON-encoded attributes (dicts, lists) are decoded.
    """
    path = Path(path)
    with h5py.File(path, "r") as f:
        names = list(SCHEMA) if columns is None else list(columns)
        data = {n: f[n][...] for n in names}
        unit = {n: str(f[n].attrs["units"]) for n in names}
        attrs = {}
        for key, value in f.attrs.items():
            if isinstance(value, str) and (value[:1] in ("{", "[") or value == "null"):
                value = json.loads(value)
            attrs[key] = value
    return Catalog(path, data, unit, attrs)
