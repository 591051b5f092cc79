"""Production inputs as they are on disk: AbacusSummit's approximate secondary redshifts,
merger-tree-cleaned halos (found, blocked or refused at planning), and redshifts up to 3."""

import json
import math
import os
import sys

import h5py
import numpy as np
import pytest

from covmocks.box import populate
from covmocks.box.spec import BoxSpec
from covmocks.cli import main
from covmocks.core.errors import CovmocksError, InputError
from covmocks.galaxies.diffsky import CosmicTimes
from covmocks.galaxies.registry import get_model
from covmocks.halos import sources
from covmocks.workflow.plan import make_plan
from tests.abacus_files import write_cleaning, write_with_redshift
from tests.test_mpi import MPIEXEC, assert_same_catalog, mpibox, reference


def _generate(spec: BoxSpec, model) -> dict:
    source = spec.open_source()
    populate.generate_box(source, model, spec.resolved(source.header))
    with h5py.File(spec.output) as f:
        return {"attrs": dict(f.attrs), **{k: f[k][...] for k in f}}


@pytest.mark.slow
def test_secondary_redshift_header_drives_physics_not_draws(tmp_path, mini_catalog_dir, model):
    """Header z = 1.0249 in directory z1.025: accepted; physics at 1.0249; the random draws
    (keyed by the nominal snapshot) are those of a header saying 1.025."""
    cats = {}
    for z_header in (1.0249, 1.025):
        halos = write_with_redshift(mini_catalog_dir, tmp_path / f"{z_header}/sim/halos/z1.025",
                                    z_header)  # fmt: skip
        spec = BoxSpec(source="abacus", input=halos, output=tmp_path / f"{z_header}.hdf5",
                       seed=3, redshift=1.025, chunk_hosts=200)  # fmt: skip
        cats[z_header] = _generate(spec, model)
    exact, nominal = cats[1.0249], cats[1.025]
    assert exact["attrs"]["redshift"] == 1.0249 and nominal["attrs"]["redshift"] == 1.025
    for cat in (exact, nominal):
        assert cat["attrs"]["snapshot_redshift"] == 1.025 and cat["attrs"]["snapshot"] == 1025
    source = sources.open_source("abacus", tmp_path / "1.0249/sim/halos/z1.025")
    assert exact["attrs"]["t_obs_gyr"] == CosmicTimes.from_header(source.header).t_obs
    assert exact["attrs"]["t_obs_gyr"] > nominal["attrs"]["t_obs_gyr"]  # later: lower z
    # same draws: the same satellites of the same hosts, at the same place in the host
    for name in ("halo_id", "host_index", "is_central"):
        np.testing.assert_array_equal(exact[name], nominal[name], err_msg=name)
    assert len(exact["halo_id"]) > 1000
    # the physics moved: star formation histories end at another cosmic time
    assert not np.array_equal(exact["log10_mstar"], nominal["log10_mstar"])


def test_catalog_of_another_snapshot_is_a_one_line_error(tmp_path, mini_catalog_dir, capsys):
    halos = write_with_redshift(mini_catalog_dir, tmp_path / "sim/halos/z1.100", 1.4)
    with pytest.raises(InputError, match=r"header redshift 1.4 is not snapshot z=1.1 ") as err:
        sources.open_source("abacus", halos, redshift=1.1)
    assert type(err.value) is InputError  # deterministic: not retried
    argv = ["generate", "--source", "abacus", "--input", str(halos), "--redshift", "1.1",
            "--output", str(tmp_path / "out.hdf5")]  # fmt: skip
    assert main.main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "header redshift 1.4" in line and "z=1.1" in line and str(halos) in line
    assert not (tmp_path / "out.hdf5").exists()


