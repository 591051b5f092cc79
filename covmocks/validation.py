"""Catalog validation and its record: a catalog is done when its QA record exists.

Checks run on the file as written (read back from disk). The record exists only for a
catalog that passed every check; it also carries summary statistics (counts, satellite
fraction, stellar-mass percentiles) so a campaign report can be built from ``qa/`` without
reopening catalogs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from covmocks import catalog, provenance
from covmocks.errors import CovmocksError, TransientInputError, read_error

# count attribute -> which rows it counts; n_hosts and n_satellites are checked where the
# writer recorded them (generate_box and mpibox do, a bare CatalogWriter does not)
_COUNTS = {
    "n_galaxies": lambda cen: len(cen),
    "n_centrals": lambda cen: int(cen.sum()),
    "n_hosts": lambda cen: int(cen.sum()),
    "n_satellites": lambda cen: int((~cen).sum()),
}
_REQUIRED_COUNTS = ("n_galaxies", "n_centrals")
# attributes that make a catalog self-describing, and that its QA record quotes
REQUIRED_ATTRS = ("box_size", "redshift", "seed", "realization", "snapshot", "model_name",
                  "model_version")  # fmt: skip


class ValidationError(CovmocksError):
    """A catalog failed its checks; the message lists the failures."""


def _schema_matches(d: dict) -> bool:
    """Every SCHEMA column present, with its dtype and trailing shape, all of one length."""
    if not set(catalog.SCHEMA) <= set(d):
        return False
    n = len(d["halo_id"])
    return all(
        d[k].dtype == np.dtype(dtype) and d[k].shape == (n, *shape)
        for k, (dtype, shape, _, _) in catalog.SCHEMA.items()
    )


def _counts_match(cen: np.ndarray, attrs: dict) -> bool:
    if not all(k in attrs for k in _REQUIRED_COUNTS):
        return False
    return all(int(attrs[k]) == count(cen) for k, count in _COUNTS.items() if k in attrs)


def check_catalog(cat: catalog.Catalog) -> dict[str, bool]:
    """Named checks of a catalog read back from disk; True means passed.

    The other checks need the full schema: where ``schema_complete`` fails (a column
    missing, or of the wrong dtype, shape or length) it is the only check reported.
    """
    d, a = cat.data, cat.attrs
    if not _schema_matches(d):
        return {"schema_complete": False}
    n = len(d["halo_id"])
    cen = d["is_central"]
    host = d["host_index"]
    rows = np.arange(n)
    floats = [k for k, (dtype, *_) in catalog.SCHEMA.items() if np.dtype(dtype).kind == "f"]
    units = {k: unit for k, (_, _, unit, _) in catalog.SCHEMA.items()}
    in_range = n == 0 or bool(host.min() >= 0 and host.max() < n)
    box = float(a["box_size"]) if "box_size" in a else np.nan
    checks = {
        "schema_complete": True,
        "attributes_complete": all(k in a for k in REQUIRED_ATTRS),
        "units_match_schema": all(cat.units.get(k) == u for k, u in units.items()),
        "counts_match_attributes": _counts_match(cen, a),
        "finite_values": all(bool(np.all(np.isfinite(d[k]))) for k in floats),
        "positions_in_box": bool(np.isfinite(box) and np.all((d["pos"] >= 0) & (d["pos"] < box))),
        # every row's host_index is a row of this file holding a central: a satellite's
        # host is never a satellite (nor the satellite itself)
        "host_index_points_at_centrals": in_range and bool(np.all(cen[host])),
        "centrals_host_themselves": bool(np.all(host[cen] == rows[cen])),
        "host_ids_consistent": in_range and bool(np.all(d["halo_id"] == d["halo_id"][host])),
    }
    return {name: bool(ok) for name, ok in checks.items()}


def summarize(cat: catalog.Catalog) -> dict:
    """Summary statistics for the campaign report."""
    d = cat.data
    n = len(d["halo_id"])
    lgms = d["log10_mstar"]
    return {
        "n_galaxies": n,
        "n_centrals": int(d["is_central"].sum()),
        "satellite_fraction": float((~d["is_central"]).mean()) if n else 0.0,
        "quenched_fraction": float(d["is_quenched"].mean()) if n else 0.0,
        "log10_mstar_percentiles_5_50_95": [float(x) for x in np.percentile(lgms, [5, 50, 95])]
        if n
        else [],
    }


def _unreadable_schema(path: Path) -> dict[str, list[str]]:
    """Failed checks (with reasons) that keep ``catalog.read_catalog`` from reading ``path``:
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
        for name in catalog.SCHEMA:
            obj = f.get(name)
            if not isinstance(obj, h5py.Dataset):
                failed.setdefault("schema_complete", []).append(f"no dataset {name!r}")
            elif "units" not in obj.attrs:
                failed.setdefault("units_match_schema", []).append(f"{name!r} has no units")
    return failed


def validate(path, qa_record, *, task_id: str, wall_s: float | None = None) -> dict:
    """Check the catalog at ``path``; on success write ``qa_record`` atomically and return it.

    Raises ValidationError (listing the failed checks) and writes no record otherwise.
    """
    path, qa_record = Path(path), Path(qa_record)
    unreadable = _unreadable_schema(path)
    if unreadable:
        reasons = [f"{name} ({'; '.join(why)})" for name, why in unreadable.items()]
        raise ValidationError(f"{path}: failed checks: {', '.join(reasons)}")
    cat = catalog.read_catalog(path)
    checks = check_catalog(cat)
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        raise ValidationError(f"{path}: failed checks: {', '.join(failed)}")
    record = {
        "task_id": task_id,
        "output": str(path),
        "checks": checks,
        "summary": summarize(cat),
        "wall_s": wall_s,
        "file_bytes": path.stat().st_size,
        "seed": int(cat.attrs["seed"]),
        "model": f"{cat.attrs['model_name']} {cat.attrs['model_version']}",
        "validated_utc": provenance.utc_now(),
    }
    qa_record.parent.mkdir(parents=True, exist_ok=True)
    tmp = qa_record.with_name(f".{qa_record.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, qa_record)
    return record
