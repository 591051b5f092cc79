"""Validation catches each way a catalog can be broken, and a broken catalog is kept aside.

Catalogs are built by hand (no model run): six rows in a box of side 10, three hosts --
row 0 (halo 100) with satellites 1 and 2, row 3 (halo 200) with satellite 4, row 5 (halo 300)
alone. Each case breaks one thing and names the checks that must fail.
"""

import json
import re

import h5py
import numpy as np
import pytest

from covmocks import catalog, validation
from covmocks.apps import box
from covmocks.box import BoxSpec

BOX = 10.0
IS_CENTRAL = [True, False, False, True, False, True]
HOST_INDEX = [0, 0, 0, 3, 3, 5]
HALO_ID = [100, 100, 100, 200, 200, 300]


def good_columns() -> dict:
    n = len(IS_CENTRAL)
    rng = np.random.default_rng(1)
    mstar = rng.uniform(9, 11, n)
    sfr = rng.uniform(-2, 1, n)
    columns = {
        "pos": rng.uniform(0, BOX, (n, 3)),
        "vel": rng.normal(0, 300, (n, 3)),
        "is_central": IS_CENTRAL,
        "host_index": HOST_INDEX,
        "halo_id": HALO_ID,
        "log10_mhalo": rng.uniform(11, 14, n),
        "log10_mpeak": rng.uniform(11, 14, n),
        "log10_mstar": mstar,
        "log10_sfr": sfr,
        "log10_ssfr": sfr - mstar,
        "is_quenched": [False, True, False, False, True, False],
    }
    return {k: np.asarray(v, dtype=catalog.SCHEMA[k][0]) for k, v in columns.items()}


def good_attrs() -> dict:
    return {
        "box_size": BOX,
        "box_size_units": "comoving Mpc/h",
        "n_hosts": 3,
        "n_centrals": 3,
        "n_satellites": 3,
        "seed": 7,
        "realization": 0,
        "snapshot": 0,
        "redshift": 0.5,
        "model_name": "hand_made",
        "model_version": "0",
        "model_params": {},
    }


def write(path, columns=None, attrs=None):
    with catalog.CatalogWriter(path, good_attrs() if attrs is None else attrs) as writer:
        writer.append(good_columns() if columns is None else columns)
    return path


def failed_in_message(message: str) -> set[str]:
    """Check names listed by a ValidationError (``failed checks: a, b (why), c``)."""
    listed = message.split("failed checks: ", 1)[1]
    return set(re.findall(r"(?:^|, )([a-z_]+)", listed))


def failed_checks(checks: dict) -> set[str]:
    return {name for name, ok in checks.items() if not ok}


def test_valid_catalog_passes_and_writes_record_atomically(tmp_path):
    path = write(tmp_path / "mock.hdf5")
    qa = tmp_path / "qa" / "mock.json"

    record = validation.validate(path, qa, task_id="t0", wall_s=1.5)

    assert list(qa.parent.iterdir()) == [qa]  # no temporary file left beside it
    assert json.loads(qa.read_text()) == record
    assert "passed" not in record  # a record exists only for a catalog that passed
    assert record["checks"] and all(record["checks"].values())
    assert set(record["checks"]) == set(validation.check_catalog(catalog.read_catalog(path)))
    assert record["summary"]["n_galaxies"] == 6
    assert record["summary"]["n_centrals"] == 3
    assert record["summary"]["satellite_fraction"] == pytest.approx(0.5)
    assert record["seed"] == 7
    assert record["model"] == "hand_made 0"
    assert record["task_id"] == "t0" and record["wall_s"] == 1.5
    assert record["file_bytes"] == path.stat().st_size


def test_optional_count_attributes_may_be_absent(tmp_path):
    """A bare CatalogWriter records n_galaxies only; n_hosts and n_satellites are optional."""
    attrs = good_attrs()
    del attrs["n_hosts"], attrs["n_satellites"]
    path = write(tmp_path / "mock.hdf5", attrs=attrs)
    validation.validate(path, tmp_path / "qa.json", task_id="t0")
    assert (tmp_path / "qa.json").exists()


# ---- one broken catalog per case ---------------------------------------------------------