@pytest.mark.parametrize("z_header, ok", [(1.0249, True), (1.0, False), (1.1, False)])
def test_tolerance_tells_secondary_outputs_from_neighbours(tmp_path, mini_catalog_dir, z_header,
                                                           ok):  # fmt: skip
    halos = write_with_redshift(mini_catalog_dir, tmp_path / "sim/halos/z1.025", z_header)
    if ok:
        assert sources.open_source("abacus", halos, redshift=1.025).header.redshift == z_header
    else:
        with pytest.raises(InputError, match="another snapshot"):
            sources.open_source("abacus", halos, redshift=1.025)


# -- cleaned halo catalogs ----------------------------------------------------------------


def test_cleaned_catalog_merges_halos_and_drops_fragments(tmp_path, mini_catalog_dir):
    cleaned = write_cleaning(mini_catalog_dir, tmp_path)
    raw = sources.open_source("abacus", cleaned.halo_dir)
    source = sources.open_source("abacus", cleaned.halo_dir, cleandir=cleaned.cleandir)
    raw_blocks, blocks = list(raw.iter_blocks(10**6)), list(source.iter_blocks(10**6))
    n_raw = sum(len(b) for b in raw_blocks)
    assert n_raw == cleaned.n_rows == 381
    assert sum(len(b) for b in blocks) == cleaned.n_kept == 381 - len(cleaned.merges)
    ids = np.concatenate([b.ids for b in blocks])
    raw_ids = np.concatenate([b.ids for b in raw_blocks])
    assert not set(raw_ids[list(cleaned.merges)]) & set(ids)  # fragments gone
    mass = dict(zip(ids, np.concatenate([b.mass for b in blocks]), strict=True))
    raw_mass = dict(zip(raw_ids, np.concatenate([b.mass for b in raw_blocks]), strict=True))
    for target in set(cleaned.merges.values()):
        grown = sum(raw_mass[raw_ids[m]] for m, t in cleaned.merges.items() if t == target)
        assert mass[raw_ids[target]] == pytest.approx(raw_mass[raw_ids[target]] + grown)
    particles = sum(int(cleaned.N_raw[m]) for m in cleaned.merges)
    assert source.cleaning_record() == {
        "applied": True, "cleandir": str(cleaned.cleandir), "halos_merged_away": 3,
        "halos_grown": len(set(cleaned.merges.values())), "particles_merged": particles,
        "slabs": 3,
    }  # fmt: skip
    assert raw.cleaning_record() == {"applied": False}


@pytest.mark.slow
def test_cleaned_box_records_what_cleaning_changed(tmp_path, mini_catalog_dir, model):
    cleaned = write_cleaning(mini_catalog_dir, tmp_path)
    spec = BoxSpec(source="abacus", input=cleaned.halo_dir, cleaning=cleaned.cleandir,
                   output=tmp_path / "cleaned.hdf5", seed=7, redshift=0.0)  # fmt: skip
    cat = _generate(spec, model)
    record = json.loads(cat["attrs"]["halo_cleaning"])
    assert record["applied"] and record["halos_merged_away"] == 3
    assert cat["attrs"]["n_hosts"] == cleaned.n_kept == int(cat["is_central"].sum())


def _abacus_campaign(make_campaign, mini_catalog_dir, root, cleaning):
    """A one-box campaign over ``root/Mini_N64_L32/halos/z0.000`` (a link to the Mini
    catalog) that reads its cleaned catalog from the cleaning root ``cleaning``."""
    (root / "Mini_N64_L32" / "halos").mkdir(parents=True)
    os.symlink(mini_catalog_dir, root / "Mini_N64_L32" / "halos" / "z0.000")
    halos = f"{root}/Mini_N64_L32/halos/z{{redshift:.3f}}"
    return make_campaign(science={"source": "abacus", "n_hosts": None, "input": halos,
                                  "cleaning": cleaning, "realizations": [0]})  # fmt: skip


