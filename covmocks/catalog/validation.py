"""Catalog validation and its record: a catalog is done when its QA record exists.

Checks run on the file as written (read back from disk): its structure (schema, units,
attributes, counts, host links) and its physics (stellar mass within the baryon budget,
one central per host, satellites near their host in position and velocity). The record
exists only for a catalog that passed every check; it also carries summary statistics
(counts, satellite fraction, stellar-mass percentiles) so a campaign report can be built
from ``qa/`` without reopening catalogs, and the file's SHA-256. ``check_file`` checks a
user's file and says what failed, one line per check.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import numpy as np

from covmocks.catalog import hdf5
from covmocks.core import files, provenance, units
from covmocks.core.errors import (
    CovmocksError,
    TransientInputError,
    ValidationError,
    read_error,
)
from covmocks.core.oneline import reason

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
                  "model_version", "h", "Om0", "fb")  # fmt: skip

# The catalog keeps no host radius, so the host-relative checks measure a satellite against
# R200m of its host central's log10_mhalo: the radius enclosing 200 times the mean matter
# density (200 Om0 rho_crit0 in comoving units), comoving Mpc/h -- the radius synthetic hosts
# are given (synthetic.SyntheticSource). The model places a satellite within the input catalog's
# host radius (NFW r/R <= 1). AbacusSummit's r100_L2com is not R200m: on the Mini_N64_L32 box
# r100/R200m spans 0.75 to 1.15 and satellites reach 1.02 R200m; on a synthetic z=0.5 box of
# 1e5 hosts (2.6e5 satellites) they reach 1.00 R200m. A satellite farther than 3 R200m
# (periodic distance) is not where any input radius puts it: a position bug (wrong host,
# units, wrapping).
SATELLITE_MAX_DISTANCE_R200M = 3.0
# Satellite velocities are Gaussian about the host's, 1D dispersion V/sqrt(3) with the model's
# V = sqrt(G M / r_host): |v - v_host| = V |n|/sqrt(3), n a 3D standard normal, has no upper
# bound, so the limit must leave the tail negligible. Against V_vir = sqrt(G M / R200m)
# (physical radius) 10 V_vir is |n| < 17.3 sqrt(r_host/R200m): |n| < 10 (a chance of 2e-21
# per satellite) even where the input radius is a third of R200m. (5 V_vir would be
# |n| < 7.5 where r_host = 0.75 R200m, a chance of 4e-12 per satellite: expected false failures
# in a campaign of 1e11 satellites.) Satellites reach 2.7 V_vir on the Mini box, 3.4 V_vir on
# the synthetic z=0.5 box of 2.6e5 satellites. Catches velocities in the wrong units, or taken
# from another host where the host is of low mass.
SATELLITE_MAX_SPEED_VVIR = 10.0
# Newton's constant in (Mpc/Msun) (km/s)^2 (diffsky's fake_sats uses 4.3e-9).
NEWTON_G = 4.30091e-9


def _schema_matches(d: dict) -> bool:
    """Every SCHEMA column present, with its dtype and trailing shape, all of one length."""
    if not set(hdf5.SCHEMA) <= set(d):
        return False
    n = len(d["halo_id"])
    return all(
        d[k].dtype == np.dtype(dtype) and d[k].shape == (n, *shape)
        for k, (dtype, shape, _, _) in hdf5.SCHEMA.items()
    )


def _counts_match(cen: np.ndarray, attrs: dict) -> bool:
    if not all(k in attrs for k in _REQUIRED_COUNTS):
        return False
    return all(int(attrs[k]) == count(cen) for k, count in _COUNTS.items() if k in attrs)


def r200m_comoving(log10_mass_msun, h: float, Om0: float) -> np.ndarray:
    """R200m (comoving Mpc/h) of halos of mass ``log10_mass_msun`` (log10 Msun, no h): the
    radius within which the mean density is 200 times the mean matter density."""
    return units.r200m_h(10 ** units.log_mass_msun_to_h(log10_mass_msun, h), Om0)


def virial_velocity_r200m(log10_mass_msun, h: float, Om0: float, redshift: float) -> np.ndarray:
    """V_vir = sqrt(G M / R200m) in km/s, R200m the physical radius at ``redshift``."""
    r_phys = units.comoving_h_to_physical_mpc(r200m_comoving(log10_mass_msun, h, Om0), h, redshift)
    return np.sqrt(NEWTON_G * 10 ** np.asarray(log10_mass_msun, dtype=np.float64) / r_phys)


def _missing(a: dict, names) -> str:
    """'' where every attribute in ``names`` is present, else the reason naming the absent."""
    absent = [k for k in names if k not in a]
    return "no attribute " + " ".join(repr(k) for k in absent) if absent else ""


def _worst(values: np.ndarray, bad: np.ndarray, rows: np.ndarray, total: int, what: str,
           unit: str) -> tuple[bool, str]:  # fmt: skip
    """(passed, reason) of a per-row limit: ``bad`` rows of ``total`` failed it."""
    if not bad.any():
        return True, ""
    finite = np.where(bad & np.isfinite(values), values, -np.inf)
    i = int(np.argmax(finite)) if np.isfinite(finite).any() else int(np.argmax(bad))
    return False, (f"{int(bad.sum())} of {total} {what} (worst {values[i]:.3g} {unit} "
                   f"at row {int(rows[i])})")  # fmt: skip


def _one_central_per_host(d: dict, cen: np.ndarray) -> tuple[bool, str]:
    """Each halo_id has exactly one central: centrals' halo ids are unique and every row's
    halo id is a central's."""
    ids, count = np.unique(d["halo_id"][cen], return_counts=True)
    shared = int((count > 1).sum())
    orphans = np.unique(d["halo_id"][~np.isin(d["halo_id"], ids)])
    if not shared and not len(orphans):
        return True, ""
    reasons = []
    if shared:
        reasons.append(f"{shared} halo ids with more than one central (e.g. {ids[count > 1][0]})")
    if len(orphans):
        reasons.append(f"{len(orphans)} halo ids without a central (e.g. {orphans[0]})")
    return False, "; ".join(reasons)


