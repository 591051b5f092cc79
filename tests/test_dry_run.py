"""`covmocks run --dry-run`: the real Parsl configuration and block scripts, nothing started.

Slurm's commands are stand-ins on PATH that record their calls: not a mock of Parsl, the
proof that nothing reached the queue.
"""

import json
import os
import re
import subprocess
import sys

import pytest

from covmocks.workflow.driver_lock import DriverLock
from covmocks.workflow.dryrun import dry_run
from covmocks.workflow.pilots import BIN

# Layers over the factory's default campaign (tests/conftest.py): 4 tasks...
DRY = {
    "campaign": {"name": "dry", "version": 1, "seed": 3},
    "science": {"n_hosts": 200, "realizations": [0, 1], "redshifts": [0.0, 1.0]},
}
# ...on the generic slurm profile: 3 HTEX workers per node, but 2 MPI tasks per block (so
# the printout tells which of the two the executor took).
SLURM = {
    "execution": {
        "profile": "slurm",
        "executor": {"workers_per_node": 3, "mpi_tasks_per_block": 2},
        "provider": {"partition": "debug", "account": "acct", "qos": "normal",
                     "constraint": "cpu", "walltime": "00:30:00", "nodes_per_block": 2,
                     "worker_init": "module load covmocks-env"},
    },
}  # fmt: skip


@pytest.fixture
def slurm_calls(tmp_path, monkeypatch):
    """Stand-ins for sbatch, scancel, squeue and sacct first on PATH; the file of their calls."""
    bin_dir, calls = tmp_path / "fake-slurm", tmp_path / "slurm-calls"
    bin_dir.mkdir()
    for name in ("sbatch", "scancel", "squeue", "sacct"):
        (bin_dir / name).write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\nexit 1\n')
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def dry(campaign, capsys, **kwargs):
    """Dry-run; stdout and the one block script."""
    assert dry_run(campaign, **kwargs) == 0
    out = capsys.readouterr().out
    (script,) = campaign.layout.dry_run.iterdir()
    assert f"script    {script}" in out
    return out, script.read_text()


def assert_nothing_started(campaign, calls):
    layout = campaign.layout
    submitted = calls.read_text().splitlines() if calls.exists() else []
    assert not [c for c in submitted if not c.startswith("sacct")], submitted  # status query only
    assert layout.catalogs.is_dir() and not list(layout.catalogs.rglob("*.hdf5"))
    assert not layout.journal.exists()
    assert not layout.lock.exists()
    assert not layout.parsl_runs.exists()  # parsl.load makes its run directory there
    assert not layout.monitoring_db.exists()


def worker_between_heredoc_and_srun(script, ntasks):
    pattern = (r"cat << SLURM_EOF .*\n(process_worker_pool\.py .*)\nSLURM_EOF\n.*"
               rf"\nsrun --ntasks {ntasks} -l ")  # fmt: skip
    match = re.search(pattern, script, re.S)
    assert match, script
    return match.group(1)


def test_slurm_profile_writes_the_block_script(make_campaign, slurm_calls, capsys):
    campaign = make_campaign(DRY, SLURM)
    out, script = dry(campaign, capsys)
    assert script.startswith("#!/bin/bash\n# covmocks dry run")
    for line in ("--nodes=2", "--time=30", "--partition=debug", "--account=acct", "--qos=normal",
                 "--constraint=cpu", "--ntasks-per-node=1"):  # fmt: skip
        assert f"\n#SBATCH {line}\n" in script
    assert "--exclusive" not in script and "--gpus-per-node" not in script
    assert f"\nexport PATH={BIN}:$PATH\nmodule load covmocks-env\n" in script
    worker = worker_between_heredoc_and_srun(script, ntasks=2)  # one pool per node
    assert "--max_workers_per_node=3 -a <interchange-addresses> " in worker
    assert "--port=<interchange-worker-port> " in worker and "--block_id=0 " in worker
    assert f"--logdir={campaign.layout.parsl_runs}/<run-number>/covmocks " in worker
    assert "<interchange-addresses>, <interchange-worker-port> and <run-number>" in script
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    # the printout: the Config, one argument per line, and the summary
    assert "\n    executors=(HighThroughputExecutor(\n" in out
    assert "\n        provider=PilotSlurmProvider(\n" in out and "launcher=SrunLauncher(" in out
    assert "status_polling_s=60" in out and "partition='debug'" in out
    assert "logging_endpoint='sqlite:///" in out and "workflow_name='dry'" in out
    assert "tasks     4 to run; done 0, todo 4, blocked 0" in out
    assert "executor  htex (HighThroughputExecutor)" in out
    assert "SlurmProvider: 0 at start, 0 to 4 blocks of 2 node(s), 3 worker(s) per node" in out
    assert f"worker    {worker}" in out
    assert campaign.layout.manifest.exists()  # planned like a run
    assert_nothing_started(campaign, slurm_calls)