def test_missing_cleaned_catalog_blocks_the_task_until_it_appears(tmp_path, mini_catalog_dir,
                                                                  make_campaign):  # fmt: skip
    root = tmp_path / "sims"
    campaign = _abacus_campaign(make_campaign, mini_catalog_dir, root, f"{root}/cleaning")
    (task,) = make_plan(campaign).tasks
    expected = root / "cleaning" / "Mini_N64_L32" / "z0.000" / "cleaned_halo_info"
    assert task.state == "blocked" and task.blocked_on == str(expected)
    assert make_plan(campaign).missing_inputs() == [str(expected)]
    write_cleaning(mini_catalog_dir, root)
    (task,) = make_plan(campaign).tasks
    assert task.state == "todo" and task.cleaning == f"{root}/cleaning"


def test_cleaning_root_outside_the_simulations_tree_is_refused(tmp_path, mini_catalog_dir,
                                                               make_campaign):  # fmt: skip
    elsewhere = f"{tmp_path}/elsewhere/deep/cleaning"
    campaign = _abacus_campaign(make_campaign, mini_catalog_dir, tmp_path / "sims", elsewhere)
    with pytest.raises(CovmocksError, match="parent must contain the simulation directory"):
        make_plan(campaign)


def test_cleaning_is_refused_for_other_sources(make_campaign):
    from covmocks.core.errors import ConfigError

    with pytest.raises(ConfigError, match="science.cleaning: cleaned catalogs are AbacusSummit"):
        make_campaign(science={"cleaning": "/x/cleaning"})
    with pytest.raises(CovmocksError, match="cleaning applies to source abacus"):
        BoxSpec(source="synthetic", output="x", n_hosts=5, cleaning="/c").check()


@pytest.mark.slow
@pytest.mark.mpi
@pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not found beside python or on PATH")
def test_cleaned_box_on_two_ranks_equals_one_process(tmp_path, tmp_path_factory,
                                                     mini_catalog_dir):  # fmt: skip
    cleaned = write_cleaning(mini_catalog_dir, tmp_path)
    args = ["--source", "abacus", "--input", cleaned.halo_dir, "--cleaning", cleaned.cleandir,
            "--redshift", 0.0, "--seed", 7]  # fmt: skip
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    want = reference(tmp_path_factory, args, env)
    rc, _, err, _ = mpibox(2, [*args, "--output", tmp_path / "two.hdf5"], env)
    assert rc == 0, err
    from covmocks.catalog.hdf5 import read_catalog

    got = read_catalog(tmp_path / "two.hdf5")
    assert_same_catalog(got, want)
    assert got.attrs["halo_cleaning"]["halos_merged_away"] == 3


# -- the Roman range ----------------------------------------------------------------------


@pytest.mark.slow
def test_redshift_three_keeps_the_time_tables_accurate(tmp_path):
    """z = 3 (t_obs about 2.2 Gyr) on the synthetic source: physical galaxies, and the default
    100-step star-formation history within 0.01 dex of a 400-step one for 99.9% of them."""
    cats = {}
    for n_t in (100, 400):
        model = get_model("diffsky_sfh", {"batch_min": 256, "batch_max": 4096, "n_t_table": n_t})
        spec = BoxSpec(source="synthetic", n_hosts=400, redshift=3.0, seed=11,
                       output=tmp_path / f"z3_{n_t}.hdf5")  # fmt: skip
        cats[n_t] = _generate(spec, model)
    cat, fine = cats[100], cats[400]
    assert cat["attrs"]["redshift"] == 3.0 and 2.0 < cat["attrs"]["t_obs_gyr"] < 2.4
    assert np.all(np.isfinite(cat["log10_mstar"])) and np.all(np.isfinite(cat["log10_sfr"]))
    baryons = math.log10(cat["attrs"]["fb"]) + cat["log10_mpeak"]
    assert np.all(cat["log10_mstar"] < baryons)
    np.testing.assert_array_equal(cat["halo_id"], fine["halo_id"])
    dm = np.abs(cat["log10_mstar"] - fine["log10_mstar"])
    assert np.quantile(dm, 0.999) < 0.01, np.quantile(dm, [0.5, 0.999, 1.0])
