"""The single-box generator on the real AbacusSummit-format catalog."""

import h5py
import numpy as np
import pytest

from covmocks.box import populate
from covmocks.box.spec import BoxSpec
from covmocks.catalog import hdf5
from covmocks.catalog.summary import BoxStatistics
from covmocks.core import files
from covmocks.galaxies import params
from covmocks.galaxies.registry import MODELS, get_model
from covmocks.halos import sources


def mini_spec(mini_catalog_dir, output, **fields) -> BoxSpec:
    """The mini Abacus box (seed 7, realization 0, z=0 so snapshot 0), resolved."""
    base = dict(source="abacus", input=mini_catalog_dir, seed=7, realization=0, redshift=0.0,
                chunk_hosts=1000)  # fmt: skip
    return BoxSpec(output=output, **(base | fields))


def _generate(tmp_path, mini_catalog_dir, model, name, **fields):
    spec = mini_spec(mini_catalog_dir, tmp_path / f"{name}.hdf5", **fields)
    populate.generate_box(spec.open_source(), model, spec)
    return hdf5.read_catalog(spec.output)


@pytest.fixture(scope="module")
def mini_mock(tmp_path_factory, mini_catalog_dir, model):
    """A catalog generated from the mini Abacus box (seed 7, realization 0, snapshot 0)."""
    return _generate(tmp_path_factory.mktemp("mini"), mini_catalog_dir, model, "mock")


def test_schema_units_and_attributes(mini_mock):
    for name, (_, _, unit, _) in hdf5.SCHEMA.items():
        assert mini_mock.units[name] == unit
        assert len(mini_mock.data[name]) == len(mini_mock)
    a = mini_mock.attrs
    assert a["box_size"] == 32.0 and a["h"] == pytest.approx(0.6736)
    assert a["n_hosts"] == 381 and a["n_centrals"] == 381
    assert a["n_galaxies"] == a["n_centrals"] + a["n_satellites"]
    assert a["model_name"] == "diffsky_sfh" and a["model_version"] == MODELS["diffsky_sfh"].version
    # what changes the science is recorded: the histories' steps and precision too
    assert a["model_params"]["n_t_table"] == params.N_T_TABLE
    assert a["model_params"]["precision"] == params.PRECISION
    assert a["seed"] == 7 and a["realization"] == 0 and a["snapshot"] == 0
    assert set(a["versions"]) >= {"covmocks", "diffmah", "diffstar", "diffsky", "dsps", "jax"}
    assert a["jax_platform"].startswith("cpu")
    assert 13.0 < a["t_obs_gyr"] < 14.5 and a["t_obs_gyr"] == pytest.approx(a["t0_gyr"])
    with h5py.File(mini_mock.path) as f:
        assert f["pos"].compression == "gzip" and f["pos"].chunks is not None
        assert f["pos"].dtype == np.float32


def test_galaxies_are_physical(mini_mock):
    d = mini_mock.data
    for name in hdf5.SCHEMA:
        if d[name].dtype.kind == "f":
            assert np.all(np.isfinite(d[name])), name
    assert d["pos"].min() >= 0 and d["pos"].max() < 32.0
    cen = d["is_central"]
    assert cen.sum() == 381 and (~cen).sum() > 0
    # every host index points at a central of the same halo
    assert np.all(cen[d["host_index"]])
    assert np.all(d["host_index"][cen] == np.flatnonzero(cen))
    assert np.all(d["halo_id"] == d["halo_id"][d["host_index"]])
    # centrals sit on their halos' masses; satellites are less massive than their hosts
    host_mass = d["log10_mhalo"][d["host_index"]]
    assert np.all(d["log10_mpeak"][~cen] < host_mass[~cen] + 0.05)
    # sSFR = SFR / Mstar
    np.testing.assert_allclose(d["log10_ssfr"], d["log10_sfr"] - d["log10_mstar"], atol=1e-5)
    # stellar mass loss at z = 0: the surviving mass lies 0.1-0.35 dex below the mass formed
    offset = d["log10_mstar_surviving"].astype(float) - d["log10_mstar"]
    assert np.all(offset < 0) and 0.1 < -np.median(offset) < 0.35


