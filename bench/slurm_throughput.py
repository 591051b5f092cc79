"""Tasks per minute through local Slurm: Parsl pilot blocks versus one sbatch job per task.

Both ways run the same short task (a Python process-level sleep, 0.5 s by default) on the
local one-node cluster of ``scripts/slurm-cluster.sh``, in the same run, and use the same
number of CPUs (every sbatch job asks for one CPU; the pilot runs one worker per CPU):

* sbatch: the old pipeline's way, one ``sbatch --wrap`` job per task, all submitted at once,
  then ``squeue --states=all`` polled until every job has finished;
* pilot: Parsl HighThroughputExecutor + SlurmProvider + SrunLauncher, one pilot block whose
  workers take the tasks as python_apps; timed from ``parsl.load`` (so it pays for the block's
  queueing and start-up) to the last result, and separately once the block is warm.

Usage (as root, on the machine that runs the cluster)::

    scripts/slurm-cluster.sh start
    eval "$(scripts/slurm-cluster.sh env)"
    .venv/bin/python bench/slurm_throughput.py [--tasks 50] [--sleep 0.5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_CONF = Path(os.environ.get("COVMOCKS_SLURM_DIR", "/tmp/covmocks-slurm")) / "slurm.conf"
FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}


def node_cpus(partition: str) -> int:
    out = subprocess.run(
        ["sinfo", "--noheader", f"--partition={partition}", "--format=%T %c"],
        capture_output=True,
        text=True,
        check=False,
    )
    for line in out.stdout.splitlines():
        state, cpus = line.split()
        if state.rstrip("*~#!%$@^-") in {"idle", "mixed"}:
            return int(cpus)
    sys.exit(
        f"no idle node in partition {partition} (sinfo: {out.stdout.strip()!r} "
        f"{out.stderr.strip()!r}); start the cluster with scripts/slurm-cluster.sh start"
    )


def squeue_states(job_ids: list[str]) -> dict[str, str]:
    out = subprocess.run(
        ["squeue", "--noheader", "--states=all", "--format=%i %T", "--jobs=" + ",".join(job_ids)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


def run_sbatch_per_task(n: int, seconds: float, partition: str, workdir: Path) -> float:
    """Submit n one-CPU jobs, poll squeue until all finish; return the wall time."""
    task = f"{sys.executable} -c 'import time; time.sleep({seconds})'"
    t0 = time.perf_counter()
    job_ids = []
    for i in range(n):
        res = subprocess.run(
            [
                "sbatch",
                "--parsable",
                f"--partition={partition}",
                "--ntasks=1",
                "--cpus-per-task=1",
                "--time=00:05:00",
                f"--job-name=bench-sbatch-{i}",
                f"--output={workdir}/sbatch-%j.out",
                "--wrap",
                task,
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=workdir,
        )
        job_ids.append(res.stdout.strip().split(";")[0])
    submitted = time.perf_counter() - t0
    states: dict[str, str] = {}
    while True:
        states = squeue_states(job_ids)
        if len(states) == n and all(s in FINISHED for s in states.values()):
            break
        time.sleep(0.25)
    elapsed = time.perf_counter() - t0
    bad = {j: s for j, s in states.items() if s != "COMPLETED"}
    if bad:
        sys.exit(f"sbatch jobs did not complete: {bad}")
    print(f"  sbatch: {n} jobs submitted in {submitted:.1f} s, all done after {elapsed:.1f} s")
    return elapsed


def run_pilot(n: int, seconds: float, partition: str, workers: int, workdir: Path):
    """Run n python_apps through one HTEX pilot block; return (cold, warm) wall times."""
    import parsl
    from parsl import python_app
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.launchers import SrunLauncher

    from covmocks.campaign import ProviderValues
    from covmocks.workflow.pilots import _interchange_cmd, build_provider

    @python_app
    def nap(s):
        import time

        time.sleep(s)
        return s

    # The provider covmocks campaigns use (PilotSlurmProvider, squeue polled every 60 s).
    provider = build_provider(
        ProviderValues(
            kind="slurm",
            partition=partition,
            walltime="00:10:00",
            nodes_per_block=1,
            init_blocks=1,
            min_blocks=0,
            max_blocks=1,
            worker_init=f"cd {workdir}",
        ),
        SrunLauncher(),
    )
    executor = HighThroughputExecutor(
        label="slurm_pilot",
        provider=provider,
        address="127.0.0.1",
        interchange_launch_cmd=_interchange_cmd(),
        max_workers_per_node=workers,
        cores_per_worker=1,
        encrypted=False,
    )
    config = Config(
        executors=[executor],
        run_dir=str(workdir / "runinfo"),
        strategy="simple",
        max_idletime=60,
        initialize_logging=False,
    )
    t0 = time.perf_counter()
    dfk = parsl.load(config)
    try:
        results = [f.result() for f in [nap(seconds) for _ in range(n)]]
        cold = time.perf_counter() - t0
        assert results == [seconds] * n
        t1 = time.perf_counter()
        results = [f.result() for f in [nap(seconds) for _ in range(n)]]
        warm = time.perf_counter() - t1
    finally:
        dfk.cleanup()
        parsl.clear()
    print(f"  pilot: {n} tasks after {cold:.1f} s from parsl.load (block start-up included)")
    print(f"  pilot: {n} more tasks on the warm block in {warm:.1f} s")
    return cold, warm


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--sleep", type=float, default=0.5, help="seconds per task")
    parser.add_argument("--partition", default="debug")
    args = parser.parse_args(argv)

    os.environ.setdefault("SLURM_CONF", str(DEFAULT_CONF))
    cpus = node_cpus(args.partition)
    n = args.tasks
    ideal = n * args.sleep / cpus
    print(
        f"{n} tasks of {args.sleep} s on {cpus} CPUs (SLURM_CONF={os.environ['SLURM_CONF']}); "
        f"ideal {ideal:.1f} s = {n / ideal * 60:.0f} tasks/min"
    )
    with tempfile.TemporaryDirectory(prefix="bench-slurm-") as tmp:
        workdir = Path(tmp)
        t_sbatch = run_sbatch_per_task(n, args.sleep, args.partition, workdir)
        cold, warm = run_pilot(n, args.sleep, args.partition, cpus, workdir)

    def rate(t):
        return n / t * 60

    print(f"one sbatch job per task : {rate(t_sbatch):7.1f} tasks/min ({t_sbatch:.1f} s)")
    print(f"pilot, incl. start-up   : {rate(cold):7.1f} tasks/min ({cold:.1f} s)")
    print(f"pilot, warm block       : {rate(warm):7.1f} tasks/min ({warm:.1f} s)")
    print(
        f"ratio pilot/sbatch      : {t_sbatch / cold:.1f}x incl. start-up, "
        f"{t_sbatch / warm:.1f}x warm"
    )


if __name__ == "__main__":
    main()
