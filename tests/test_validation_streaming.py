"""Validation streams the file: the same checks, reasons, summary and record as the whole-file
path it replaced, in memory bounded by a chunk and a few bytes a galaxy, and the SHA-256 taken
in the same pass.

The oracle below is the whole-file validation as it was at 934f1b1 (``old_check_reasons``,
``old_summarize``), kept verbatim but for names, so the streaming checks are compared with it
on the hand-made cases of test_validation.py, on real catalogs and on large random ones,
broken at random.
"""

import hashlib
import json
import tracemalloc

import h5py
import numpy as np
import pytest

from covmocks.catalog import checks, hdf5, population, validation
from covmocks.core import nfw, units
from tests.test_validation import (
    CASES,
    UNREADABLE,
    broken_catalog,
    good_attrs,
    real_catalogs,  # noqa: F401  (the fixture)
)

# ---- the oracle: whole-file validation at 934f1b1 ------------------------------------------

# count attribute -> which rows it counts; n_hosts and n_satellites are checked where the
# writer recorded them (generate_box and mpibox do, a bare CatalogWriter does not)
_COUNTS = {
    "n_galaxies": lambda cen: len(cen),
    "n_centrals": lambda cen: int(cen.sum()),
    "n_hosts": lambda cen: int(cen.sum()),
    "n_satellites": lambda cen: int((~cen).sum()),
}
_REQUIRED_COUNTS = ("n_galaxies", "n_centrals")


REQUIRED = checks.REQUIRED_ATTRS


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
        dist = np.linalg.norm(delta, axis=1) / checks.r200m_comoving(lgm, h, om0)
        limit = checks.SATELLITE_MAX_DISTANCE_R200M
        near = _worst(dist, ~(dist <= limit), rows, len(rows),
                      f"satellites beyond {limit:g} R200m of their host", "R200m")  # fmt: skip
    if velocity:
        slow = (False, velocity)
    else:
        h, om0, z = float(a["h"]), float(a["Om0"]), float(a["redshift"])
        dv = d["vel"][rows].astype(np.float64) - d["vel"][hosts]
        speed = np.linalg.norm(dv, axis=1) / checks.virial_velocity_r200m(lgm, h, om0, z)
        limit = checks.SATELLITE_MAX_SPEED_VVIR
        slow = _worst(speed, ~(speed < limit), rows, len(rows),
                      f"satellites faster than {limit:g} V_vir relative to their host",
                      "V_vir")  # fmt: skip
    return near, slow


def _mstar_below_baryon_budget(d: dict, a: dict) -> tuple[bool, str]:
    """Every galaxy's stellar mass below fb times its peak halo mass, 0.3 dex of margin."""
    if "fb" not in a:
        return False, _missing(a, ("fb",))
    fb = float(a["fb"])
    if not fb > 0:
        return False, f"fb = {fb} is not positive"
    excess = d["log10_mstar"].astype(np.float64) - (np.log10(fb) + d["log10_mpeak"])
    return _worst(excess, ~(excess < 0.3), np.arange(len(excess)), len(excess),
                  "galaxies with log10_mstar >= log10(fb) + log10_mpeak + 0.3",
                  "dex above the budget")  # fmt: skip


def old_check_reasons(cat: hdf5.Catalog) -> dict[str, tuple[bool, str]]:
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
    results = {
        "schema_complete": (True, ""),
        "attributes_complete": (
            not _missing(a, checks.REQUIRED_ATTRS),
            _missing(a, checks.REQUIRED_ATTRS),
        ),
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
        for name, c in results.items()
    }


def old_summarize(cat: hdf5.Catalog) -> dict:
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


# ---- the streaming checks against the oracle -----------------------------------------------


def streamed(path) -> tuple[dict, dict, str]:
    """(check results with reasons, summary, sha256) of one streamed pass over ``path``."""
    with validation.HashingFile(path) as raw:
        lines, found = validation._read(path, raw)
        assert lines == []
        return found.finish(), found.summary(), raw.hexdigest()


