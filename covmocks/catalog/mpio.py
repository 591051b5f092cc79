"""One catalog from the per-unit shard files of an MPI box: copied in order by one rank
(``assemble``), or written by every rank at once through parallel HDF5 (``write_collective``).

A shard is a catalog file (``catalog.hdf5.CatalogWriter``, uncompressed) of one work unit, its host
indices counted from its own first row; ``read_shard`` reads it back in slices with
file-global host indices. Both writers share the catalog's layout
(``catalog.hdf5.create_datasets``), attributes (``catalog.hdf5.write_attrs``) and atomic finish
(``catalog.hdf5.publish``: fsync, refuse an output that appeared meanwhile, rename); their
temporary file is removed on error.

A full disk: ``assemble`` writes through ``catalog.hdf5.CatalogWriter``
(``catalog.hdf5.SpaceGuard``). The collective write goes through MPI-IO, which no Python file
object can stand in for: a write that finds no space fails in HDF5 (on the ranks that took part in
it, or on all of them), and ``write_collective`` turns that error into ``NoSpaceError`` (one line,
naming the catalog), after removing its temporary file. The file is left open (see there).
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

import h5py
import numpy as np

from covmocks.catalog import hdf5
from covmocks.core import files
from covmocks.core.errors import NO_SPACE_ERRNOS, NoSpaceError

# How the errors of MPI-IO (ROMIO: "Other I/O error No space left on device") and of the MPI
# standard's error classes read when a write found no space.
NO_SPACE_TEXTS = (*(os.strerror(e) for e in sorted(NO_SPACE_ERRNOS)), "MPI_ERR_NO_SPACE",
                  "MPI_ERR_QUOTA")  # fmt: skip
# Rows per read when shards are copied into the catalog (about 5 MB per column at most).
COPY_ROWS = 1 << 18


def parallel_hdf5() -> bool:
    """Whether this h5py is built with MPI (``driver='mpio'``)."""
    return bool(h5py.get_config().mpi)


def read_shard(path: Path, n_rows: int, first_row: int):
    """(file row, columns) of a shard in slices of ``COPY_ROWS`` rows; the shard's rows go to
    file rows from ``first_row`` on, and its host indices are shifted to match."""
    with h5py.File(path, "r") as f:
        if f["halo_id"].shape[0] != n_rows:
            raise RuntimeError(
                f"shard {path.name} holds {f['halo_id'].shape[0]} rows, not {n_rows}"
            )
        for start in range(0, n_rows, COPY_ROWS):
            stop = min(start + COPY_ROWS, n_rows)
            columns = {name: f[name][start:stop] for name in hdf5.SCHEMA}
            columns["host_index"] += first_row
            yield first_row + start, columns


def assemble(path: Path, attrs: dict, shards: list[tuple[Path, int]], *, compression: str,
             overwrite: bool) -> None:  # fmt: skip
    """One process: the ``(shard, n_rows)`` files, in order, into one catalog through
    ``catalog.hdf5.CatalogWriter``; each shard is deleted once copied, so that the disk holds
    little more than one box."""
    with hdf5.CatalogWriter(path, attrs, compression=compression, overwrite=overwrite) as w:
        for shard, n_rows in shards:
            for _, columns in read_shard(shard, n_rows, w.n):
                w.append(columns)
            shard.unlink()


def write_collective(comm, path: Path, tmp: Path, attrs: dict, n_rows: int, pieces, n_rounds: int,
                     *, compression: str, overwrite: bool) -> None:  # fmt: skip
    """Every rank of ``comm`` (collective): one catalog of ``n_rows`` rows, written to ``tmp``
    through parallel HDF5 and renamed to ``path`` by rank 0.

    ``pieces``: this rank's (file row, columns) in any order; ``n_rounds``: the most pieces
    any rank has. Writes are collective (compressed datasets need it), one piece per rank
    per round; a rank with nothing left takes part with an empty selection. ``attrs``: the
    same on every rank. An exception leaves the file open (closing is collective, and the
    other ranks may never reach it): the caller must abort the job, or end every rank without
    closing it. On any error every rank that gets to it removes ``tmp`` (rank 0, which would
    rename it, may never leave the call that failed); an error that says the disk is full is
    raised as ``NoSpaceError``.
    """
    from h5py import h5fd, h5p, h5s

    try:
        dxpl = h5p.create(h5p.DATASET_XFER)
        dxpl.set_dxpl_mpio(h5fd.MPIO_COLLECTIVE)
        f = h5py.File(tmp, "w", driver="mpio", comm=comm)  # no `with`: see above
        hdf5.create_datasets(f, n_rows, hdf5.compression_args(compression))
        pieces = iter(pieces)
        for _ in range(n_rounds):
            piece = next(pieces, None)
            for name, (_, shape, _, _) in hdf5.SCHEMA.items():
                ds = f[name]
                fspace = ds.id.get_space()
                if piece is None:
                    fspace.select_none()
                    mspace = h5s.create_simple((1, *shape))
                    mspace.select_none()
                    data = np.zeros((1, *shape), dtype=ds.dtype)
                else:
                    row, columns = piece
                    data = np.ascontiguousarray(columns[name], dtype=ds.dtype)
                    fspace.select_hyperslab((row, *(0,) * len(shape)), data.shape)
                    mspace = h5s.create_simple(data.shape)
                ds.id.write(mspace, fspace, data, dxpl=dxpl)
        hdf5.write_attrs(f, {**attrs, "n_galaxies": n_rows})
        f.close()
        comm.Barrier()
        if comm.rank == 0:
            files.publish(tmp, path, overwrite)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        reason = out_of_space(exc)
        if reason is not None and not isinstance(exc, NoSpaceError):
            raise NoSpaceError(f"no space left to write {path}: {reason}") from exc
        raise


def out_of_space(exc: BaseException) -> str | None:
    """Why ``exc`` (or an exception it came from) is a write that found no space
    ("No space left on device", "Disk quota exceeded"); None where it is not."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if getattr(exc, "errno", None) in NO_SPACE_ERRNOS:
            return os.strerror(exc.errno)
        text = str(exc)
        reason = next((t for t in NO_SPACE_TEXTS if t in text), None)
        if reason is not None:
            return reason
        exc = exc.__cause__ or exc.__context__
    return None


def rounds(n_rows: list[int]) -> int:
    """Pieces of ``COPY_ROWS`` rows that shards of ``n_rows`` rows make."""
    return sum(math.ceil(n / COPY_ROWS) for n in n_rows)
