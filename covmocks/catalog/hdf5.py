"""The galaxy catalog file: HDF5 schema, atomic writer, and reader (schema in docs/schema.md).

One file per (realization, snapshot). Datasets are chunked, compressed and carry a
``units`` and a ``description`` attribute; file attributes describe the simulation, the
model, the random seed and the software that made it. Every writer (``CatalogWriter`` here,
the collective one in ``covmocks.catalog.mpio``) lays the file out with ``create_datasets``
and ``write_attrs`` and publishes it with ``publish``.

A full disk: HDF5 does not survive a write that fails (h5py 3.16, HDF5 2.0: the file can no
longer be closed, and closing it, or the interpreter's exit, may crash the process with
SIGSEGV). ``create_file`` therefore writes through a ``SpaceGuard``, which keeps a write that
failed for want of space in memory instead, so that HDF5 never sees it fail; the writer then
stops, deletes its temporary file and raises ``NoSpaceError`` (``covmocks.core.errors``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path

import h5py

from covmocks.catalog.attrs import read_attrs, write_attrs  # noqa: F401 (the writers' and readers')
from covmocks.core import files
from covmocks.core.errors import NO_SPACE_ERRNOS, NoSpaceError, OutputError, no_space
from covmocks.core.files import OutputExistsError
from covmocks.core.limits import COMPRESSIONS
from covmocks.core.oneline import reason

# The state at the snapshot (covmocks.galaxies.diffsky.quenched_log_ssfr_threshold is the one
# definition).
QUENCHED_DESCRIPTION = (
    "True where the galaxy is quenched at the snapshot: specific star formation rate below "
    "1/(5 t_obs), log10_ssfr < log10(0.2 / t_obs), t_obs the cosmic age at the snapshot in yr "
    "(file attribute t_obs_gyr x 1e9), compared in float32 as stored (Pacifici et al. 2016, "
    "ApJ 832, 79: sSFR < 0.2/t_U); covmocks.galaxies.diffsky.quenched_log_ssfr_threshold"
)
BRANCH_DESCRIPTION = (
    "diffstarpop's Monte-Carlo branch choice (quenched-branch SFH); NOT the state: the galaxy "
    "may still be star-forming at the snapshot; see is_quenched"
)
MSTAR_DESCRIPTION = (
    "stellar mass formed by the snapshot (the integral of the star-formation history, no "
    "stellar mass loss): the quantity diffstarpop was calibrated against"
)
SURVIVING_DESCRIPTION = (
    "stellar mass surviving at the snapshot, the observers' stellar mass: the mass formed "
    "less stellar mass loss, DSPS surviving_mstar for a Chabrier IMF "
    "(covmocks.galaxies.mass_loss)"
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
    "log10_mstar": ("f4", (), "log10(Msun)", MSTAR_DESCRIPTION),
    "log10_mstar_surviving": ("f4", (), "log10(Msun)", SURVIVING_DESCRIPTION),
    "log10_sfr": ("f4", (), "log10(Msun/yr)", "star formation rate at the snapshot"),
    "log10_ssfr": (
        "f4",
        (),
        "log10(1/yr)",
        "specific star formation rate SFR/Mstar, Mstar the mass formed (log10_sfr - log10_mstar)",
    ),
    "is_quenched": ("bool", (), "dimensionless", QUENCHED_DESCRIPTION),
    "diffstar_quenched_branch": ("bool", (), "dimensionless", BRANCH_DESCRIPTION),
}
# Rows per HDF5 chunk of every dataset: the file's storage layout (not box.CHUNK_HOSTS, the
# hosts populated at a time).
CHUNK_ROWS = 65536


def compression_args(compression: str, level: int | None = None) -> dict:
    """h5py ``create_dataset`` keywords of a compression name; OutputError if unknown."""
    if compression not in COMPRESSIONS:
        raise OutputError(f"unknown compression {compression!r}; expected one of {COMPRESSIONS}")
    if compression == "none":
        return {}
    if compression == "gzip":
        return {"compression": "gzip", "compression_opts": 4 if level is None else level}
    return {"compression": "lzf"}


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


class SpaceGuard:
    """A binary file for h5py's ``fileobj`` driver (``h5py.File(guard, "w")``) that never lets
    HDF5 see a write fail for want of space (``NO_SPACE_ERRNOS``): such a write, and every
    write after it, is kept in memory (reads see it) and the first failure is kept in
    ``error``. The writer checks ``error`` and stops (``check``); memory holds what HDF5
    writes until then (at most a block and HDF5's caches). Any other error is raised.
    Writes go straight to the file descriptor, at the offset asked (``os.pwrite``).
    """

    def __init__(self, path):
        self.path = Path(path)
        self.error: OSError | None = None
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
        except OSError as exc:
            if exc.errno in NO_SPACE_ERRNOS:
                raise no_space(self.path, exc) from exc
            raise
        self._pos = 0
        self._held: list[tuple[int, bytes]] = []  # (offset, data) not on disk, in order
        self._held_end = 0

    def check(self, path=None) -> None:
        """Raise ``NoSpaceError`` (naming ``path``, by default this file) if space ran out."""
        if self.error is not None:
            raise no_space(path or self.path, self.error) from self.error

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_CUR:
            offset += self._pos
        elif whence == os.SEEK_END:
            offset += max(os.fstat(self._fd).st_size, self._held_end)
        self._pos = offset
        return offset

    def tell(self) -> int:
        return self._pos

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        n, done = len(view), 0
        if self.error is None:
            try:
                while done < n:
                    done += os.pwrite(self._fd, view[done:], self._pos + done)
            except OSError as exc:
                if exc.errno not in NO_SPACE_ERRNOS:
                    raise
                self.error = exc
        if done < n:
            self._held.append((self._pos + done, bytes(view[done:])))
            self._held_end = max(self._held_end, self._pos + n)
        self._pos += n
        return n

    def read(self, size: int = -1) -> bytes:
        """``size`` bytes from the position: the file's, zeros past its end (like HDF5's
        own POSIX driver), overlaid with the writes held in memory."""
        if size < 0:
            size = max(0, max(os.fstat(self._fd).st_size, self._held_end) - self._pos)
        buf = bytearray(size)
        view, got = memoryview(buf), 0
        while got < size:
            count = os.preadv(self._fd, [view[got:]], self._pos + got)
            if count == 0:
                break
            got += count
        low, high = self._pos, self._pos + size
        for offset, held in self._held:
            a, b = max(low, offset), min(high, offset + len(held))
            if a < b:
                buf[a - low : b - low] = held[a - offset : b - offset]
        self._pos = high
        return bytes(buf)

    def truncate(self, size: int | None = None) -> int:
        size = self._pos if size is None else size
        try:
            os.ftruncate(self._fd, size)
        except OSError as exc:
            if exc.errno not in NO_SPACE_ERRNOS:
                raise
            self.error = self.error or exc
        self._held = [(o, d[: size - o]) for o, d in self._held if o < size]
        self._held_end = min(self._held_end, size)
        return size

    def flush(self) -> None:
        pass  # unbuffered: every write went to the kernel (``publish`` fsyncs)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            self._held = []


@contextlib.contextmanager
def create_file(tmp: Path, path: Path | None = None):
    """A new HDF5 file at ``tmp`` (a temporary of ``path``) written through a
    ``SpaceGuard``; yields ``(h5py.File, guard)`` and closes both. Where space ran out
    (``guard.error``) it raises ``NoSpaceError`` naming ``path``, after closing: HDF5 never
    saw a write fail, so it closes cleanly. The caller deletes ``tmp`` on any error."""
    guard = SpaceGuard(tmp)
    try:
        with h5py.File(guard, "w") as f:
            yield f, guard
            guard.check(path)
    except Exception as exc:
        if guard.error is not None and not isinstance(exc, NoSpaceError):
            raise no_space(path or tmp, guard.error) from exc  # the cause of the rest
        raise
    finally:
        guard.close()
    guard.check(path)  # HDF5 flushed its caches when closing


@contextlib.contextmanager
def replaced_file(path):
    """A small per-box or campaign HDF5 file (statistics, samples, clustering record,
    covariance) written whole or not at all: yields the open ``h5py.File`` of a temporary
    beside ``path`` (``create_file``), then publishes it over ``path`` (``publish``, fsync,
    replacing an older one); the temporary is removed on any error."""
    with files.replaced(path) as tmp:
        with create_file(tmp, path) as (f, _):
            yield f


def check_output_path(path: Path, overwrite: bool) -> None:
    """Fail early, with one line, where ``path`` cannot or must not be written."""
    path = Path(path)
    try:
        exists, is_dir = path.exists(), path.is_dir()
        parent = path.parent
        parent_exists, parent_is_dir = parent.exists(), parent.is_dir()
    except (OSError, ValueError) as exc:  # a name too long, a NUL
        raise OutputError(f"cannot write output {path}: {reason(exc)}") from None
    if len(path.name.encode("utf-8", "surrogateescape")) > 240:  # its temporary's is longer
        raise OutputError(f"cannot write output {path}: file name too long")
    if is_dir:
        raise OutputError(f"output is a directory: {path}")
    if exists and not overwrite:
        raise OutputExistsError(f"output exists: {path} (pass --overwrite to replace it)")
    if parent_exists and not parent_is_dir:
        raise OutputError(f"cannot create output directory {parent}: a file is in the way")
    if not parent_exists:
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if exc.errno in NO_SPACE_ERRNOS:
                raise no_space(parent, exc) from exc
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
        self.tmp = None  # the temporary (``core.files.temporary``), made on entering
        self.attrs = attrs
        self.compression = compression_args(compression, level)
        self.chunk_rows = chunk_rows
        self.n = 0
        self._file = None

    def __enter__(self) -> CatalogWriter:
        self.tmp = files.temporary(self.path)
        self._created = create_file(self.tmp, self.path)
        try:
            self._file, self._guard = self._created.__enter__()
            create_datasets(self._file, 0, self.compression, self.chunk_rows)
            self._guard.check(self.path)
        except BaseException as exc:
            try:
                if self._file is not None:
                    self._created.__exit__(type(exc), exc, exc.__traceback__)
            finally:
                self.tmp.unlink(missing_ok=True)
            raise
        return self

    def append(self, columns: dict) -> None:
        """Append one block; ``columns`` holds every SCHEMA name, same length. Raises
        ``NoSpaceError`` as soon as a write found the disk full."""
        n = len(columns["halo_id"])
        for name in SCHEMA:
            ds = self._file[name]
            ds.resize(self.n + n, axis=0)
            ds[self.n : self.n + n] = columns[name]
            self._guard.check(self.path)
        self.n += n

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                try:
                    write_attrs(self._file, {**self.attrs, "n_galaxies": self.n})
                except BaseException as failed:  # e.g. a value JSON cannot encode: close anyway
                    self._created.__exit__(type(failed), failed, failed.__traceback__)
                    raise
            # closes the file; raises NoSpaceError where space ran out, even while closing
            self._created.__exit__(exc_type, exc, tb)
            if exc_type is None:
                files.publish(self.tmp, self.path, self.overwrite)
        finally:
            self.tmp.unlink(missing_ok=True)


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

    The attributes the writer encoded as JSON (dicts, lists, None) are decoded
    (``read_attrs``); text is returned as written.
    """
    path = Path(path)
    with h5py.File(path, "r") as f:
        names = list(SCHEMA) if columns is None else list(columns)
        data = {n: f[n][...] for n in names}
        unit = {n: str(f[n].attrs["units"]) for n in names}
        attrs = read_attrs(f)
    return Catalog(path, data, unit, attrs)
