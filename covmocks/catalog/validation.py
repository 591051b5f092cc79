"""Catalog validation and its record: a catalog is done when its QA record exists.

Checks run on the file as written (read back from disk): its structure (schema, units,
attributes, counts, host links) and its physics (stellar mass within the baryon budget,
one central per host, satellites near their host in position and velocity; and, over the
box, satellites' radii and velocities and centrals' stellar-to-halo mass ratio as the model
gives them). The record
exists only for a catalog that passed every check; it also carries summary statistics
(counts, satellite fraction, stellar-mass percentiles) so a campaign report can be built
from ``qa/`` without reopening catalogs, and the file's SHA-256. ``check_file`` checks a
user's file and says what failed, one line per check.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import time
from collections.abc import Callable
from pathlib import Path

import h5py

from covmocks.catalog import hdf5
from covmocks.catalog.checks import (  # noqa: F401  (validation's names: limits and physics)
    NEWTON_G,
    REQUIRED_ATTRS,
    SATELLITE_MAX_DISTANCE_R200M,
    SATELLITE_MAX_SPEED_VVIR,
    CatalogChecks,
    r200m_comoving,
    schema_matches,
    virial_velocity_r200m,
)
from covmocks.core import files, provenance
from covmocks.core.errors import (
    CovmocksError,
    TransientInputError,
    ValidationError,
    read_error,
)
from covmocks.core.oneline import reason


def check_reasons(cat: hdf5.Catalog) -> dict[str, tuple[bool, str]]:
    """``check_catalog`` with reasons: name -> (passed, why it failed or '')."""
    d = cat.data
    if not schema_matches(d):
        return {"schema_complete": (False, "")}
    n = len(d["halo_id"])
    checks = CatalogChecks(n, cat.attrs, cat.units, lambda name, a, b: d[name][a:b])
    for s in range(0, n, hdf5.CHUNK_ROWS):
        checks.add({k: d[k][s : s + hdf5.CHUNK_ROWS] for k in hdf5.SCHEMA})
    return checks.finish()


def check_catalog(cat: hdf5.Catalog) -> dict[str, bool]:
    """Named checks of a catalog read back from disk; True means passed.

    The other checks need the full schema: where ``schema_complete`` fails (a column
    missing, or of the wrong dtype, shape or length) it is the only check reported.

    Structure: ``attributes_complete`` (``REQUIRED_ATTRS``), ``units_match_schema``,
    ``counts_match_attributes``, ``finite_values`` (every float column: positions,
    velocities, masses, SFR, sSFR), ``positions_in_box``, ``host_index_points_at_centrals``,
    ``centrals_host_themselves``, ``host_ids_consistent``. Physics:
    ``one_central_per_host`` (each halo_id has exactly one central);
    ``mstar_below_baryon_budget`` (log10_mstar < log10(fb) + log10_mpeak, ``fb`` the file's);
    ``satellites_near_host`` (periodic distance to the host central within
    ``SATELLITE_MAX_DISTANCE_R200M`` R200m of its log10_mhalo) and
    ``satellite_velocities_near_host`` (|v - v_host| below ``SATELLITE_MAX_SPEED_VVIR``
    V_vir), both on the satellites whose host_index is valid. Population (to catch a unit
    error, ``catalog.population``): ``satellite_radius_max``, ``satellite_radius_median``,
    ``satellite_velocity_rms`` and ``central_smhm_peak`` (each passes as not judged with
    fewer than ``population.MIN_MEMBERS`` members; ``check_reasons`` says so). A check whose
    attributes are missing fails. (``catalog.checks.CatalogChecks`` runs them, chunk by chunk.)
    """
    return {name: ok for name, (ok, _) in check_reasons(cat).items()}


def _unreadable_schema(path: Path) -> dict[str, list[str]]:
    """Failed checks (with reasons) that keep ``catalog.hdf5.read_catalog`` from reading ``path``:
    not an HDF5 file, a SCHEMA dataset missing, or one without a ``units`` attribute. A read
    that may pass next time (EIO, ESTALE...) raises ``TransientInputError`` instead."""
    failed: dict[str, list[str]] = {}
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        error = read_error(path, exc)
        if isinstance(error, TransientInputError):
            raise error from exc
        return {"readable_hdf5": [" ".join(str(exc).split())]}
    with f:
        for name in hdf5.SCHEMA:
            obj = f.get(name)
            if not isinstance(obj, h5py.Dataset):
                failed.setdefault("schema_complete", []).append(f"no dataset {name!r}")
            elif "units" not in obj.attrs:
                failed.setdefault("units_match_schema", []).append(f"{name!r} has no units")
    return failed


def _failure_lines(failed: dict[str, list[str] | str]) -> list[str]:
    """``name (reason)`` per failed check, or ``name`` where there is no reason."""
    lines = []
    for name, why in failed.items():
        why = "; ".join(why) if isinstance(why, list) else why
        lines.append(f"{name} ({why})" if why else name)
    return lines


def sha256(path, block_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of the file at ``path``, read in blocks of ``block_bytes`` (1 MiB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(block_bytes):
            digest.update(block)
    return digest.hexdigest()


class HashingFile(io.RawIOBase):
    """The file at ``path``, read-only, for h5py's ``fileobj`` driver: hashes (SHA-256) its
    bytes in file order as HDF5 reads them. A read beyond what is hashed first reads and
    hashes the gap (sequentially, in blocks of ``block_bytes``, kept no longer); a read of
    bytes already hashed is served from the file again and not hashed twice; ``hexdigest``
    hashes what is left to the end. Every byte is hashed once, in order, and none is held.
    ``requested`` and ``gap_bytes`` count the bytes HDF5 asked for and those read ahead.
    Reads past the end give zeros, like HDF5's own POSIX driver."""

    def __init__(self, path, block_bytes: int = 1 << 20):
        self._fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self._fd).st_size
        self.block_bytes = block_bytes
        self._digest = hashlib.sha256()
        self._hashed = self._pos = self.requested = self.gap_bytes = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self.size}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def _hash_to(self, end: int) -> None:
        """Hash the file's bytes up to ``end`` (not beyond its size)."""
        end = min(end, self.size)
        while self._hashed < end:
            block = os.pread(self._fd, min(self.block_bytes, end - self._hashed), self._hashed)
            if not block:
                raise OSError(f"file shrank while read: {self.size} bytes expected")
            self._digest.update(block)
            self._hashed += len(block)
            self.gap_bytes += len(block)

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        start, n = self._pos, len(view)
        self._hash_to(start)
        got = 0
        while got < n and (count := os.preadv(self._fd, [view[got:]], start + got)):
            got += count
        view[got:] = bytes(n - got)
        if start + got > self._hashed:
            self._digest.update(view[self._hashed - start : got])
            self._hashed = start + got
        self.requested += n
        self._pos = start + n
        return n

    def hexdigest(self) -> str:
        """The file's SHA-256 (hashing what HDF5 did not read, to the end)."""
        self._hash_to(self.size)
        return self._digest.hexdigest()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        super().close()


