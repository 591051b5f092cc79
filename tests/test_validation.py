"""Validation catches each way a catalog can be broken, and a broken catalog is kept aside.

Catalogs are built by hand (no model run): six rows in a box of side 10 at z = 0.5, three
hosts -- row 0 (halo 100, 1e13 Msun, R200m 0.45 Mpc/h) with satellites 1 (across the periodic
boundary) and 2, row 3 (halo 200, 1e12 Msun, R200m 0.21 Mpc/h, V_vir 144 km/s) with
satellite 4, row 5 (halo 300) alone. Each case breaks one thing and names the checks that
must fail. Real catalogs (the Mini Abacus box, a synthetic z = 0.5 box) pass every check.
"""

import hashlib
import inspect
import json
import re

import h5py
import numpy as np
import pytest

from covmocks.apps import box_task
from covmocks.box import populate
from covmocks.box.spec import BoxSpec
from covmocks.catalog import hdf5, population, validation
from covmocks.galaxies.diffsky import quenched_log_ssfr_threshold
from covmocks.galaxies.registry import MODELS
from covmocks.halos import synthetic

BOX = 10.0
# the population checks of satellites (they fail with the per-galaxy checks' missing attributes)
POPULATION_SATELLITES = population.CHECKS[:3]
IS_CENTRAL = [True, False, False, True, False, True]
HOST_INDEX = [0, 0, 0, 3, 3, 5]
HALO_ID = [100, 100, 100, 200, 200, 300]
# satellite 1 sits across the x = 0 boundary from its host: 0.2 Mpc/h away periodically
POS = [[0.1, 5, 5], [9.9, 5, 5], [0.1, 5.3, 5], [2, 2, 2], [2.1, 2, 2.05], [7, 7, 7]]
LOG10_MHALO = [13.0, 11.8, 11.3, 12.0, 11.0, 11.5]
LOG10_MPEAK = [13.0, 12.0, 11.5, 12.0, 11.2, 11.5]
H, OM0, FB = 0.6736, 0.315192, 0.1564


def good_columns() -> dict:
    n = len(IS_CENTRAL)
    rng = np.random.default_rng(1)
    mstar = rng.uniform(9, 10, n)  # below fb Mpeak: 10.39 for the smallest Mpeak
    sfr = rng.uniform(-2, 1, n)
    vel = rng.normal(0, 300, (n, 3))
    host = np.asarray(HOST_INDEX)
    vel = np.where(np.asarray(IS_CENTRAL)[:, None], vel, vel[host] + rng.normal(0, 50, (n, 3)))
    columns = {
        "pos": POS,
        "vel": vel,
        "is_central": IS_CENTRAL,
        "host_index": HOST_INDEX,
        "halo_id": HALO_ID,
        "log10_mhalo": LOG10_MHALO,
        "log10_mpeak": LOG10_MPEAK,
        "log10_mstar": mstar,
        "log10_mstar_surviving": np.asarray(mstar) - 0.2,
        "log10_sfr": sfr,
        "log10_ssfr": sfr - mstar,
        "is_quenched": [False, True, False, False, True, False],
        "diffstar_quenched_branch": [True, True, False, False, True, True],
    }
    return {k: np.asarray(v, dtype=hdf5.SCHEMA[k][0]) for k, v in columns.items()}


