"""Catalog validation and its record: a catalog is done when its QA record exists.

Checks run on the file as written (read back from disk). The record also carries summary
statistics (counts, satellite fraction, stellar-mass percentiles) so a campaign report can
be built from ``qa/`` without reopening catalogs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from covmocks import catalog, provenance
from covmocks.errors import CovmocksError


class ValidationError(CovmocksError):
    """A catalog failed its checks; the message lists the failures."""


def check_catalog(cat: catalog.Catalog) -> dict[str, bool]:
    """Named checks of a catalog read back from disk; True means passed."""
    d, a = cat.data, cat.attrs
    n = len(d["halo_id"])
    cen = d["is_central"]
    host = d["host_index"]
    box = float(a["box_size"])
    floats = [name for name in catalog.SCHEMA if d[name].dtype.kind == "f"]
    in_range = n == 0 or (host.min() >= 0 and host.max() < n)
    checks = {
        "schema_complete": set(catalog.SCHEMA) <= set(d),
        "units_match_schema": all(cat.units[k] == catalog.SCHEMA[k][2] for k in catalog.SCHEMA),
        "counts_match_attributes": n == a["n_galaxies"] and int(cen.sum()) == a["n_centrals"],
        "finite_values": all(bool(np.all(np.isfinite(d[k]))) for k in floats),
        "positions_in_box": n == 0 or bool(d["pos"].min() >= 0 and d["pos"].max() < box),
        "host_index_points_at_centrals": bool(in_range and np.all(cen[host])),
        "centrals_host_themselves": bool(np.all(host[cen] == np.flatnonzero(cen))),
        "host_ids_consistent": bool(in_range and np.all(d["halo_id"] == d["halo_id"][host])),
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


def validate(path, qa_record, *, task_id: str, wall_s: float | None = None) -> dict:
    """Check the catalog at ``path``; on success write ``qa_record`` atomically and return it.

    Raises ValidationError (listing the failed checks) and writes no record otherwise.
    """
    path, qa_record = Path(path), Path(qa_record)
    cat = catalog.read_catalog(path)
    checks = check_catalog(cat)
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        raise ValidationError(f"{path}: failed checks: {', '.join(failed)}")
    record = {
        "task_id": task_id,
        "output": str(path),
        "passed": True,
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