def test_satellites_lie_within_their_host_radius(mini_mock, mini_catalog_dir):
    d = mini_mock.data
    src = sources.open_source("abacus", mini_catalog_dir)
    blocks = list(src.iter_blocks(10**6))
    radius = dict(zip(np.concatenate([b.ids for b in blocks]),
                      np.concatenate([b.radius for b in blocks]), strict=True))  # fmt: skip
    sat = ~d["is_central"]
    delta = d["pos"][sat] - d["pos"][d["host_index"][sat]]
    delta = (delta + 16.0) % 32.0 - 16.0  # periodic
    dist = np.linalg.norm(delta, axis=1)
    r_host = np.array([radius[i] for i in d["halo_id"][sat]])
    assert np.all(dist <= r_host * 1.0001 + 1e-4)
    assert np.median(dist / r_host) < 0.7  # NFW: concentrated toward the centre


def test_mean_stellar_mass_rises_with_halo_mass(mini_mock):
    d = mini_mock.data
    cen = d["is_central"]
    lgmh, lgms = d["log10_mhalo"][cen], d["log10_mstar"][cen]
    edges = np.quantile(lgmh, [0, 0.25, 0.5, 0.75, 1.0])
    bins = zip(edges[:-1], edges[1:], strict=True)
    means = [lgms[(lgmh >= lo) & (lgmh <= hi)].mean() for lo, hi in bins]
    assert np.all(np.diff(means) > 0), means
    assert 8.0 < np.median(lgms) < 11.5


@pytest.mark.slow
@pytest.mark.parametrize("settings", [{}, {"n_t_table": 100, "precision": "float64"}],
                         ids=["default", "100_steps_float64"])  # fmt: skip
def test_same_seed_is_bit_identical_whatever_the_chunking(tmp_path, mini_catalog_dir, settings):
    """Each setting of the histories is bit-reproducible for a seed, whatever the chunking,
    the batch shapes or the overlap of I/O with compute."""
    small = {"batch_min": 256, "batch_max": 4096} | settings
    ref = _generate(tmp_path, mini_catalog_dir, get_model("diffsky_sfh", small), "ref")
    again = _generate(tmp_path, mini_catalog_dir, get_model("diffsky_sfh", small), "again")
    four = _generate(tmp_path, mini_catalog_dir, get_model("diffsky_sfh", small), "chunks",
                     chunk_hosts=96)  # fmt: skip
    other_batches = _generate(
        tmp_path, mini_catalog_dir,
        get_model("diffsky_sfh", {"batch_min": 512, "batch_max": 512} | settings), "batches",
    )  # fmt: skip
    assert ref.attrs["model_params"]["precision"] == small.get("precision", "float32")
    for name in hdf5.SCHEMA:
        for cat in (again, four, other_batches):
            np.testing.assert_array_equal(cat.data[name], ref.data[name], err_msg=name)


@pytest.mark.slow
def test_default_histories_within_tolerance_of_a_fine_float64_reference(
    tmp_path, mini_catalog_dir, mini_mock
):
    """The default steps and precision against 400 float64 steps, same draws: log10 M* within
    0.01 dex for 99.9% of galaxies, log10 SFR (at t_obs, so step-free) within 1e-4 dex."""
    fine = _generate(tmp_path, mini_catalog_dir,
                     get_model("diffsky_sfh", {"batch_min": 256, "batch_max": 4096,
                                               "n_t_table": 400, "precision": "float64"}),
                     "fine")  # fmt: skip
    d, f = mini_mock.data, fine.data
    for name in ("halo_id", "is_central", "log10_mhalo", "log10_mpeak", "pos", "vel",
                 "diffstar_quenched_branch"):  # fmt: skip
        np.testing.assert_array_equal(d[name], f[name], err_msg=name)  # the same galaxies
    dm = np.abs(d["log10_mstar"].astype(float) - f["log10_mstar"])
    assert np.quantile(dm, 0.999) < 0.01, np.quantile(dm, [0.5, 0.999, 1.0])
    ds = np.abs(d["log10_mstar_surviving"].astype(float) - f["log10_mstar_surviving"])
    assert np.quantile(ds, 0.999) < 0.01, np.quantile(ds, [0.5, 0.999, 1.0])
    assert np.max(np.abs(d["log10_sfr"].astype(float) - f["log10_sfr"])) < 1e-4


