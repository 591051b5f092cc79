"""``covmocks rehearse``: every shipped campaign file runs through production's code path on
synthetic halos of its own box size, locally, and ends with a passing verdict; and what a
rehearsal refuses (a redshift the campaign lacks, the production directory, a host fraction
of a synthetic campaign, a cosmology the synthetic source lacks, an absent input)."""

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from covmocks.campaign import Campaign
from covmocks.cli import main, rehearse
from covmocks.halos import blocks
from covmocks.halos.abacus_layout import SIM_NAME
from covmocks.workflow.plan import make_plan
from tests.conftest import DATA, LOCAL_RUN, campaign_file, require_or_skip

REPO = Path(__file__).resolve().parents[1]
CAMPAIGNS = sorted((REPO / "campaigns").glob("*.yaml"))
# Small rehearsals of the shipped files (default: 2 realizations at the first snapshot).
OPTIONS = {"roman_grs_covariance": ["--realizations", "3", "--redshifts", "1.1"]}
# Box sizes (Mpc/h) the rehearsals must keep: the simulations'.
BOX_SIZES = {"roman_grs_covariance": 500.0, "mini_abacus": 32.0}


@pytest.fixture(scope="session")
def rehearsal_env():
    """The environment of a rehearsal: the test catalog's root for campaigns that read it
    (and the test run's one JAX compilation cache, tests/conftest.py)."""
    return dict(os.environ, COVMOCKS_DATA=str(DATA.parent))


def _loaded(path: Path, env: dict) -> Campaign:
    old = os.environ.get("COVMOCKS_DATA")
    os.environ["COVMOCKS_DATA"] = env["COVMOCKS_DATA"]
    try:
        return Campaign.load(path)
    finally:
        if old is None:
            del os.environ["COVMOCKS_DATA"]
        else:
            os.environ["COVMOCKS_DATA"] = old


def _skip_without_input(production) -> None:
    """``require_or_skip("data", why)`` for a campaign whose box size needs an input catalog
    that is absent here."""
    sci = production.science
    if sci.source == "synthetic":
        return
    first = sci.input_path(sci.realizations[0], sci.redshifts[0])
    if not SIM_NAME.search(first) and not os.path.exists(first):
        require_or_skip("data", f"{production.path.name}: its input catalog {first} is absent "
                        "(the AbacusSummit test catalog: set COVMOCKS_TEST_DATA)")  # fmt: skip


def _rehearse(argv, env, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "covmocks.cli.main", "rehearse", *map(str, argv)],
                          env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=1500)  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("path", CAMPAIGNS, ids=lambda p: p.stem)
def test_shipped_campaign_rehearses(path, tmp_path, rehearsal_env):
    production = _loaded(path, rehearsal_env)
    _skip_without_input(production)
    options = OPTIONS.get(path.stem)
    if options is None:
        options = ["--realizations", "2", "--redshifts", production.science.redshifts[0]]
    directory = tmp_path / "rehearsal"
    done = _rehearse([path, "--directory", directory, *options], rehearsal_env, tmp_path)
    out = done.stdout + done.stderr[-3000:]
    assert done.returncode == 0, out
    assert "rehearsal passed" in done.stdout, out
    assert done.stdout.startswith(f"rehearsal directory {directory}/"), out
    rehearsal = Campaign.load(directory / "campaign.yaml")
    assert rehearsal.science.source == "synthetic" and rehearsal.directory.parent == directory
    assert rehearsal.resources.gpus == 0 and rehearsal.profile.name == "local"
    assert rehearsal.name == production.name and rehearsal.seed == production.seed
    plan = make_plan(rehearsal)
    assert plan.counts["done"] == len(plan.tasks) > 0
    with h5py.File(plan.tasks[0].output) as f:
        box_size = float(f.attrs["box_size"])
        source = str(f.attrs["input_catalog"])
    if path.stem in BOX_SIZES:
        assert box_size == BOX_SIZES[path.stem] == rehearsal.science.box_size
        assert f"box_size={box_size:g} Mpc/h" in source
    if rehearsal.clustering is not None:
        assert (rehearsal.directory / "covariance.hdf5").is_file()
    else:
        assert "no clustering section" in done.stdout


