"""One box definition: BoxSpec from a campaign task, from CLI arguments, and as MPI argv."""

import dataclasses
import math
from pathlib import Path

import pytest

from covmocks.box.spec import BoxSpec, snapshot_id
from covmocks.cli import main
from covmocks.core.errors import CovmocksError
from covmocks.workflow.plan import find_task, make_plan


def _parse(argv) -> BoxSpec:
    return main.box_spec(main.generate_parser("test").parse_args([str(a) for a in argv]))


FULL = BoxSpec(
    source="hdf5", output=Path("/out/box.hdf5"), input="/in/halos.hdf5", seed=9,
    realization=12, redshift=0.1 + 0.2, snapshot=77, log10_mhost_min_msun=10.75,
    model="diffsky_sfh", model_params={"batch_max": 2048}, chunk_hosts=1000, host_limit=50,
    compression="lzf", overwrite=True,
)  # fmt: skip


@pytest.mark.parametrize(
    "spec",
    [
        FULL,
        BoxSpec(source="synthetic", output=Path("b.hdf5"), n_hosts=300, redshift=1.0),
        BoxSpec(source="abacus", output=Path("c.hdf5"), input="/sims/z0.500"),
    ],
)
def test_argv_round_trips_through_the_cli(spec):
    assert _parse(spec.to_argv()) == spec


def test_defaults_and_derived_values():
    spec = BoxSpec(source="synthetic", output=Path("b.hdf5"), n_hosts=10, realization=3,
                   seed=4, redshift=1.1)  # fmt: skip
    assert spec.snapshot == snapshot_id(1.1) == 1100
    assert spec.task_id == "r0003_z1.100"
    # the synthetic halos' stream: one per (campaign seed, realization), shared by its snapshots
    seeds = {(s, r, z): dataclasses.replace(spec, seed=s, realization=r, redshift=z).halo_seed
             for s in (4, 5) for r in (2, 3) for z in (0.5, 1.1)}  # fmt: skip
    assert all(seeds[s, r, 0.5] == seeds[s, r, 1.1] for s in (4, 5) for r in (2, 3))
    assert len(set(seeds.values())) == 4
    assert spec.mass_cut == 11.0
    assert BoxSpec(source="hdf5", output=Path("x"), input="h").mass_cut == -math.inf


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--output", "x.hdf5"], "--source is required"),
        (["--source", "hdf5", "--output", "x.hdf5"], "needs an input path"),
        (["--source", "synthetic", "--output", "x.hdf5"], "needs n_hosts"),
        (["--source", "synthetic", "--n-hosts", "5", "--chunk-hosts", "0", "--output", "x"],
         "chunk_hosts must be at least 1"),
        (["--task", "r0000_z0.000", "--output", "x"], "--campaign and --task go together"),
    ],
)  # fmt: skip
def test_bad_arguments_are_one_line(argv, expected):
    with pytest.raises(CovmocksError, match=expected):
        _parse(argv)


BOX_CAMPAIGN = {
    "campaign": {"name": "box", "seed": 21},
    "science": {"n_hosts": 50, "realizations": [0, 3], "redshifts": [0.0, 0.5],
                "log10_mhost_min_msun": 11.5, "model_params": {"batch_min": 256, "batch_max": 512}},
    "execution": {"chunk_hosts": 20, "compression": "lzf"},
}  # fmt: skip


def test_campaign_task_by_id(tmp_path, make_campaign):
    campaign = make_campaign(BOX_CAMPAIGN)
    args = [
        "--campaign",
        campaign.path,
        "--task",
        "r0003_z0.500",
        "--output",
        tmp_path / "one.hdf5",
    ]
    spec = _parse(args)
    task = {t.task_id: t for t in make_plan(campaign).tasks}["r0003_z0.500"]
    want = BoxSpec.for_task(campaign, task)
    assert want.statistics == campaign.layout.statistics("r0003_z0.500")
    assert spec == dataclasses.replace(want, output=tmp_path / "one.hdf5", statistics=None)
    assert (spec.seed, spec.realization, spec.redshift, spec.snapshot) == (21, 3, 0.5, 500)
    assert (spec.n_hosts, spec.log10_mhost_min_msun, spec.chunk_hosts) == (50, 11.5, 20)
    assert (spec.compression, spec.model_params) == ("lzf", {"batch_min": 256, "batch_max": 512})
    with pytest.raises(CovmocksError, match="no task r0001_z0.500"):
        find_task(campaign, "r0001_z0.500")
    with pytest.raises(CovmocksError, match="not a task id"):
        find_task(campaign, "box7")
    only = "with them only --output, --overwrite, --statistics and --samples; got --seed"
    with pytest.raises(CovmocksError, match=only):
        _parse([*args, "--seed", "3"])


def test_campaign_box_uses_the_campaigns_compilation_cache(tmp_path, make_campaign, monkeypatch):
    """``generate --campaign --task`` compiles into (and loads from) the cache the campaign's
    tasks use, ``execution.compilation_cache``, not the per-user default."""
    from covmocks.galaxies import jaxenv

    campaign = make_campaign(BOX_CAMPAIGN, execution={"compilation_cache": "kernels"})
    enabled = []

    class Enabled(Exception):
        pass

    def enable(cache_dir):
        enabled.append(Path(cache_dir))
        raise Enabled

    monkeypatch.delenv(jaxenv.CACHE_VARIABLE, raising=False)
    monkeypatch.setattr(jaxenv, "enable_compilation_cache", enable)
    argv = ["generate", "--campaign", str(campaign.path), "--task", "r0003_z0.500",
            "--output", str(tmp_path / "one.hdf5")]  # fmt: skip
    with pytest.raises(Enabled):
        main.main(argv)
    assert enabled == [campaign.path.parent / "kernels"] == [campaign.compilation_cache]


@pytest.mark.slow
def test_regenerated_box_is_bit_identical_to_the_campaigns(tmp_path, make_campaign):
    """A box of a campaign run through Parsl, made again by id with ``covmocks generate``."""
    import h5py
    import numpy as np

    from covmocks.workflow.driver import Runner

    campaign = make_campaign(BOX_CAMPAIGN, science={"realizations": [3], "redshifts": [0.5]})
    assert Runner(campaign, progress=False, monitoring=False).run() == {"done": 1, "failed": 0}
    again = tmp_path / "again.hdf5"
    argv = [
        "generate",
        "--campaign",
        str(campaign.path),
        "--task",
        "r0003_z0.500",
        "--output",
        str(again),
    ]
    assert main.main(argv) == 0
    with h5py.File(campaign.layout.catalog(3, 0.5)) as want, h5py.File(again) as got:
        assert sorted(got) == sorted(want) and len(want["halo_id"]) > 50
        for name in want:
            np.testing.assert_array_equal(got[name][...], want[name][...], err_msg=name)
        for key in ("seed", "realization", "snapshot", "redshift", "model_params", "box_size"):
            assert got.attrs[key] == want.attrs[key], key