def assert_same_as_whole_file(path):
    """The oracle's checks as it gave them; the population checks (which came after it) the
    same streamed as in memory."""
    cat = hdf5.read_catalog(path)
    new, summary, digest = streamed(path)
    old = old_check_reasons(cat)
    assert list(new) == [*old, *population.CHECKS]
    assert {name: new[name] for name in old} == old
    assert validation.check_reasons(cat) == new  # in memory, chunked too
    assert summary == old_summarize(cat)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("case", sorted(set(CASES) - UNREADABLE))
def test_hand_made_cases_same_as_whole_file(tmp_path, case):
    path = broken_catalog(tmp_path / "mock.hdf5", CASES[case][0])
    cat = hdf5.read_catalog(path)
    if not old_check_reasons(cat)["schema_complete"][0]:
        assert validation.check_file(path) == ["schema_complete"]
        assert validation.check_reasons(cat) == old_check_reasons(cat)
    else:
        assert_same_as_whole_file(path)


@pytest.mark.slow
def test_real_catalogs_same_as_whole_file(real_catalogs):  # noqa: F811
    for path in real_catalogs:
        assert_same_as_whole_file(path)


def synthetic_columns(n_hosts: int, rng, first_row: int = 0, box: float = 500.0) -> dict:
    """A valid block as covmocks writes it: each central followed by its satellites."""
    n_sat = rng.poisson(1.45, n_hosts)
    n = n_hosts + int(n_sat.sum())
    cen = np.zeros(n, bool)
    first = np.arange(n_hosts) + np.cumsum(n_sat) - n_sat
    cen[first] = True
    host = np.repeat(np.arange(n_hosts), n_sat + 1)
    lgm_host = rng.uniform(11, 14, n_hosts)
    lgm = np.where(cen, lgm_host[host], lgm_host[host] - 1)
    # satellites where the model puts them: NFW radii within R200m, isotropic directions,
    # Gaussian velocities of 1D dispersion V_vir / sqrt(3) (the population checks' model)
    r200m = checks.r200m_comoving(lgm_host, 0.6736, 0.315192)[host]
    c = nfw.concentration_dm14(units.log_mass_msun_to_h(lgm_host, 0.6736), 0.5)[host]
    direction = rng.normal(0, 1, (n, 3))
    direction /= np.linalg.norm(direction, axis=1)[:, None]
    x = nfw.radius_fraction_quantile(rng.random(n), c)
    offset = np.where(cen[:, None], 0, direction * (x * r200m)[:, None])
    pos = ((rng.uniform(0, box, (n_hosts, 3))[host] + offset) % box).astype("f4")
    pos[pos >= box] = 0
    vvir = checks.virial_velocity_r200m(lgm_host, 0.6736, 0.315192, 0.5)[host]
    vel = rng.normal(0, 300, (n_hosts, 3))[host] + np.where(
        cen[:, None], 0, rng.normal(0, 1, (n, 3)) * vvir[:, None] / np.sqrt(3)
    )
    mstar = lgm - 2.5
    sfr = rng.uniform(-2, 1, n)
    columns = {"pos": pos, "vel": vel, "is_central": cen, "host_index": first_row + first[host],
               "halo_id": (np.arange(n_hosts) + 10**12 + first_row)[host], "log10_mhalo": lgm,
               "log10_mpeak": lgm, "log10_mstar": mstar, "log10_mstar_surviving": mstar - 0.2,
               "log10_sfr": sfr, "log10_ssfr": sfr - mstar, "is_quenched": rng.random(n) < 0.3,
               "diffstar_quenched_branch": rng.random(n) < 0.5}  # fmt: skip
    return {k: np.asarray(v, dtype=hdf5.SCHEMA[k][0]) for k, v in columns.items()}