def test_other_realization_or_snapshot_draws_differently(tmp_path, mini_catalog_dir, model,
                                                         mini_mock):  # fmt: skip
    base = mini_mock.data["log10_mstar"][mini_mock.data["is_central"]]
    for name, req in (("real1", {"realization": 1}), ("snap1", {"snapshot": 1}),
                      ("seed8", {"seed": 8})):  # fmt: skip
        cat = _generate(tmp_path, mini_catalog_dir, model, name, **req)
        other = cat.data["log10_mstar"][cat.data["is_central"]]
        assert not np.array_equal(other, base), name
        assert np.mean(other == base) < 0.01, name


def test_host_limit(tmp_path, mini_catalog_dir, model):
    cat = _generate(tmp_path, mini_catalog_dir, model, "limit", host_limit=50, chunk_hosts=30)
    assert cat.attrs["n_hosts"] == 50 and cat.data["is_central"].sum() == 50


def test_unresolved_spec_is_refused(tmp_path, mini_catalog_dir, model):
    """generate_box takes a resolved spec: the snapshot id keys the random stream."""
    spec = BoxSpec(source="abacus", input=mini_catalog_dir, output=tmp_path / "m.hdf5")
    with pytest.raises(ValueError, match="resolved"):
        populate.generate_box(spec.open_source(), model, spec)
    assert list(tmp_path.iterdir()) == []


def test_populate_counts_rows_from_the_writer_row(mini_catalog_dir, model):
    """The one populate-and-write loop: host indices start at the writer's row, the limit
    cuts in catalog order, empty blocks are skipped, and the counts add up."""
    from covmocks.galaxies.diffsky import CosmicTimes, snapshot_key

    class Rows:
        def __init__(self):
            self.n, self.appended = 1000, []

        def append(self, columns):
            self.appended.append(columns)
            self.n += len(columns["halo_id"])

    source = sources.open_source("abacus", mini_catalog_dir)
    blocks = [source.read_slab(source.slab_files[0]).select(slice(0, n)) for n in (30, 0, 30)]
    writer = Rows()
    snap = CosmicTimes.from_header(source.header)
    stats = BoxStatistics()
    counts = populate.populate(blocks, model, snap, snapshot_key(1, 0, 0), writer, stats,
                                host_limit=40)  # fmt: skip
    assert counts["n_hosts"] == 40 and counts["n_rows"] == writer.n - 1000
    assert (stats.n_centrals, stats.n_satellites) == (40, counts["n_satellites"])
    assert stats.counts["hosts_mhalo"].sum() == 40  # every host counted once, in range
    assert counts["n_rows"] == 40 + counts["n_satellites"]
    first, second = writer.appended
    assert first["host_index"].min() == 1000 and first["is_central"].sum() == 30
    assert second["is_central"].sum() == 10
    assert second["host_index"].min() == 1000 + len(first["halo_id"])