def col(name, row, value, axis=None):
    def change(columns, attrs):
        if axis is None:
            columns[name][row] = value
        else:
            columns[name][row, axis] = value

    return change


def attr(name, value):
    def change(columns, attrs):
        if value is None:
            del attrs[name]
        else:
            attrs[name] = value

    return change


def on_file(edit):
    """Edit the written file with h5py (for what CatalogWriter cannot write)."""
    return ("file", edit)


def set_file_attr(name, value):
    return on_file(lambda f: f.attrs.__setitem__(name, value))


def replace_dataset(name, data):
    def edit(f):
        units = f[name].attrs["units"]
        del f[name]
        f[name] = data
        f[name].attrs["units"] = units

    return on_file(edit)


CASES = {
    # the satellite in row 2 names the satellite in row 1 as its host (same halo)
    "satellite_hosted_by_satellite": (col("host_index", 2, 1), {"host_index_points_at_centrals"}),
    "satellite_hosts_itself": (col("host_index", 2, 2), {"host_index_points_at_centrals"}),
    "central_hosted_by_other_central": (
        col("host_index", 3, 0),
        {"centrals_host_themselves", "host_ids_consistent"},
    ),
    "host_index_too_large": (
        col("host_index", 4, 6),
        {"host_index_points_at_centrals", "host_ids_consistent"},
    ),
    "host_index_negative": (
        col("host_index", 4, -1),
        {"host_index_points_at_centrals", "host_ids_consistent"},
    ),
    "satellite_halo_id_differs_from_host": (col("halo_id", 4, 999), {"host_ids_consistent"}),
    "position_negative": (col("pos", 1, -0.01, axis=0), {"positions_in_box"}),
    "position_equal_to_box": (col("pos", 2, BOX, axis=2), {"positions_in_box"}),
    "position_beyond_box": (col("pos", 5, BOX + 3, axis=1), {"positions_in_box"}),
    "box_size_missing": (attr("box_size", None), {"positions_in_box", "attributes_complete"}),
    "seed_missing": (attr("seed", None), {"attributes_complete"}),
    "model_version_missing": (attr("model_version", None), {"attributes_complete"}),
    "nan_in_sfr": (col("log10_sfr", 1, np.nan), {"finite_values"}),
    "inf_in_ssfr": (col("log10_ssfr", 0, -np.inf), {"finite_values"}),
    "inf_in_velocity": (col("vel", 3, np.inf, axis=1), {"finite_values"}),
    "nan_in_position": (col("pos", 4, np.nan, axis=0), {"finite_values", "positions_in_box"}),
    "n_galaxies_disagrees": (set_file_attr("n_galaxies", 7), {"counts_match_attributes"}),
    "n_centrals_disagrees": (attr("n_centrals", 2), {"counts_match_attributes"}),
    "n_centrals_missing": (attr("n_centrals", None), {"counts_match_attributes"}),
    "n_satellites_disagrees": (attr("n_satellites", 4), {"counts_match_attributes"}),
    "n_hosts_disagrees": (attr("n_hosts", 4), {"counts_match_attributes"}),
    # a central turned satellite: the rows no longer match the recorded counts, and the
    # former central (its own host) is now a satellite hosted by a satellite
    "central_turned_satellite": (
        col("is_central", 5, False),
        {"counts_match_attributes", "host_index_points_at_centrals"},
    ),
    "wrong_units": (
        on_file(lambda f: f["vel"].attrs.__setitem__("units", "Mpc/h")),
        {"units_match_schema"},
    ),
    "units_attribute_missing": (
        on_file(lambda f: f["log10_mstar"].attrs.__delitem__("units")),
        {"units_match_schema"},
    ),
    "dataset_missing": (on_file(lambda f: f.__delitem__("vel")), {"schema_complete"}),
    "wrong_dtype": (
        replace_dataset("is_central", np.asarray(IS_CENTRAL, dtype="i1")),
        {"schema_complete"},
    ),
    "wrong_shape": (replace_dataset("pos", np.ones((6, 2), "f4")), {"schema_complete"}),
    "column_too_short": (replace_dataset("log10_sfr", np.zeros(5, "f4")), {"schema_complete"}),
}
# read_catalog cannot read these at all (KeyError): validate reports them itself
UNREADABLE = {"units_attribute_missing", "dataset_missing"}