def write_synthetic(path, n_hosts, seed=0, chunk_rows=hdf5.CHUNK_ROWS, compression="lzf",
                    edit=None) -> int:  # fmt: skip
    """A synthetic catalog of ``n_hosts`` hosts (about 2.45 galaxies each) in blocks of
    50,000 hosts; ``edit(columns, rng)`` may break a block. Returns its rows."""
    rng = np.random.default_rng(seed)
    attrs = {**good_attrs(), "box_size": 500.0, "radius_definition": units.R200M_DEFINITION}
    del attrs["n_hosts"], attrs["n_satellites"], attrs["n_centrals"]
    n_cen = 0
    writer = hdf5.CatalogWriter(path, attrs, compression=compression, chunk_rows=chunk_rows)
    with writer:
        for i in range(0, n_hosts, 50_000):
            columns = synthetic_columns(min(50_000, n_hosts - i), rng, writer.n)
            if edit is not None:
                edit(columns, rng)
            n_cen += int(columns["is_central"].sum())
            writer.append(columns)
        writer.attrs = {**attrs, "n_centrals": n_cen}
    return writer.n


def test_synthetic_catalog_passes(tmp_path):
    path = tmp_path / "box.hdf5"
    write_synthetic(path, 120_000, chunk_rows=8192)
    assert validation.check_file(path) == []
    assert_same_as_whole_file(path)


def _break(kind):
    """An ``edit`` breaking a few random rows of a block in one way."""

    def edit(c, rng):
        n = len(c["halo_id"])
        rows = rng.choice(n, 5, replace=False)
        if kind == "far_hosts":  # valid, but hosts far from their satellites' rows
            sat = np.flatnonzero(~c["is_central"])[:5]
            c["host_index"][sat] = c["host_index"][0]
            c["halo_id"][sat] = c["halo_id"][0]
        elif kind == "host_ahead":
            c["host_index"][rows] = c["host_index"][-1]
        elif kind == "host_out_of_range":
            c["host_index"][rows[:2]] = -3
        elif kind == "halo_ids":
            c["halo_id"][rows] = rng.integers(0, 2**63, 5, dtype=np.uint64)
        elif kind == "nan_positions":
            c["pos"][rows, 1] = np.nan
        elif kind == "satellites_far":
            c["pos"][rows] = (c["pos"][rows] + 100.0) % 500.0
        elif kind == "satellites_fast":
            c["vel"][rows, 0] += np.float32(1e4)
            c["vel"][rows[:2], 2] = np.inf
        elif kind == "mstar":
            c["log10_mstar"][rows] = c["log10_mpeak"][rows] + np.float32(rng.uniform(-1, 1))
        elif kind == "centrals":
            c["is_central"][rows] = ~c["is_central"][rows]

    return edit


BREAKS = ["far_hosts", "host_ahead", "host_out_of_range", "halo_ids", "nan_positions",
          "satellites_far", "satellites_fast", "mstar", "centrals"]  # fmt: skip


@pytest.mark.parametrize("kind", BREAKS)
def test_random_breakage_same_as_whole_file(tmp_path, kind):
    """Broken in every block (rows spread over the file's chunks), some far from their
    host's chunk: the same results, reasons (worst row included) and summary."""
    path = tmp_path / "box.hdf5"
    write_synthetic(path, 60_000, seed=len(kind), chunk_rows=4096, edit=_break(kind))
    assert_same_as_whole_file(path)
    assert validation.check_file(path) != [] or kind == "far_hosts"


def test_shuffled_rows_same_as_whole_file(tmp_path):
    """Rows in random order (every host anywhere in the file): still exact."""
    rng = np.random.default_rng(5)
    columns = synthetic_columns(20_000, rng)
    order = rng.permutation(len(columns["halo_id"]))
    where = np.argsort(order)
    columns = {k: v[order] for k, v in columns.items()}
    columns["host_index"] = where[columns["host_index"]]
    attrs = {**good_attrs(), "box_size": 500.0, "n_centrals": int(columns["is_central"].sum())}
    del attrs["n_hosts"], attrs["n_satellites"]
    path = tmp_path / "box.hdf5"
    with hdf5.CatalogWriter(path, attrs, chunk_rows=2048) as writer:
        writer.append(columns)
    assert validation.check_file(path) == []
    assert_same_as_whole_file(path)
    columns["vel"][7, 0] = 1e5
    path.unlink()
    with hdf5.CatalogWriter(path, attrs, chunk_rows=2048) as writer:
        writer.append(columns)
    assert_same_as_whole_file(path)