def test_crash_mid_write_leaves_no_file(tmp_path, mini_catalog_dir, model, monkeypatch):
    out = tmp_path / "crash.hdf5"
    calls = {"n": 0}
    real_append = hdf5.CatalogWriter.append

    def failing_append(self, columns):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash")
        real_append(self, columns)

    monkeypatch.setattr(hdf5.CatalogWriter, "append", failing_append)
    spec = mini_spec(mini_catalog_dir, out, seed=1, chunk_hosts=100)
    with pytest.raises(RuntimeError, match="simulated crash"):
        populate.generate_box(spec.open_source(), model, spec)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_output_does_not_depend_on_import_order(tmp_path, mini_catalog_dir):
    """diffsky switches on jax_enable_x64 when imported; the model must not care whether a
    halo source imported diffsky before the model was built (fresh processes, both orders)."""
    import subprocess
    import sys

    code = """
import sys, covmocks
from covmocks.box import populate as generator
from covmocks.box import spec as box
from covmocks.galaxies import registry as model
if sys.argv[2] == "diffsky_first":
    import diffsky  # noqa: F401
m = model.get_model("diffsky_sfh", {"batch_min": 256, "batch_max": 1024})
spec = box.BoxSpec(source="abacus", input=sys.argv[3], output=sys.argv[1], seed=2)
src = spec.open_source()
generator.generate_box(src, m, spec.resolved(src.header))
"""
    outs = []
    for order in ("model_first", "diffsky_first"):
        out = tmp_path / f"{order}.hdf5"
        subprocess.run([sys.executable, "-c", code, str(out), order, str(mini_catalog_dir)],
                       check=True, capture_output=True, timeout=300)  # fmt: skip
        outs.append(hdf5.read_catalog(out))
    for name in hdf5.SCHEMA:
        np.testing.assert_array_equal(outs[0].data[name], outs[1].data[name], err_msg=name)


def test_output_that_appeared_while_writing_is_kept(tmp_path):
    """The writers' shared atomic finish (catalog.publish): a catalog that another process
    finished meanwhile is not replaced, and the temporary file is removed."""
    out = tmp_path / "box.hdf5"
    with pytest.raises(files.OutputExistsError, match="appeared while writing"):
        with hdf5.CatalogWriter(out, {"seed": 1}, compression="lzf"):
            out.write_bytes(b"the other writer's catalog")
    assert out.read_bytes() == b"the other writer's catalog"
    assert [p.name for p in tmp_path.iterdir()] == ["box.hdf5"]


# --- overlap of I/O with compute -----------------------------------------------------------


def test_prefetched_keeps_order_and_raises_where_next_would():
    from covmocks.box.overlap import prefetched

    assert list(prefetched(iter(range(5)))) == [0, 1, 2, 3, 4]

    def failing():
        yield 1
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for item in prefetched(failing()):
            got.append(item)
    assert got == [1]


def test_behind_writer_keeps_order_and_raises_the_first_failure():
    from covmocks.box.overlap import BehindWriter

    done = []
    with BehindWriter() as w:
        for i in range(5):
            w.submit(done.append, i)
    assert done == [0, 1, 2, 3, 4]

    def store(i):
        if i == 1:
            raise RuntimeError("write failed")
        done.append(i)

    done.clear()
    with pytest.raises(RuntimeError, match="write failed"):
        with BehindWriter() as w:
            for i in range(4):
                w.submit(store, i)
    assert done == [0]  # nothing after the failure was started


def test_read_failure_mid_box_leaves_no_file(tmp_path, mini_catalog_dir, model):
    """A halo read that fails in the reading thread fails the box, as it did in line."""
    out = tmp_path / "readfail.hdf5"
    spec = mini_spec(mini_catalog_dir, out, seed=1, chunk_hosts=100)
    source = spec.open_source()
    real = source.iter_blocks

    def failing_blocks(max_hosts):
        for i, block in enumerate(real(max_hosts)):
            if i == 2:
                raise OSError("simulated read failure")
            yield block

    source.iter_blocks = failing_blocks
    with pytest.raises(OSError, match="simulated read failure"):
        populate.generate_box(source, model, spec)
    assert list(tmp_path.iterdir()) == []
