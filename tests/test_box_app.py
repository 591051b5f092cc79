"""A box on a Parsl worker (``covmocks.apps.box_task``), its MPI launch in particular, without
Parsl: the ranks are stood in for by a shell command given as ``$PARSL_MPI_PREFIX`` (the app
appends ``python -m covmocks.cli.generate_mpi ...``, which the stand-in ignores).

- what a killed attempt left (the catalog's temporaries and shards, the temporaries of its
  statistics, samples, clustering and QA record) is removed, and no final file;
- ranks that refuse to write because the catalog appeared meanwhile (another attempt of the
  task made it) do not fail the task; other exit-2 failures do (InputError);
- SIGTERM of the worker, or its death by SIGKILL, ends the launcher and every rank
  (``covmocks.apps.lifeline``), and removes what they were writing.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from covmocks.apps import box_task as app
from covmocks.box.spec import BoxSpec
from covmocks.core.errors import InputError, NoSpaceError
from tests.test_crashes import alive

REPO = Path(__file__).resolve().parents[1]


def _job(tmp_path: Path, walltime_s: float = 60) -> app.BoxJob:
    out = tmp_path / "catalogs" / "r0000" / "mock_z0.000.hdf5"
    out.parent.mkdir(parents=True)
    (tmp_path / "qa").mkdir()
    (tmp_path / "logs").mkdir()
    spec = BoxSpec(source="synthetic", n_hosts=50, seed=1, redshift=0.0, output=out)
    tid = "r0000_z0.000"
    return app.BoxJob(task_id=tid, box=spec, qa_record=tmp_path / "qa" / f"{tid}.json",
                      log_stem=tmp_path / "logs" / tid, walltime_s=walltime_s, mpi=True,
                      ranks=2, jax_cache=tmp_path / "jax",
                      faults=tmp_path / "faults.json")  # fmt: skip


def test_stale_temporaries_of_the_catalog_and_its_qa_files_go_final_files_stay(tmp_path):
    job = _job(tmp_path)
    out, qa = job.box.output, job.qa_record.parent
    stale = [out.parent / f".{out.name}.tmp-123", qa / ".r0000_z0.000.stats.hdf5.tmp-9",
             qa / ".r0000_z0.000.samples.hdf5.tmp-9", qa / ".r0000_z0.000.pk.hdf5.tmp-77",
             qa / ".r0000_z0.000.json.tmp-5"]  # fmt: skip
    final = [out, qa / "r0000_z0.000.stats.hdf5", qa / "r0000_z0.000.samples.hdf5",
             qa / "r0000_z0.000.pk.hdf5", qa / "r0000_z0.000.json",
             qa / ".r0001_z0.000.json.tmp-5",  # another task's: it may be running
             out.parent / ".mock_z1.000.hdf5.tmp-1"]  # fmt: skip
    shards = out.parent / f".{out.name}.mpi-abc"
    shards.mkdir()
    (shards / "unit-00000000.hdf5").touch()
    for path in stale + final:
        path.touch()
    app._remove_stale_temporaries(job)
    assert not any(p.exists() for p in stale) and not shards.exists()
    assert all(p.exists() for p in final)


def _generate_mpi(job, prefix: str, monkeypatch):
    monkeypatch.setenv("PARSL_MPI_PREFIX", prefix)
    with app.task_logs(job.log_stem) as (out, err):
        return app.generate_mpi(job, out, err, time.monotonic() + job.walltime_s)


def test_ranks_refusing_a_catalog_that_appeared_meanwhile_do_not_fail_the_task(
    tmp_path, monkeypatch
):
    """Exit status 2 with the catalog now there (orphaned ranks or a worker of a killed
    driver published it): the caller validates that catalog."""
    job = _job(tmp_path)
    refuse = "echo 'covmocks: error: output exists: {}' >&2; {}exit 2"
    appeared = f'sh -c "{refuse.format(job.box.output, f"touch {job.box.output}; ")}" sh'
    assert _generate_mpi(job, appeared, monkeypatch) is None
    job.box.output.unlink()
    with pytest.raises(InputError, match="2 MPI ranks: output exists"):
        _generate_mpi(job, f'sh -c "{refuse.format(job.box.output, "")}" sh', monkeypatch)


def test_ranks_that_found_no_space_fail_the_task_with_no_space_error(tmp_path, monkeypatch):
    job = _job(tmp_path)
    full = (
        "sh -c \"echo 'covmocks: error: no space left to write x: No space left' >&2; exit 1\" sh"
    )
    with pytest.raises(NoSpaceError, match="2 MPI ranks: no space left to write x"):
        _generate_mpi(job, full, monkeypatch)


# A worker (this script, the main thread) waiting for "ranks": two sleeps in the launcher's
# process group, which write their pids, and a shard directory they "write".
WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from covmocks.apps import box_task as app
    from covmocks.box.spec import BoxSpec
    tmp = Path(sys.argv[1])
    out = tmp / "catalogs" / "mock.hdf5"
    spec = BoxSpec(source="synthetic", n_hosts=50, seed=1, redshift=0.0, output=out)
    job = app.BoxJob(task_id="t", box=spec, qa_record=tmp / "qa" / "t.json",
                     log_stem=tmp / "logs" / "t", walltime_s=600, mpi=True, ranks=2,
                     jax_cache=tmp / "jax", faults=tmp / "faults.json")
    with app.task_logs(job.log_stem) as (o, e):
        app.generate_mpi(job, o, e, time.monotonic() + 600)
    """
)
RANKS = (
    "sh -c 'mkdir {shards}; sleep 300 & echo $! >> {pids}; sleep 300 & echo $! >> {pids}; wait' sh"
)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_worker_stopped_or_killed_ends_its_ranks(tmp_path, how):
    """SIGTERM (the driver's shutdown): the worker stops the ranks' group, removes their
    shards and dies of the signal. SIGKILL: the launcher's supervisor ends the group."""
    for name in ("catalogs", "qa", "logs"):
        (tmp_path / name).mkdir()
    pids = tmp_path / "pids"
    shards = tmp_path / "catalogs" / ".mock.hdf5.mpi-x"
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = dict(os.environ, PYTHONPATH=str(REPO),
               PARSL_MPI_PREFIX=RANKS.format(shards=shards, pids=pids))  # fmt: skip
    worker = subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not (pids.exists() and len(pids.read_text().split()) == 2):
            assert time.monotonic() < deadline and worker.poll() is None, "ranks never started"
            time.sleep(0.05)
        ranks = [int(p) for p in pids.read_text().split()]
        worker.send_signal(how)
        assert worker.wait(timeout=30) == -how
        deadline = time.monotonic() + 15
        while any(alive(pid) for pid in ranks) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in ranks)
        if how == signal.SIGTERM:
            assert not shards.exists()
    finally:
        worker.kill()
        for pid in [int(p) for p in pids.read_text().split()] if pids.exists() else []:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_catalog_that_appeared_before_the_generator_looked_is_kept(tmp_path):
    """Between the worker's ``output.exists()`` and the generator's own check, another attempt
    of the task (an orphaned worker) published the catalog: no error (it was an OutputError,
    a deterministic failure, before), the catalog is left as it is for validation."""
    job = _job(tmp_path)
    job.box.output.write_bytes(b"made by another attempt")
    app._generate_here(job)
    assert job.box.output.read_bytes() == b"made by another attempt"


ORPHANING = textwrap.dedent(
    """
    import os, subprocess, sys, time
    from covmocks.apps import lifeline
    child = subprocess.Popen(lifeline.command("exec", "sleep", "300"))
    print(child.pid, flush=True)
    deadline = time.monotonic() + 30
    while open(f"/proc/{child.pid}/cmdline").read().split("\\0")[0] != "sleep":
        assert time.monotonic() < deadline
        time.sleep(0.01)  # until the lifeline became the command (after its prctl)
    os._exit(0)  # like a driver killed with SIGKILL: no cleanup
    """
)


def test_a_process_started_through_the_lifeline_dies_with_its_parent():
    """The driver's interchange (``parsl_config._interchange_cmd``) dies with the driver."""
    from covmocks.workflow.pilots import _interchange_cmd

    assert Path(_interchange_cmd()[1]).name == "lifeline.py"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = subprocess.run([sys.executable, "-c", ORPHANING], env=env, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    pid = int(run.stdout)
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid)