def test_perlmutter_gpu_profile_asks_for_gpus(make_campaign, slurm_calls, capsys):
    campaign = make_campaign(
        DRY, execution={"profile": "perlmutter-gpu", "provider": {"account": "m0000"}}
    )
    out, script = dry(campaign, capsys, monitoring=False)
    for line in ("--nodes=1", "--time=120", "--gpus-per-node=4", "--exclusive",
                 "--account=m0000", "--qos=regular", "--constraint=gpu"):  # fmt: skip
        assert f"\n#SBATCH {line}\n" in script
    worker = worker_between_heredoc_and_srun(script, ntasks=1)
    assert "--max_workers_per_node=4 " in worker
    assert worker.endswith("--available-accelerators 0 1 2 3")
    assert "4 worker(s) per node, one per accelerator 0 1 2 3" in out
    assert "monitoring=None" in out and "monitoring off" in out
    assert script.count("--gpus-per-node") == 1  # from gpus_per_node, once
    assert_nothing_started(campaign, slurm_calls)


def test_perlmutter_cpu_workers_hold_their_own_cores(make_campaign, slurm_calls, capsys):
    """16 workers of 8 cores: Parsl pins each worker to its block of cores (and sets
    OMP_NUM_THREADS); numba, which counts the node's cores, is sized to the worker's."""
    campaign = make_campaign(
        DRY, execution={"profile": "perlmutter-cpu", "provider": {"account": "m0000"}}
    )
    worker = worker_between_heredoc_and_srun(dry(campaign, capsys)[1], ntasks=1)
    assert "--max_workers_per_node=16 " in worker and "--cpu-affinity block" in worker
    code = ("import os; from covmocks.apps.box_task import threads_to_affinity; "
            "threads_to_affinity(); print(os.environ.get('NUMBA_NUM_THREADS'))")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
    pinned = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], env=env,
                            capture_output=True, text=True, check=True)  # fmt: skip
    assert pinned.stdout.strip() == ("1" if os.cpu_count() > 1 else "None")
    assert_nothing_started(campaign, slurm_calls)


def test_gpus_per_node_asks_slurm_for_gpus(make_campaign, slurm_calls, capsys):
    """The generic Slurm profile with ``gpus_per_node: 4``: the batch script asks for the GPUs
    (the key once only made blocks exclusive); without it, no GPU line."""
    campaign = make_campaign(DRY, SLURM, execution={"provider": {"gpus_per_node": 4}})
    script = dry(campaign, capsys)[1]
    assert "\n#SBATCH --gpus-per-node=4\n" in script and "\n#SBATCH --exclusive\n" in script
    assert "gpus-per-node" not in dry(make_campaign(DRY, SLURM), capsys)[1]
    assert_nothing_started(campaign, slurm_calls)


def test_multi_rank_tasks_show_the_mpi_executor(make_campaign, slurm_calls, capsys):
    campaign = make_campaign(DRY, SLURM, resources={"ranks": 2})
    out, script = dry(campaign, capsys)
    assert "\n    executors=(MPIExecutor(\n" in out and "mpi_launcher='srun'" in out
    assert "executor  mpi (MPIExecutor): tasks ask for up to 2 MPI ranks" in out
    assert "2 node(s), at most 2 MPI task(s) at once per block" in out
    # SimpleLauncher: the pool starts once per block, and launches each task's ranks itself
    assert "\nsrun " not in script
    assert re.search(r"\nprocess_worker_pool\.py .*--enable_mpi_mode +--mpi-launcher=srun", script)
    assert_nothing_started(campaign, slurm_calls)


def test_local_profile_writes_what_would_run_here(make_campaign, slurm_calls, capsys):
    campaign = make_campaign(
        DRY, execution={"profile": "local", "executor": {"workers_per_node": 1}}
    )
    out, script = dry(campaign, capsys)
    assert "provider=LocalProvider(" in out
    assert "LocalProvider: 1 at start, 0 to 1 blocks of 1 node(s), 1 worker(s) per node" in out
    assert "export JOBNAME=parsl.covmocks.block-0\n" in script
    assert re.search(r"\nCMD\(\) \{\nprocess_worker_pool\.py .* -a 127\.0\.0\.1 ", script)
    assert "<interchange-addresses>" not in script
    assert_nothing_started(campaign, slurm_calls)


def test_running_driver_keeps_its_plan_and_failed_tasks_wait_for_retry(
    make_campaign, slurm_calls, capsys
):
    campaign = make_campaign(DRY, SLURM)
    journal = campaign.layout.journal
    journal.parent.mkdir(parents=True)
    journal.write_text(json.dumps({"t": 0, "task": "r0000_z0.000", "event": "failed"}) + "\n")
    with DriverLock(campaign.layout.lock):
        out, _ = dry(campaign, capsys)
    assert "driver    running: pid " in out and "a run now would be refused" in out
    assert not campaign.layout.manifest.exists()
    assert "tasks     3 to run; done 0, todo 4, blocked 0; 1 failed before" in out
    out, _ = dry(campaign, capsys, retry=["all"])
    assert "tasks     4 to run" in out and "plan      written" in out


@pytest.mark.parametrize("command", [["covmocks.run"], ["covmocks.cli.main", "run"]])
def test_command_line(make_campaign, slurm_calls, command):
    campaign = make_campaign(DRY, SLURM)
    proc = subprocess.run([sys.executable, "-m", *command, str(campaign.path), "--dry-run"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Parsl configuration (as the run would load it):\nConfig(\n")
    assert "started nothing (no interchange, workers or monitoring)" in proc.stdout
    assert (campaign.layout.dry_run / "covmocks.block-0.sh").is_file()
    assert_nothing_started(campaign, slurm_calls)