def broken_catalog(path, breakage):
    columns, attrs = good_columns(), good_attrs()
    if isinstance(breakage, tuple):
        write(path, columns, attrs)
        with h5py.File(path, "r+") as f:
            breakage[1](f)
    else:
        breakage(columns, attrs)
        write(path, columns, attrs)
    return path


@pytest.mark.parametrize("case", CASES)
def test_broken_catalog_is_caught(tmp_path, case):
    breakage, expected = CASES[case]
    path = broken_catalog(tmp_path / "mock.hdf5", breakage)
    qa = tmp_path / "qa" / "mock.json"

    if case not in UNREADABLE:
        checks = validation.check_catalog(catalog.read_catalog(path))
        assert failed_checks(checks) == expected
    with pytest.raises(validation.ValidationError) as err:
        validation.validate(path, qa, task_id="t0")

    assert failed_in_message(str(err.value)) == expected
    assert str(path) in str(err.value)
    assert not qa.exists() and not qa.parent.exists()
    assert path.exists()  # validate never touches the catalog


@pytest.mark.parametrize("content", [b"", b"not an HDF5 file\n" * 100])
def test_file_that_is_not_hdf5_fails_validation(tmp_path, content):
    path = tmp_path / "mock.hdf5"
    path.write_bytes(content)
    with pytest.raises(validation.ValidationError, match="failed checks: readable_hdf5"):
        validation.validate(path, tmp_path / "qa.json", task_id="t0")
    assert path.read_bytes() == content and not (tmp_path / "qa.json").exists()


def test_missing_dataset_message_names_it(tmp_path):
    path = broken_catalog(tmp_path / "mock.hdf5", CASES["dataset_missing"][0])
    with pytest.raises(validation.ValidationError, match=r"schema_complete \(no dataset 'vel'\)"):
        validation.validate(path, tmp_path / "qa.json", task_id="t0")


def test_incomplete_catalog_in_memory_reports_schema_only(tmp_path):
    """check_catalog on a Catalog lacking a column fails schema_complete, not a KeyError."""
    cat = catalog.read_catalog(write(tmp_path / "mock.hdf5"))
    del cat.data["vel"]
    assert validation.check_catalog(cat) == {"schema_complete": False}


# ---- the worker keeps a failing catalog aside ---------------------------------------------


def box_job(tmp_path, output) -> box.BoxJob:
    """A worker's job for an existing catalog at ``output`` (generation is then skipped)."""
    campaign = tmp_path / "campaign"
    return box.BoxJob(
        task_id="r0000_z0.000",
        box=BoxSpec(source="synthetic", output=output, n_hosts=3),
        qa_record=campaign / "qa" / "r0000_z0.000.json",
        log_stem=campaign / "logs" / "r0000_z0.000",
        walltime_s=120.0,
        mpi=False,
        ranks=1,
        jax_cache=campaign / "jax_cache",
        faults=campaign / "metadata" / "faults.json",
    )


def test_worker_moves_failing_catalog_aside(tmp_path):
    breakage = CASES["satellite_hosted_by_satellite"][0]
    output = broken_catalog(tmp_path / "out" / "mock.hdf5", breakage)
    original = output.read_bytes()
    job = box_job(tmp_path, output)

    with pytest.raises(validation.ValidationError, match="host_index_points_at_centrals"):
        box.generate_and_validate(job)  # the catalog exists: no generation runs

    moved = output.with_name("mock.hdf5.invalid")
    assert list(output.parent.iterdir()) == [moved]  # moved, not deleted, nothing else left
    assert moved.read_bytes() == original
    assert not job.qa_record.exists() and not job.qa_record.parent.exists()


def test_worker_keeps_passing_catalog(tmp_path):
    output = write(tmp_path / "out" / "mock.hdf5")
    job = box_job(tmp_path, output)

    record = box.generate_and_validate(job)

    assert list(output.parent.iterdir()) == [output]
    assert json.loads(job.qa_record.read_text()) == record