# ---- memory, the hash and the record ----------------------------------------------------


def test_validation_memory_is_bounded_by_the_chunk(tmp_path):
    """Validating 1.2 million galaxies (75 MB of columns) peaks well below a third of the
    columns' size (numpy's allocations are traced): a chunk of 16384 rows, 5 bytes a galaxy
    (is_central, log10_mstar) and 8 bytes a central (its halo id)."""
    path = tmp_path / "box.hdf5"
    n = write_synthetic(path, 500_000, chunk_rows=16384)
    columns = n * sum(np.dtype(d).itemsize * int(np.prod(s)) for d, s, *_ in hdf5.SCHEMA.values())
    qa = tmp_path / "qa.json"
    tracemalloc.start()
    try:
        validation.validate(path, qa, task_id="t0")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < columns / 3, (peak, columns)
    assert peak < 16 * n, (peak, n)  # well below 63 bytes a galaxy
    record = json.loads(qa.read_text())
    assert record["summary"] == old_summarize(hdf5.read_catalog(path))


def test_hash_in_one_pass_reads_each_byte_once_where_laid_out_in_order(tmp_path):
    """The hash is taken as HDF5 reads: bytes HDF5 skipped are read ahead once; a catalog
    written block by block is read once and a little (its layout is almost in row order)."""
    path = tmp_path / "box.hdf5"
    write_synthetic(path, 100_000, chunk_rows=8192, compression="gzip")
    with validation.HashingFile(path, block_bytes=4096) as raw:
        lines, found = validation._read(path, raw)
        found.finish()
        digest = raw.hexdigest()
        read = raw.requested + raw.gap_bytes
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest() == validation.sha256(path)
    assert read < 2.0 * path.stat().st_size, (read, path.stat().st_size)


def test_record_is_the_whole_file_record(tmp_path):
    """The QA record's content is what the whole-file path wrote, plus the stages' times."""
    path = tmp_path / "box.hdf5"
    write_synthetic(path, 30_000, chunk_rows=4096)
    record = validation.validate(path, tmp_path / "qa.json", task_id="t0", wall_s=2.0,
                                 peak_rss=lambda: 7)  # fmt: skip
    cat = hdf5.read_catalog(path)
    expected = {
        "task_id": "t0", "output": str(path),
        "checks": {k: ok for k, (ok, _) in old_check_reasons(cat).items()}
        | dict.fromkeys(population.CHECKS, True),
        "summary": old_summarize(cat), "wall_s": 2.0, "stages": record["stages"],
        "peak_rss_bytes": 7,
        "file_bytes": path.stat().st_size,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "seed": 7, "model": "hand_made 0",
    }  # fmt: skip
    assert list(record) == [*expected, "validated_utc"]
    assert record["stages"]["generate_s"] == 2.0 and 0 < record["stages"]["validate_s"] < 60
    assert {k: v for k, v in record.items() if k != "validated_utc"} == expected


def test_reading_error_in_a_chunk_is_one_line(tmp_path):
    """A chunk that cannot be decompressed: readable_hdf5, as the whole-file read said."""
    path = tmp_path / "box.hdf5"
    write_synthetic(path, 30_000, chunk_rows=4096, compression="gzip")
    with h5py.File(path, "r") as f:
        info = f["log10_sfr"].id.get_chunk_info(3)
    with open(path, "r+b") as f:
        f.seek(info.byte_offset + 10)
        f.write(b"\xff" * 64)
    lines = validation.check_file(path)
    assert len(lines) == 1 and lines[0].startswith("readable_hdf5 ("), lines