def _satellites_near_host(d: dict, a: dict, sat: np.ndarray, host: np.ndarray):
    """(position check, velocity check) of the satellites in ``sat`` (rows whose host_index
    is a valid central), against their host central's R200m and V_vir."""
    position = _missing(a, ("box_size", "h", "Om0"))
    velocity = _missing(a, ("h", "Om0", "redshift"))
    rows = np.flatnonzero(sat)
    hosts = host[rows]
    lgm = d["log10_mhalo"][hosts]
    if position:
        near = (False, position)
    else:
        box, h, om0 = float(a["box_size"]), float(a["h"]), float(a["Om0"])
        delta = d["pos"][rows].astype(np.float64) - d["pos"][hosts]
        delta -= box * np.round(delta / box)
        dist = np.linalg.norm(delta, axis=1) / r200m_comoving(lgm, h, om0)
        limit = SATELLITE_MAX_DISTANCE_R200M
        near = _worst(dist, ~(dist <= limit), rows, len(rows),
                      f"satellites beyond {limit:g} R200m of their host", "R200m")  # fmt: skip
    if velocity:
        slow = (False, velocity)
    else:
        h, om0, z = float(a["h"]), float(a["Om0"]), float(a["redshift"])
        dv = d["vel"][rows].astype(np.float64) - d["vel"][hosts]
        speed = np.linalg.norm(dv, axis=1) / virial_velocity_r200m(lgm, h, om0, z)
        limit = SATELLITE_MAX_SPEED_VVIR
        slow = _worst(speed, ~(speed < limit), rows, len(rows),
                      f"satellites faster than {limit:g} V_vir relative to their host",
                      "V_vir")  # fmt: skip
    return near, slow


def _mstar_below_baryon_budget(d: dict, a: dict) -> tuple[bool, str]:
    """Every galaxy's stellar mass below fb times its peak halo mass."""
    if "fb" not in a:
        return False, _missing(a, ("fb",))
    fb = float(a["fb"])
    if not fb > 0:
        return False, f"fb = {fb} is not positive"
    excess = d["log10_mstar"].astype(np.float64) - (np.log10(fb) + d["log10_mpeak"])
    return _worst(excess, ~(excess < 0), np.arange(len(excess)), len(excess),
                  "galaxies with log10_mstar >= log10(fb) + log10_mpeak", "dex above")  # fmt: skip