@pytest.mark.slow
def test_rerun_resumes_and_redoes_nothing(tmp_path, rehearsal_env):
    """A second rehearsal with the same options finds its box done and makes nothing again;
    with more realizations it grows (a campaign version may), its first box untouched."""
    path = campaign_file(tmp_path, LOCAL_RUN, campaign={"name": "again"})
    args = [path, "--directory", tmp_path / "r", "--realizations", "1"]
    first = _rehearse(args, rehearsal_env, tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr[-3000:]
    assert "rehearsal passed (no clustering section: no covariance)" in first.stdout
    rehearsal = Campaign.load(tmp_path / "r" / "campaign.yaml")
    (task,) = make_plan(rehearsal).tasks
    stamp = task.output.stat().st_mtime_ns
    again = _rehearse(args, rehearsal_env, tmp_path)
    assert again.returncode == 0 and "rehearsal passed" in again.stdout, again.stderr[-3000:]
    assert "0 tasks to run" in again.stderr and task.output.stat().st_mtime_ns == stamp
    grown = _rehearse([*args, "--realizations", "2"], rehearsal_env, tmp_path)
    assert grown.returncode == 0 and "1 tasks to run" in grown.stderr, grown.stderr[-3000:]
    assert task.output.stat().st_mtime_ns == stamp


def _error(argv, capsys) -> str:
    assert main.main(["rehearse", *map(str, argv)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def test_refuses_a_redshift_the_campaign_lacks(tmp_path, capsys):
    demo = REPO / "campaigns" / "demo.yaml"
    err = _error([demo, "--redshifts", "0.5", "0.7", "--directory", tmp_path], capsys)
    assert err == "covmocks: error: redshift 0.7 is not one of campaign demo's: 0, 0.5, 1\n"
    assert not (tmp_path / "campaign.yaml").exists()


def test_refuses_the_production_directory(tmp_path, capsys):
    path = campaign_file(tmp_path, campaign={"name": "prod"})
    production = Campaign.load(path)
    for directory in (production.directory, production.directory / "sub",
                      production.directory.parent):  # fmt: skip
        err = _error([path, "--directory", directory], capsys)
        assert "production campaign's directory" in err and "give --directory" in err
    assert not production.directory.exists()


def test_refuses_a_host_fraction_of_a_synthetic_campaign(tmp_path, capsys):
    demo = REPO / "campaigns" / "demo.yaml"
    err = _error([demo, "--hosts-fraction", "0.5", "--directory", tmp_path], capsys)
    assert "--hosts-fraction: campaign demo's halos are synthetic already" in err


def test_refuses_a_covariance_of_one_realization(tmp_path, capsys):
    demo = REPO / "campaigns" / "demo.yaml"
    err = _error([demo, "--realizations", "1", "--directory", tmp_path], capsys)
    assert "a covariance needs at least 2 realizations; the rehearsal of demo would have 1" in err


def _hdf5_campaign(tmp_path, h: float) -> Path:
    """An hdf5-source campaign of one 100 Mpc/h box in cosmology h, c000's Omega_M."""
    cosmology = blocks.Cosmology(h=h, Om0=blocks.SYNTHETIC_COSMOLOGY.Om0, omega_b=0.0224)
    header = blocks.SimulationHeader(100.0, 0.0, cosmology, "test", "m", "p", "r")
    block = blocks.HaloBlock(np.array([1], np.uint64), np.ones((1, 3)), np.zeros((1, 3)),
                            np.array([1e12]), np.array([0.2]))  # fmt: skip
    blocks.write_hdf5_halos(tmp_path / "halos.hdf5", block, header)
    science = {"source": "hdf5", "n_hosts": None, "input": str(tmp_path / "halos.hdf5")}
    return campaign_file(tmp_path, campaign={"name": "h5"}, science=science)


def test_refuses_a_cosmology_the_synthetic_source_lacks(tmp_path, capsys):
    err = _error([_hdf5_campaign(tmp_path, 0.7), "--directory", tmp_path / "r"], capsys)
    assert "the campaign's cosmology (h=0.7, Omega_M=0.315192; header of" in err
    assert "no other cosmology yet" in err


def test_refuses_an_absent_input_naming_it(tmp_path, capsys):
    science = {"source": "abacus", "n_hosts": None,
               "input": str(tmp_path / "Mini_N64_L32/halos/z{redshift:.3f}")}  # fmt: skip
    path = campaign_file(tmp_path, campaign={"name": "gone"}, science=science)
    err = _error([path, "--directory", tmp_path / "r"], capsys)
    assert f"no input catalog at {tmp_path}/Mini_N64_L32/halos/z0.000" in err


def test_production_file_becomes_a_local_synthetic_campaign(tmp_path):
    """The roman file's rehearsal: local, no GPUs, its box size and redshifts, densities x F,
    calibration boxes capped, the directory absolute; nothing of Perlmutter's left."""
    path = REPO / "campaigns" / "roman_grs_covariance.yaml"
    production = Campaign.load(path)
    data = yaml.safe_load(path.read_text())
    out = rehearse.rehearsal_data(data, production, realizations=[3000, 3001],
                                  redshifts=[0.725, 1.1], directory=tmp_path, box_size=500.0,
                                  fraction=0.002)  # fmt: skip
    sci = out["science"]
    assert sci["source"] == "synthetic" and "input" not in sci and "cleaning" not in sci
    assert (sci["box_size"], sci["host_fraction"]) == (500.0, 0.002)
    assert sci["realizations"] == [3000, 3001] and sci["redshifts"] == [0.725, 1.1]
    assert out["execution"] == {"profile": "local", "max_in_flight": 2,
                                "executor": {"workers_per_node": 1}, "retries": 3}  # fmt: skip
    assert out["resources"] == {"nodes": 1, "ranks": 1, "gpus": 0,
                                "by_redshift": {0.725: {"walltime_s": 3600}}}  # fmt: skip
    assert out["outputs"]["base"] == str(tmp_path)
    densities = [s["number_density"] for s in out["clustering"]["samples"]]
    assert densities == [2e-6, 1e-6] and out["clustering"]["calibration_boxes"] == 2
    assert out["campaign"] == data["campaign"]
    (tmp_path / "campaign.yaml").write_text(yaml.safe_dump(out, sort_keys=False))
    rehearsal = Campaign.load(tmp_path / "campaign.yaml")
    assert rehearsal.directory == tmp_path / "roman_grs_covariance_1"


def test_clustering_narrowed_to_the_rehearsed_snapshots():
    section = {"samples": [
        {"name": "a", "select": "sfr", "number_density": {0.5: 1e-3, 1.0: 2e-3}},
        {"name": "b", "select": "mstar", "threshold": {0.5: 10.0, 1.0: 10.5}},
        {"name": "c", "select": "sfr", "number_density": 1e-3, "redshifts": [1.0]},
    ]}  # fmt: skip
    out = rehearse.rehearsal_clustering(section, {"0.500"}, 0.5, 3)
    assert out["samples"] == [
        {"name": "a", "select": "sfr", "number_density": {0.5: 5e-4}},
        {"name": "b", "select": "mstar", "threshold": {0.5: 10.0}},
    ]
    assert out["calibration_boxes"] == 3 and section["samples"][0]["number_density"][0.5] == 1e-3