def _stream(path: Path, raw: HashingFile) -> tuple[list[str], CatalogChecks | None]:
    """(failure lines, None) where the catalog at ``path`` fails its schema or cannot be read,
    else ([], the checks fed with every row): the file read once through ``raw``, chunk by
    chunk of its datasets (``hdf5.CHUNK_ROWS`` rows where they are not chunked).

    Errors come in the order ``hdf5.read_catalog`` met them: the data's, then the units',
    then the attributes'."""
    with h5py.File(raw, "r") as f:
        datasets = {name: f[name] for name in hdf5.SCHEMA}
        try:
            attrs, attrs_error = hdf5.read_attrs(f), None
        except Exception as exc:  # noqa: BLE001  (raised below, after the data's)
            attrs, attrs_error = None, exc
        if not schema_matches(datasets):  # reading all as read_catalog did: its errors
            for ds in datasets.values():
                step = (ds.chunks or (hdf5.CHUNK_ROWS,))[0] if ds.shape else 1
                for s in range(0, ds.shape[0], step) if ds.shape else [()]:
                    ds[s : s + step] if ds.shape else ds[()]
            checks = None
        else:
            n = len(datasets["halo_id"])
            step = (datasets["halo_id"].chunks or (hdf5.CHUNK_ROWS,))[0]
            checks = CatalogChecks(n, attrs or {}, {}, lambda name, a, b: datasets[name][a:b],
                                   step)  # fmt: skip
            for s in range(0, n, step):
                checks.add({name: ds[s : s + step] for name, ds in datasets.items()})
            checks.resolve_far()  # reads the rows of hosts far from their members
        units_ = {name: str(ds.attrs["units"]) for name, ds in datasets.items()}
        if attrs_error is not None:
            raise attrs_error
        if checks is None:
            return ["schema_complete"], None
        checks.units = units_
        return [], checks


