"""The real local Slurm cluster: plain sbatch, and Parsl pilot blocks (HTEX + SlurmProvider).

Needs the cluster of ``scripts/slurm-cluster.sh`` (the ``slurm_cluster`` fixture finds or starts
it, or skips with the reason).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import parsl
import pytest
from parsl import python_app
from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.executors.high_throughput.errors import ManagerLost
from parsl.jobs.states import JobState
from parsl.launchers import SrunLauncher

from covmocks.workflow.pilots import _interchange_cmd, build_provider
from covmocks.workflow.slurm_provider import PilotSlurmProvider
from tests.conftest import write_campaign
from tests.slurm_cluster import SlurmCluster, slurm_cluster, wait_for  # noqa: F401

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]


def pilot_config(
    cluster: SlurmCluster, run_dir: Path, *, heartbeat_threshold: int = 10, **config
) -> Config:
    """HTEX on one-node pilot blocks submitted with sbatch and launched with srun."""
    # The provider covmocks campaigns use (PilotSlurmProvider), as a campaign on the slurm
    # profile gets it, polling squeue every 2 s instead of Parsl's fixed 60 s, so a killed
    # block is noticed and replaced promptly.
    campaign = write_campaign(run_dir.parent, {"execution": {"profile": "slurm", "provider": {
        "partition": cluster.partition,
        "walltime": "00:10:00",
        "nodes_per_block": 1,
        "init_blocks": 1,
        "min_blocks": 0,
        "max_blocks": 1,
        "status_polling_s": 2,
        # build_provider puts the venv's bin first on PATH (process_worker_pool.py); the
        # workers must also import this module (apps are pickled by reference).
        "worker_init": "\n".join([
            f"export PYTHONPATH={REPO}${{PYTHONPATH:+:$PYTHONPATH}}",
            f"export SLURM_CONF={cluster.conf}",
            f"cd {REPO}",
        ]),
    }}})  # fmt: skip
    assert campaign.execution.provider.kind == "slurm"
    provider = build_provider(campaign.execution.provider, SrunLauncher())
    executor = HighThroughputExecutor(
        label="slurm_htex",
        provider=provider,
        # The driver starts interchange.py from PATH; pytest run as .venv/bin/pytest does not
        # put the venv's bin on PATH, so name the script.
        interchange_launch_cmd=_interchange_cmd(),
        address="127.0.0.1",
        max_workers_per_node=cluster.cpus,
        cores_per_worker=1,
        heartbeat_period=1,
        heartbeat_threshold=heartbeat_threshold,
        poll_period=100,
        encrypted=False,
    )
    config.setdefault("strategy", "simple")
    config.setdefault("strategy_period", 1)
    config.setdefault("max_idletime", 30)
    return Config(executors=[executor], run_dir=str(run_dir), **config)


@pytest.fixture
def pilot(slurm_cluster, tmp_path):  # noqa: F811
    """Load a Parsl pilot configuration; ``pilot(**config)`` returns the DFK."""
    loaded = []

    def load(**config):
        dfk = parsl.load(pilot_config(slurm_cluster, tmp_path / "runinfo", **config))
        loaded.append(dfk)
        return dfk

    try:
        yield load
    finally:
        for dfk in loaded:
            dfk.cleanup()
        parsl.clear()
        # cleanup() scancels the blocks it knows; make sure no pilot outlives the test (block
        # job names are parsl.slurm.<timestamp>, and squeue --name matches whole names only).
        out = subprocess.run(
            ["squeue", "--noheader", "--format=%i %j"],
            capture_output=True,
            text=True,
            env=slurm_cluster.env(),
        ).stdout
        left = [j for j, name in (ln.split() for ln in out.splitlines()) if "parsl" in name]
        if left:
            subprocess.run(["scancel", *left], env=slurm_cluster.env())


@python_app
def square(x):
    import os
    import socket

    return x * x, os.environ.get("SLURM_JOB_ID"), socket.gethostname()


@python_app
def hold(marker_dir, name, seconds):
    """Leave a marker naming the block this task runs in, then sleep."""
    import os
    import pathlib
    import time

    job = os.environ.get("SLURM_JOB_ID", "none")
    pathlib.Path(marker_dir, f"{name}.{job}").touch()
    time.sleep(seconds)
    return job


def test_sbatch_job_runs_and_writes_output(slurm_cluster, tmp_path):  # noqa: F811
    out = tmp_path / "job.out"
    res = subprocess.run(
        [
            "sbatch",
            "--parsable",
            f"--partition={slurm_cluster.partition}",
            "--time=00:01:00",
            f"--output={out}",
            "--job-name=covmocks-smoke",
            "--wrap",
            'echo "hello from $SLURM_JOB_ID on $(hostname)"',
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=slurm_cluster.env(),
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    job_id = res.stdout.strip().split(";")[0]
    # Poll rather than `sbatch --wait`: its poll interval grows to 10 s, so a one-second job
    # took 10 s to report back.
    wait_for(
        lambda: slurm_cluster.job_states([job_id]).get(job_id) == "COMPLETED",
        60,
        f"job {job_id} to complete",
    )
    assert out.read_text().startswith(f"hello from {job_id} on ")
    # Without accounting there is no sacct; squeue still knows the job for MinJobAge seconds,
    # but only with --states=all (plain `squeue --jobs` drops finished jobs silently).
    assert slurm_cluster.job_states([job_id]) == {job_id: "COMPLETED"}


def test_htex_pilot_runs_twenty_apps(pilot, tmp_path):
    dfk = pilot()
    results = [square(i).result(timeout=90) for i in range(20)]  # the timeout catches a hang
    assert [r[0] for r in results] == [i * i for i in range(20)]
    jobs = {r[1] for r in results}
    # Every task ran inside the one pilot block that SlurmProvider submitted.
    assert len(jobs) == 1 and None not in jobs
    (executor,) = [e for e in dfk.executors.values() if e.label == "slurm_htex"]
    assert set(executor.provider.resources) == jobs
    assert isinstance(executor.provider, PilotSlurmProvider)
    assert executor.status_polling_interval == 2


def test_scancelled_block_is_replaced(pilot, slurm_cluster, tmp_path):  # noqa: F811
    """scancel the pilot mid-run: its tasks fail with ManagerLost, a new block takes new work."""
    markers = tmp_path / "markers"
    markers.mkdir()
    dfk = pilot(heartbeat_threshold=5)
    (executor,) = [e for e in dfk.executors.values() if e.label == "slurm_htex"]

    doomed = [hold(str(markers), f"doomed{i}", 120) for i in range(slurm_cluster.cpus)]
    started = wait_for(
        lambda: (m := list(markers.iterdir())) and len(m) == len(doomed) and m,
        90,
        "the long tasks to start on the first block",
    )
    (first_job,) = {p.suffix[1:] for p in started}
    assert first_job in executor.provider.resources

    subprocess.run(["scancel", first_job], check=True, env=slurm_cluster.env())
    for fut in doomed:  # lost at the heartbeat threshold (5 s); the timeout catches a hang
        with pytest.raises(ManagerLost):
            fut.result(timeout=120)
    # Surprise: the block's state comes from squeue (accounting is off, sacct fails); once the
    # job has left the running states it drops out of `squeue --jobs` and SlurmProvider calls it
    # COMPLETED, not CANCELLED. It is not FAILED, so the block error handler does not mark the
    # executor bad (with init_blocks=1 a single FAILED block would fail every task).
    status = wait_for(
        lambda: (st := executor.provider.resources[first_job]["status"]).terminal and st,
        30,
        "Parsl to see the cancelled block as finished",
    )
    assert status.state == JobState.COMPLETED

    # Re-submitted work: the simple strategy sees outstanding tasks and no live block and
    # submits a new one (max_blocks=1 allows it now that the first has ended).
    again = [hold(str(markers), f"again{i}", 0) for i in range(len(doomed))]
    new_jobs = {fut.result(timeout=90) for fut in again}
    assert len(new_jobs) == 1 and first_job not in new_jobs
    assert new_jobs <= set(executor.provider.resources)


def test_lost_tasks_rerun_on_new_block_without_spending_retries(pilot, slurm_cluster, tmp_path):  # noqa: F811
    """With a retry handler that charges nothing for ManagerLost, killed tasks just re-run."""
    markers = tmp_path / "markers"
    markers.mkdir()

    seen = []

    def free_manager_lost(exc, task_record):
        seen.append((task_record["id"], type(exc).__name__))
        return 0.0 if isinstance(exc, ManagerLost) else 1.0

    dfk = pilot(heartbeat_threshold=5, retries=1, retry_handler=free_manager_lost)
    (executor,) = [e for e in dfk.executors.values() if e.label == "slurm_htex"]
    n = slurm_cluster.cpus
    # One long task per worker, to be killed, and four quick ones queued behind them.
    futs = [hold(str(markers), f"t{i}", 0 if i >= n else 8) for i in range(n + 4)]
    wait_for(
        lambda: len(list(markers.iterdir())) >= n,
        90,
        "the first tasks to start",
    )
    first_job = next(markers.iterdir()).suffix[1:]
    subprocess.run(["scancel", first_job], check=True, env=slurm_cluster.env())
    jobs = [fut.result(timeout=90) for fut in futs]
    assert first_job not in jobs[:n]
    killed = {fut.tid for fut in futs[:n]}
    # Surprise: the DFK clears task_record["fail_history"] when it schedules a retry, so the
    # history of a task that finally succeeded is empty; the handler is the place to look.
    assert sorted(seen) == sorted((tid, "ManagerLost") for tid in killed)
    for fut in futs[:n]:
        record = fut.task_record
        assert record["fail_count"] == 1 and record["fail_cost"] == 0 and record["try_id"] == 1
    assert len(executor.provider.resources) == 2