def good_attrs() -> dict:
    return {
        "box_size": BOX,
        "box_size_units": "comoving Mpc/h",
        "h": H,
        "Om0": OM0,
        "fb": FB,
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
    with hdf5.CatalogWriter(path, good_attrs() if attrs is None else attrs) as writer:
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
    assert set(record["checks"]) == set(validation.check_catalog(hdf5.read_catalog(path)))
    assert record["summary"]["n_galaxies"] == 6
    assert record["summary"]["n_centrals"] == 3
    assert record["summary"]["satellite_fraction"] == pytest.approx(0.5)
    assert record["seed"] == 7
    assert record["model"] == "hand_made 0"
    assert record["task_id"] == "t0" and record["wall_s"] == 1.5
    assert record["file_bytes"] == path.stat().st_size
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record["peak_rss_bytes"] is None


def test_record_carries_peak_rss_and_a_streamed_hash(tmp_path):
    path = write(tmp_path / "mock.hdf5")
    record = validation.validate(path, tmp_path / "qa.json", task_id="t0", peak_rss=lambda: 12345)
    assert record["peak_rss_bytes"] == 12345
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    assert record["sha256"] == expected
    # streamed: any block size gives the same hash; the default block is 1 MiB
    assert validation.sha256(path, block_bytes=1000) == expected
    assert inspect.signature(validation.sha256).parameters["block_bytes"].default == 1 << 20


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


def sat_speed(row, factor):
    """Satellite ``row`` moving at ``factor`` V_vir (of its host's R200m) relative to it."""

    def change(columns, attrs):
        host = columns["host_index"][row]
        lgm = float(columns["log10_mhalo"][host])
        r200m = (3 * 10**lgm * H / (4 * np.pi * 200 * OM0 * 2.77536627e11)) ** (1 / 3)
        r_phys = r200m / H / (1 + attrs["redshift"])
        vvir = np.sqrt(4.30091e-9 * 10**lgm / r_phys)
        columns["vel"][row] = columns["vel"][host] + [factor * vvir, 0, 0]

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
    # halo 999 has no central, and satellite 4 names a host of another halo
    "satellite_halo_id_differs_from_host": (
        col("halo_id", 4, 999),
        {"host_ids_consistent", "one_central_per_host"},
    ),
    "position_negative": (col("pos", 1, -0.01, axis=0), {"positions_in_box"}),
    "position_equal_to_box": (col("pos", 1, BOX, axis=0), {"positions_in_box"}),
    "position_beyond_box": (col("pos", 5, BOX + 3, axis=1), {"positions_in_box"}),
    "box_size_missing": (
        attr("box_size", None),
        {
            "positions_in_box",
            "attributes_complete",
            "satellites_near_host",
            "satellite_radius_max",
            "satellite_radius_median",
        },
    ),
    "seed_missing": (attr("seed", None), {"attributes_complete"}),
    "model_version_missing": (attr("model_version", None), {"attributes_complete"}),
    "nan_in_sfr": (col("log10_sfr", 1, np.nan), {"finite_values"}),
    "inf_in_ssfr": (col("log10_ssfr", 0, -np.inf), {"finite_values"}),
    # row 3 hosts satellite 4: the satellite's speed relative to it is infinite
    "inf_in_velocity": (
        col("vel", 3, np.inf, axis=1),
        {"finite_values", "satellite_velocities_near_host"},
    ),
    "nan_in_position": (
        col("pos", 4, np.nan, axis=0),
        {"finite_values", "positions_in_box", "satellites_near_host"},
    ),
    # ---- physics
    # halo 300's central claims halo 200: two centrals for 200, none for 300
    "two_centrals_in_one_halo": (col("halo_id", 5, 200), {"one_central_per_host"}),
    # Mpeak 10^11.2, fb 0.1564: the budget is 10^10.39, the limit 0.3 dex above it
    "stellar_mass_above_baryon_budget": (
        col("log10_mstar", 4, 10.75),
        {"mstar_below_baryon_budget"},
    ),
    "central_stellar_mass_above_baryon_budget": (
        col("log10_mstar", 0, 12.5),
        {"mstar_below_baryon_budget"},
    ),
    "fb_missing": (attr("fb", None), {"mstar_below_baryon_budget", "attributes_complete"}),
    "fb_zero": (attr("fb", 0.0), {"mstar_below_baryon_budget"}),
    # satellite 4 moved 5 Mpc/h from its host (24 R200m)
    "satellite_far_from_host": (
        col("pos", 4, 7.0, axis=0),
        {"satellites_near_host", "satellite_radius_max"},
    ),
    # satellite 2 at 3.1 R200m of its 1e13 Msun host (R200m 0.451 Mpc/h)
    "satellite_just_beyond_3_r200m": (
        col("pos", 2, 5.0 + 1.4, axis=1),
        {"satellites_near_host", "satellite_radius_max"},
    ),
    # satellite 4 at 11 V_vir (V_vir 144 km/s) relative to its host
    "satellite_at_11_vvir": (
        sat_speed(4, 11.0),
        {"satellite_velocities_near_host"},
    ),
    "satellite_far_too_fast": (col("vel", 4, 5000.0, axis=0), {"satellite_velocities_near_host"}),
    "h_missing": (
        attr("h", None),
        {
            "attributes_complete",
            "satellites_near_host",
            "satellite_velocities_near_host",
            *POPULATION_SATELLITES,
        },
    ),
    "Om0_missing": (
        attr("Om0", None),
        {
            "attributes_complete",
            "satellites_near_host",
            "satellite_velocities_near_host",
            *POPULATION_SATELLITES,
        },
    ),
    "redshift_missing": (
        attr("redshift", None),
        {
            "attributes_complete",
            "satellite_velocities_near_host",
            "satellite_radius_median",
            "satellite_velocity_rms",
        },
    ),
    "n_galaxies_disagrees": (set_file_attr("n_galaxies", 7), {"counts_match_attributes"}),
    "n_centrals_disagrees": (attr("n_centrals", 2), {"counts_match_attributes"}),
    "n_centrals_missing": (attr("n_centrals", None), {"counts_match_attributes"}),
    "n_satellites_disagrees": (attr("n_satellites", 4), {"counts_match_attributes"}),
    "n_hosts_disagrees": (attr("n_hosts", 4), {"counts_match_attributes"}),
    # a central turned satellite: the rows no longer match the recorded counts, the former
    # central (its own host) is now a satellite hosted by a satellite, and its halo has no
    # central
    "central_turned_satellite": (
        col("is_central", 5, False),
        {"counts_match_attributes", "host_index_points_at_centrals", "one_central_per_host"},
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
        checks = validation.check_catalog(hdf5.read_catalog(path))
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
    cat = hdf5.read_catalog(write(tmp_path / "mock.hdf5"))
    del cat.data["vel"]
    assert validation.check_catalog(cat) == {"schema_complete": False}


# ---- physics: the limits, their units, and real catalogs -------------------------------


def test_r200m_is_the_synthetic_hosts_radius():
    """The checks' R200m (from log10 Msun, no h) is the radius synthetic hosts are given."""
    src = synthetic.SyntheticSource(2000, 11.0, redshift=0.5, seed=4)
    hosts = next(src.read_blocks(2000))
    lgm = np.log10(hosts.mass / H)
    np.testing.assert_allclose(validation.r200m_comoving(lgm, H, OM0), hosts.radius, rtol=1e-12)


def test_virial_velocity_matches_diffsky():
    from diffsky.fake_sats.ellipsoidal_velocities import calculate_virial_velocity

    lgm, z = np.array([11.0, 12.0, 13.0, 14.5]), 0.5
    r_phys = validation.r200m_comoving(lgm, H, OM0) / H / (1 + z)
    expected = calculate_virial_velocity(10**lgm, r_phys)  # G = 4.3e-9 there
    np.testing.assert_allclose(
        validation.virial_velocity_r200m(lgm, H, OM0, z), expected, rtol=2e-4
    )
    assert validation.virial_velocity_r200m(12.0, H, OM0, z) == pytest.approx(144, rel=0.01)


def test_satellites_just_inside_the_limits_pass(tmp_path):
    """2.9 R200m away, 9.9 V_vir fast, and a stellar mass 0.29 dex above fb Mpeak (within
    the model's scatter's margin) pass the per-galaxy limits; 2.9 R200m is beyond the largest
    r/R200m of any input radius."""
    columns, attrs = good_columns(), good_attrs()
    col("pos", 2, 5.0 + 2.9 * 0.4513, axis=1)(columns, attrs)  # R200m(1e13 Msun) 0.4513
    sat_speed(4, 9.9)(columns, attrs)
    col("log10_mstar", 4, 11.2 + np.log10(FB) + 0.3 - 1e-3)(columns, attrs)
    checks = validation.check_catalog(hdf5.read_catalog(write(tmp_path / "m.hdf5", columns, attrs)))
    assert failed_checks(checks) == {"satellite_radius_max"}


def test_check_file_passes_a_good_catalog(tmp_path):
    path = write(tmp_path / "mock.hdf5")
    assert validation.check_file(path) == []
    assert [p.name for p in tmp_path.iterdir()] == ["mock.hdf5"]  # writes nothing


def test_check_file_lists_failed_checks_with_reasons(tmp_path):
    columns, attrs = good_columns(), good_attrs()
    col("pos", 4, 7.0, axis=0)(columns, attrs)
    col("log10_mstar", 4, 10.75)(columns, attrs)
    del attrs["seed"]
    lines = validation.check_file(write(tmp_path / "mock.hdf5", columns, attrs))
    assert lines == [
        "attributes_complete (no attribute 'seed')",
        "mstar_below_baryon_budget (1 of 6 galaxies with log10_mstar >= log10(fb) + log10_mpeak"
        " + 0.3 (worst 0.356 dex above the budget at row 4))",
        "satellites_near_host (1 of 3 satellites beyond 3 R200m of their host"
        " (worst 23.9 R200m at row 4))",
        "satellite_radius_max (a satellite at 23.9 R200m of its host: beyond 1.6)",
    ]


@pytest.mark.parametrize(
    "content, line",
    [
        (None, r"readable_hdf5 \(no such file: .*nope.hdf5\)"),
        (b"not an HDF5 file\n" * 100, r"readable_hdf5 \(.*\)"),
    ],
)
def test_check_file_says_an_unreadable_file_in_one_line(tmp_path, content, line):
    path = tmp_path / "nope.hdf5"
    if content is not None:
        path.write_bytes(content)
    lines = validation.check_file(path)
    assert len(lines) == 1 and "\n" not in lines[0]
    assert re.fullmatch(line, lines[0])


def test_check_file_names_a_missing_dataset(tmp_path):
    path = broken_catalog(tmp_path / "mock.hdf5", CASES["dataset_missing"][0])
    assert validation.check_file(path) == ["schema_complete (no dataset 'vel')"]


@pytest.fixture(scope="module")
def real_catalogs(tmp_path_factory, mini_catalog_dir, model):
    """Catalogs the pipeline writes: the Mini Abacus box at z=0 (381 hosts) and a synthetic box
    at z=0.5 (3000 hosts above 10^11 Msun)."""
    out = tmp_path_factory.mktemp("real")
    specs = [
        BoxSpec(source="abacus", input=mini_catalog_dir, output=out / "mini.hdf5", seed=7,
                redshift=0.0, chunk_hosts=1000),
        BoxSpec(source="synthetic", n_hosts=3000, output=out / "synthetic.hdf5", seed=3,
                redshift=0.5, log10_mhost_min_msun=11.0, chunk_hosts=2000),
    ]  # fmt: skip
    for spec in specs:
        populate.generate_box(spec.open_source(), model, spec)
    return [spec.output for spec in specs]


@pytest.mark.slow
def test_real_catalogs_pass_every_check(real_catalogs, tmp_path):
    for path in real_catalogs:
        assert validation.check_file(path) == [], path
        record = validation.validate(path, tmp_path / f"{path.stem}.json", task_id=path.stem)
        assert all(record["checks"].values())
        cat = hdf5.read_catalog(path)
        assert (~cat.data["is_central"]).sum() > 100  # the satellite checks saw satellites
        assert cat.attrs["model_version"] == MODELS["diffsky_sfh"].version


def test_is_quenched_is_the_ssfr_state_in_real_catalogs(real_catalogs):
    """is_quenched is sSFR < 0.2 / t_obs on the stored sSFR, exactly; the branch differs."""
    for path in real_catalogs:
        cat = hdf5.read_catalog(path)
        d, t_obs = cat.data, float(cat.attrs["t_obs_gyr"])
        threshold = np.float32(quenched_log_ssfr_threshold(t_obs))
        np.testing.assert_array_equal(d["is_quenched"], d["log10_ssfr"] < threshold)
        branch = d["diffstar_quenched_branch"]
        # the issue: quenched-branch galaxies that are star-forming at the snapshot
        assert (branch & ~d["is_quenched"]).sum() > 0.1 * branch.sum(), path
        with h5py.File(path) as f:
            assert "NOT the state" in f["diffstar_quenched_branch"].attrs["description"]
            assert "0.2 / t_obs" in f["is_quenched"].attrs["description"]


# ---- the worker keeps a failing catalog aside ---------------------------------------------


def box_job(tmp_path, output) -> box_task.BoxJob:
    """A worker's job for an existing catalog at ``output`` (generation is then skipped)."""
    campaign = tmp_path / "campaign"
    return box_task.BoxJob(
        task_id="r0000_z0.000",
        box=BoxSpec(source="synthetic", output=output, n_hosts=3),
        qa_record=campaign / "qa" / "r0000_z0.000.json",
        log_stem=campaign / "logs" / "r0000_z0.000",
        walltime_s=120.0,
        mpi=False,
        ranks=1,
        jax_cache=None,
        faults=campaign / "metadata" / "faults.json",
    )


def test_worker_moves_failing_catalog_aside(tmp_path):
    breakage = CASES["satellite_hosted_by_satellite"][0]
    output = broken_catalog(tmp_path / "out" / "mock.hdf5", breakage)
    original = output.read_bytes()
    job = box_job(tmp_path, output)

    with pytest.raises(validation.ValidationError, match="host_index_points_at_centrals"):
        box_task.generate_and_validate(job)  # the catalog exists: no generation runs

    moved = output.with_name("mock.hdf5.invalid")
    assert list(output.parent.iterdir()) == [moved]  # moved, not deleted, nothing else left
    assert moved.read_bytes() == original
    assert not job.qa_record.exists() and not job.qa_record.parent.exists()


def test_worker_keeps_passing_catalog(tmp_path):
    output = write(tmp_path / "out" / "mock.hdf5")
    job = box_job(tmp_path, output)

    record = box_task.generate_and_validate(job)

    assert list(output.parent.iterdir()) == [output]
    assert json.loads(job.qa_record.read_text()) == record


def test_validate_command_one_line_per_failed_check(tmp_path, capsys):
    from covmocks.cli import main

    good = write(tmp_path / "good.hdf5")
    bad = broken_catalog(tmp_path / "bad.hdf5", CASES["nan_in_position"][0])
    assert main.main(["validate", str(good)]) == 0
    assert capsys.readouterr().out == f"{good}: passed\n"
    assert main.main(["validate", "-q", str(good), str(bad), str(tmp_path / "none.hdf5")]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert {line.split(": ", 1)[1].split(" ")[0] for line in lines if line.startswith(f"{bad}:")} \
        == CASES["nan_in_position"][1]  # fmt: skip
    assert [line for line in lines if "none.hdf5" in line] == [
        f"{tmp_path / 'none.hdf5'}: readable_hdf5 (no such file: {tmp_path / 'none.hdf5'})"
    ]
    assert not any(str(good) in line for line in lines)


def test_text_attributes_that_look_like_json_read_back_as_written(tmp_path):
    """Only what the writer encoded (dicts, lists, None; recorded in ``json_attributes``)
    is decoded; a catalog written before that record decodes its known JSON attributes only."""
    attrs = {**good_attrs(), "sim_name": "[run1]", "input_notes": "null", "note": "{x}",
             "model_params": {"a": [1, 2]}, "host_limit": None}  # fmt: skip
    path = write(tmp_path / "mock.hdf5", attrs=attrs)
    got = hdf5.read_catalog(path).attrs
    assert (got["sim_name"], got["input_notes"], got["note"]) == ("[run1]", "null", "{x}")
    assert got["model_params"] == {"a": [1, 2]} and got["host_limit"] is None
    assert "json_attributes" not in got
    assert validation.check_file(path) == []
    with h5py.File(path, "r+") as f:  # as an older covmocks wrote it
        del f.attrs["json_attributes"]
    old = hdf5.read_catalog(path).attrs
    assert old["model_params"] == {"a": [1, 2]} and old["host_limit"] is None
    assert (old["sim_name"], old["note"]) == ("[run1]", "{x}")