def _read(path: Path, raw: HashingFile) -> tuple[list[str], CatalogChecks | None]:
    """(failure lines, None) where ``path`` is no readable catalog, else ([], its checks fed
    with every row, read through ``raw``)."""
    unreadable = _unreadable_schema(path)
    if unreadable:
        return _failure_lines(unreadable), None
    return _stream(path, raw)


def _failures(checks: CatalogChecks) -> tuple[list[str], dict[str, bool]]:
    """(failure lines, every check's result) of a catalog streamed."""
    results = checks.finish()
    failed = {name: why for name, (ok, why) in results.items() if not ok}
    return _failure_lines(failed), {name: ok for name, (ok, _) in results.items()}


@dataclasses.dataclass(frozen=True)
class FileCheck:
    """What one read of a catalog found: ``lines``, one per failed check (empty where it
    passes); the ``sha256`` of its bytes and its root ``attrs`` (None where unreadable)."""

    lines: list[str]
    sha256: str | None = None
    attrs: dict | None = None


def inspect_file(path) -> FileCheck:
    """Check the catalog at ``path`` and hash it, reading it once, chunk by chunk; a file
    that cannot be read is one line. Writes nothing."""
    path = Path(path)
    try:
        found, is_dir = path.is_file(), path.is_dir()
    except (OSError, ValueError) as exc:  # a name too long, a NUL
        return FileCheck([f"readable_hdf5 ({reason(exc)}: {path})"])
    if not found:
        return FileCheck([f"readable_hdf5 ({'a directory' if is_dir else 'no such file'}: {path})"])
    try:
        with HashingFile(path) as raw:
            lines, checks = _read(path, raw)
            if lines:
                return FileCheck(lines)
            return FileCheck(_failures(checks)[0], raw.hexdigest(), checks.attrs)
    except (OSError, CovmocksError, KeyError, ValueError) as exc:  # transient, or odd content
        return FileCheck([f"readable_hdf5 ({' '.join(str(exc).split())})"])


def check_file(path) -> list[str]:
    """One line per failed check of the catalog at ``path`` (``name (reason)`` where there is
    a reason), empty where it passes (``inspect_file``). For a user's file
    (``covmocks validate``)."""
    return inspect_file(path).lines


def record_seconds(record: dict) -> float:
    """A box's seconds on its worker from its QA record: every stage the record holds
    (generation, validation; records made before stages hold ``wall_s``, the generation's).
    KeyError where it holds neither."""
    stages = record.get("stages") or {"generate_s": record["wall_s"]}
    return sum(float(s) for s in stages.values() if s is not None)


def validate(path, qa_record, *, task_id: str, wall_s: float | None = None,
             peak_rss: Callable[[], int] | None = None) -> dict:  # fmt: skip
    """Check the catalog at ``path``; on success write ``qa_record`` atomically and return it.

    Raises ValidationError (listing the failed checks, with reasons) and writes no record
    otherwise. The record carries the file's ``sha256``; ``wall_s``, the generation's time
    (None where it did not run here), also as ``stages.generate_s`` beside
    ``stages.validate_s``; and ``peak_rss_bytes``, what ``peak_rss()`` says once the checks
    are done (the task's peak over generation and validation; None where not given).

    One pass over the file: its rows are checked chunk by chunk (``catalog.checks``) as they
    are read, and its bytes hashed as HDF5 reads them (``HashingFile``); memory holds a chunk
    and the few bytes a galaxy that the checks across rows keep.
    """
    path, qa_record = Path(path), Path(qa_record)
    started = time.perf_counter()
    with HashingFile(path) as raw:
        lines, checks = _read(path, raw)
        if not lines:
            lines, results = _failures(checks)
        if lines:
            raise ValidationError(f"{path}: failed checks: {', '.join(lines)}")
        summary = checks.summary()
        file_bytes = path.stat().st_size
        digest = raw.hexdigest()
    attrs = checks.attrs
    record = {
        "task_id": task_id,
        "output": str(path),
        "checks": results,
        "summary": summary,
        "wall_s": wall_s,
        "stages": {"generate_s": wall_s, "validate_s": time.perf_counter() - started},
        "peak_rss_bytes": peak_rss() if peak_rss is not None else None,
        "file_bytes": file_bytes,
        "sha256": digest,
        "seed": int(attrs["seed"]),
        "model": f"{attrs['model_name']} {attrs['model_version']}",
        "validated_utc": provenance.utc_now(),
    }
    files.write_json(qa_record, record)  # the completion marker: durable, whole or absent
    return record