def check_reasons(cat: hdf5.Catalog) -> dict[str, tuple[bool, str]]:
    """``check_catalog`` with reasons: name -> (passed, why it failed or '')."""
    d, a = cat.data, cat.attrs
    if not _schema_matches(d):
        return {"schema_complete": (False, "")}
    n = len(d["halo_id"])
    cen = d["is_central"]
    host = d["host_index"]
    rows = np.arange(n)
    floats = [k for k, (dtype, *_) in hdf5.SCHEMA.items() if np.dtype(dtype).kind == "f"]
    units_ = {k: unit for k, (_, _, unit, _) in hdf5.SCHEMA.items()}
    in_range = n == 0 or bool(host.min() >= 0 and host.max() < n)
    box = float(a["box_size"]) if "box_size" in a else np.nan
    # rows whose host_index is a row of this file holding a central (the others fail
    # host_index_points_at_centrals): the host-relative physics is checked on these
    valid = (host >= 0) & (host < n)
    valid[valid] = cen[host[valid]]
    near, slow = _satellites_near_host(d, a, valid & ~cen, host)
    checks = {
        "schema_complete": (True, ""),
        "attributes_complete": (not _missing(a, REQUIRED_ATTRS), _missing(a, REQUIRED_ATTRS)),
        "units_match_schema": all(cat.units.get(k) == u for k, u in units_.items()),
        "counts_match_attributes": _counts_match(cen, a),
        # every float column, SFR and sSFR included: no separate SFR check
        "finite_values": all(bool(np.all(np.isfinite(d[k]))) for k in floats),
        "positions_in_box": bool(np.isfinite(box) and np.all((d["pos"] >= 0) & (d["pos"] < box))),
        # every row's host_index is a row of this file holding a central: a satellite's
        # host is never a satellite (nor the satellite itself)
        "host_index_points_at_centrals": in_range and bool(np.all(cen[host])),
        "centrals_host_themselves": bool(np.all(host[cen] == rows[cen])),
        "host_ids_consistent": in_range and bool(np.all(d["halo_id"] == d["halo_id"][host])),
        "one_central_per_host": _one_central_per_host(d, cen),
        "mstar_below_baryon_budget": _mstar_below_baryon_budget(d, a),
        "satellites_near_host": near,
        "satellite_velocities_near_host": slow,
    }
    return {
        name: (bool(c[0]), c[1]) if isinstance(c, tuple) else (bool(c), "")
        for name, c in checks.items()
    }


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
    V_vir), both on the satellites whose host_index is valid. A check whose attributes are
    missing fails.
    """
    return {name: ok for name, (ok, _) in check_reasons(cat).items()}


def summarize(cat: hdf5.Catalog) -> dict:
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


def _read(path: Path) -> tuple[list[str], hdf5.Catalog | None]:
    """(failure lines, None) where ``path`` is no readable catalog, else ([], the catalog)."""
    unreadable = _unreadable_schema(path)
    if unreadable:
        return _failure_lines(unreadable), None
    return [], hdf5.read_catalog(path)


def _failures(cat: hdf5.Catalog) -> tuple[list[str], dict[str, bool]]:
    """(failure lines, every check's result) of a catalog read back."""
    results = check_reasons(cat)
    failed = {name: why for name, (ok, why) in results.items() if not ok}
    return _failure_lines(failed), {name: ok for name, (ok, _) in results.items()}


def check_file(path) -> list[str]:
    """One line per failed check of the catalog at ``path`` (``name (reason)`` where there is
    a reason), empty where it passes; a file that cannot be read is one line. For a user's
    file (``covmocks validate``): writes nothing."""
    path = Path(path)
    try:
        found, is_dir = path.is_file(), path.is_dir()
    except (OSError, ValueError) as exc:  # a name too long, a NUL
        return [f"readable_hdf5 ({reason(exc)}: {path})"]
    if not found:
        return [f"readable_hdf5 ({'a directory' if is_dir else 'no such file'}: {path})"]
    try:
        lines, cat = _read(path)
    except (OSError, CovmocksError, KeyError, ValueError) as exc:  # transient, or odd content
        return [f"readable_hdf5 ({' '.join(str(exc).split())})"]
    return lines or _failures(cat)[0]


def validate(path, qa_record, *, task_id: str, wall_s: float | None = None,
             peak_rss_bytes: int | None = None) -> dict:  # fmt: skip
    """Check the catalog at ``path``; on success write ``qa_record`` atomically and return it.

    Raises ValidationError (listing the failed checks, with reasons) and writes no record
    otherwise. The record carries the file's ``sha256`` and the ``wall_s`` and
    ``peak_rss_bytes`` given (of the process that made it; None where unknown).
    """
    path, qa_record = Path(path), Path(qa_record)
    lines, cat = _read(path)
    if not lines:
        lines, checks = _failures(cat)
    if lines:
        raise ValidationError(f"{path}: failed checks: {', '.join(lines)}")
    record = {
        "task_id": task_id,
        "output": str(path),
        "checks": checks,
        "summary": summarize(cat),
        "wall_s": wall_s,
        "peak_rss_bytes": peak_rss_bytes,
        "file_bytes": path.stat().st_size,
        "sha256": sha256(path),
        "seed": int(cat.attrs["seed"]),
        "model": f"{cat.attrs['model_name']} {cat.attrs['model_version']}",
        "validated_utc": provenance.utc_now(),
    }
    files.write_json(qa_record, record)  # the completion marker: durable, whole or absent
    return record
