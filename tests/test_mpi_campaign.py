"""Multi-rank boxes inside a campaign: Parsl's MPIExecutor launches ``covmocks.cli.generate_mpi``
with the ``$PARSL_MPI_PREFIX`` of each task (mpiexec under the local profile, srun inside a Slurm
pilot block). The catalogs must equal the single-process runner's, a box that overruns its
walltime must have its ranks stopped, and bad input must fail at once without a retry.
"""

import json
import subprocess

import h5py
import numpy as np
import pytest

from covmocks.campaign import Campaign
from covmocks.halos import blocks, sources
from covmocks.workflow.driver import Runner, uses_mpi
from covmocks.workflow.plan import make_plan
from tests.conftest import LOCAL_RUN, write_campaign
from tests.test_mpi import MPIEXEC
from tests.test_run import assert_qa_passed, events_of

pytestmark = [
    pytest.mark.mpi,
    pytest.mark.slow,
    pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not found beside python or on PATH"),
]

TWO_RANKS = {"resources": {"nodes": 1, "ranks": 2}}  # a layer over LOCAL_RUN


def _ranks_of(task) -> int:
    """Ranks that wrote the catalog, from the mpibox summary in the task's stdout log."""
    lines = [json.loads(line) for line in open(f"{task.log_stem}.out") if line.startswith("{")]
    return lines[-1]["n_ranks"]


def _assert_same_catalogs(a: Campaign, b: Campaign) -> None:
    for ta, tb in zip(make_plan(a).tasks, make_plan(b).tasks, strict=True):
        with h5py.File(ta.output) as fa, h5py.File(tb.output) as fb:
            assert sorted(fa) == sorted(fb)
            for name in fa:
                np.testing.assert_array_equal(fa[name][:], fb[name][:], err_msg=name)


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Campaign:
    """The reference for the MPI campaigns below: their two boxes (LOCAL_RUN, 300 hosts, the
    same seeds) made by the single-process runner, once for the module."""
    campaign = write_campaign(tmp_path_factory.mktemp("single"), LOCAL_RUN,
                              campaign={"name": "single"}, science={"n_hosts": 300})  # fmt: skip
    assert not uses_mpi(campaign)
    assert Runner(campaign, progress=False, monitoring=False).run() == {"done": 2, "failed": 0}
    return campaign


def test_two_rank_boxes_through_mpiexecutor_equal_single_process_boxes(make_campaign, single):
    mpi = make_campaign(LOCAL_RUN, TWO_RANKS, campaign={"name": "mpi"}, science={"n_hosts": 300})
    assert uses_mpi(mpi)
    assert Runner(mpi, progress=False, monitoring=False).run() == {"done": 2, "failed": 0}
    plan = make_plan(mpi)
    assert plan.counts["done"] == 2
    for task in plan.tasks:
        assert_qa_passed(task)
        assert _ranks_of(task) == 2
        assert "launching: mpiexec -n 2" in open(f"{task.log_stem}.err").read()
    assert single.directory != mpi.directory
    _assert_same_catalogs(mpi, single)


def _mpibox_processes(directory) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [p for p in ps.splitlines() if "covmocks.cli.generate_mpi" in p and str(directory) in p]


def test_mpi_box_past_its_walltime_has_its_ranks_stopped(make_campaign):
    # 3 s: the ranks are still importing JAX when the walltime ends
    campaign = make_campaign(LOCAL_RUN, TWO_RANKS, science={"realizations": [0]},
                             execution={"task_walltime_s": 3})  # fmt: skip
    # what ranks killed by an earlier attempt leave behind: removed before the ranks start
    output = make_plan(campaign).tasks[0].output
    stale = output.parent / f".{output.name}.mpi-killed"
    stale.mkdir(parents=True)
    (stale / "unit_00000.hdf5").write_bytes(b"partial")
    assert Runner(campaign, progress=False, monitoring=False).run() == {"done": 0, "failed": 1}
    events = events_of(campaign, "r0000_z0.000")
    # retries: 2 in LOCAL_RUN, so three attempts, each stopped at its walltime
    assert [e["event"] for e in events] == ["submitted", "timeout"] * 2 + ["submitted", "failed"]
    assert all("walltime 3" in e["error"] for e in events if e["event"] != "submitted")
    assert events[-1]["kind"] == "timeout"
    assert _mpibox_processes(campaign.directory) == []
    # nothing under the output name, no temporary file or shard directory
    assert not output.exists() and list(output.parent.glob(".*")) == []


def test_bad_input_on_mpi_ranks_fails_at_once(tmp_path, make_campaign):
    src = sources.open_source("synthetic", n_hosts=300, log10_mhost_min_msun=11.0)
    block = next(src.iter_blocks(1000))
    blocks.write_hdf5_halos(tmp_path / "halos_0.hdf5", block, src.header)
    (tmp_path / "halos_1.hdf5").write_bytes(b"\x89HDF this is not a catalog")
    campaign = make_campaign(LOCAL_RUN, TWO_RANKS, science={
        "source": "hdf5", "n_hosts": None, "input": f"{tmp_path}/halos_{{realization}}.hdf5"
    })  # fmt: skip
    assert Runner(campaign, progress=False, monitoring=False).run() == {"done": 1, "failed": 1}
    events = events_of(campaign, "r0001_z0.000")
    assert [e["event"] for e in events] == ["submitted", "failed"]
    assert events[-1]["kind"] == "deterministic"
    assert "2 MPI ranks" in events[-1]["error"] and "halos_1.hdf5" in events[-1]["error"]


def slurm_mpi(cluster) -> dict:
    """A layer over LOCAL_RUN: two-rank boxes on the generic slurm profile, one pilot block of
    the local cluster holding all its CPUs (srun needs them for the ranks)."""
    return {
        "campaign": {"name": "mpislurm"},
        "science": {"n_hosts": 300},
        "execution": {
            "profile": "slurm",
            "retries": 0,
            "provider": {
                "partition": cluster.partition,
                "walltime": "00:10:00",
                "init_blocks": 1,
                "max_blocks": 1,
                "cores_per_node": cluster.cpus,
                "worker_init": f"export SLURM_CONF={cluster.conf}",
            },
        },
        **TWO_RANKS,
    }


@pytest.mark.slurm
def test_two_rank_boxes_through_srun_in_a_slurm_pilot_block(
    slurm_cluster, tmp_path, monkeypatch, single
):
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    campaign = write_campaign(tmp_path, LOCAL_RUN, slurm_mpi(slurm_cluster))
    assert campaign.execution.provider.kind == "slurm"
    assert campaign.execution.launcher.mpi_launcher == "srun"
    assert Runner(campaign, progress=False, monitoring=False).run() == {"done": 2, "failed": 0}
    plan = make_plan(campaign)
    assert plan.counts["done"] == 2
    for task in plan.tasks:
        assert_qa_passed(task)
        assert _ranks_of(task) == 2
        assert "launching: srun --ntasks 2" in open(f"{task.log_stem}.err").read()
    # the same boxes as the single-process runner's (local profile, same seeds)
    _assert_same_catalogs(campaign, single)
