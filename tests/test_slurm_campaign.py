"""Campaigns on the generic slurm profile: HTEX pilot blocks submitted with sbatch, and what
the driver does when a block is killed by its walltime or by scancel, or when slurmctld goes
away for a minute.

Faults come from ``metadata/faults.json`` (covmocks.apps.faults): ``hang`` keeps a box busy until
its block dies, ``sleep`` makes a box slow; each fires once per task. Each box logs the Slurm job
it ran in (``logs/<task>.err``), which tells which block ran which attempt.
"""

import json
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from covmocks.workflow.driver import Runner
from covmocks.workflow.plan import make_plan
from tests.conftest import LOCAL_RUN, require_or_skip, write_campaign
from tests.slurm_cluster import wait_for
from tests.test_run import assert_qa_passed, write_faults

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "slurm-cluster.sh"

LOG_LINE = re.compile(r"task (\S+) on \S+ pid \d+ slurm job (\S+)")


@pytest.fixture(scope="module")
def jax_cache(tmp_path_factory):
    """One JAX compilation cache for this module's campaigns: on this 2-core machine, shared
    with other work, a cold worker's first box took 20 to 75 s (mostly compilation), which made
    the fault timings below a matter of luck; with the cache warm it takes seconds."""
    return tmp_path_factory.mktemp("jax-cache")


def slurm_campaign(cluster, tmp_path, jax_cache, *, n=3, walltime="00:10:00", polling=2,
                   faults=None, lost_after=None):  # fmt: skip
    """``n`` boxes on the generic slurm profile: one pilot block of the local cluster at a
    time, a worker per CPU, one retry; the module's JAX cache; ``faults`` planned;
    ``lost_after``: the heartbeat threshold (s) after which a silent block counts as lost
    (the profile's 30 s when None)."""
    heartbeats = {} if lost_after is None else {
        "heartbeat_period_s": 2, "heartbeat_threshold_s": lost_after}  # fmt: skip
    campaign = write_campaign(tmp_path, LOCAL_RUN, {
        "campaign": {"name": "slurmdemo", "seed": 11},
        "science": {"realizations": list(range(n))},
        "execution": {
            "profile": "slurm",
            "compilation_cache": str(jax_cache),
            "max_in_flight": 4,
            "retries": 1,
            "executor": {"workers_per_node": cluster.cpus, **heartbeats},
            "provider": {
                "partition": cluster.partition,
                "walltime": walltime,
                "status_polling_s": polling,
                "init_blocks": 1,
                "max_blocks": 1,
                "worker_init": f"export SLURM_CONF={cluster.conf}",
            },
        },
    })  # fmt: skip
    if faults:
        write_faults(campaign, faults)
    return campaign


def events(campaign) -> list[dict]:
    lines = campaign.layout.journal.read_text().splitlines()
    return [json.loads(line) for line in lines]


def event_kinds(campaign) -> dict[str, list[str]]:
    kinds: dict[str, list[str]] = {}
    for ev in events(campaign):
        kinds.setdefault(ev["task"], []).append(ev["event"])
    return kinds


def attempt_jobs(campaign, task_id) -> list[str]:
    """The Slurm job of each attempt of a box, from its log."""
    log = Path(f"{campaign.layout.log_stem(task_id)}.err")
    if not log.exists():
        return []
    return [m[2] for m in LOG_LINE.finditer(log.read_text()) if m[1] == task_id]


def fault_count(campaign, task_id) -> int:
    counter = Path(f"{campaign.layout.log_stem(task_id)}.faults")
    return len(counter.read_text().splitlines()) if counter.exists() else 0


class Meddler(threading.Thread):
    """Runs ``action()`` beside the driver; ``join()`` re-raises what it raised."""

    def __init__(self, action):
        super().__init__(daemon=True)
        self.action, self.error, self.result = action, None, None

    def run(self):
        try:
            self.result = self.action()
        except BaseException as exc:  # noqa: BLE001 (handed to the test thread)
            self.error = exc

    def join(self, timeout=None):
        super().join(timeout)
        assert not self.is_alive(), "the fault injector is still running"
        if self.error is not None:
            raise self.error
        return self.result


def squeue(cluster) -> str:
    """The cluster's queue: pending, running and completing jobs."""
    out = subprocess.run(["squeue", "-h"], capture_output=True, text=True, env=cluster.env())
    return out.stdout.strip()


def assert_all_valid(campaign, n):
    plan = make_plan(campaign)
    assert plan.counts["done"] == n
    for task in plan.tasks:
        assert_qa_passed(task)


def test_campaign_runs_through_slurm_pilot_blocks(slurm_cluster, tmp_path, jax_cache, monkeypatch):  # noqa: F811
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    campaign = slurm_campaign(slurm_cluster, tmp_path, jax_cache, polling=60)
    assert campaign.execution.provider.kind == "slurm"
    assert campaign.execution.launcher.kind == "srun"
    assert Runner(campaign, progress=False).run() == {"done": 3, "failed": 0}
    assert_all_valid(campaign, 3)
    # the work ran inside a Slurm job: the pilot's submit script went through sbatch
    scripts = [p for p in campaign.layout.parsl_runs.rglob("submit_scripts/parsl.*")
               if not p.name.endswith((".sh", ".stdout", ".stderr"))]  # fmt: skip
    assert scripts and f"#SBATCH --partition={slurm_cluster.partition}" in scripts[0].read_text()
    jobs = {job for t in ("r0000_z0.000", "r0001_z0.000", "r0002_z0.000")
            for job in attempt_jobs(campaign, t)}  # fmt: skip
    assert len(jobs) == 1 and "-" not in jobs
    assert squeue(slurm_cluster) == ""  # the block was cancelled when the driver finished


def assert_lost_and_rerun(campaign, cluster, killed, first_job, state):
    """The boxes of the killed block were lost (not charged) and ran again in a new block."""
    kinds = event_kinds(campaign)
    for tid, evs in kinds.items():
        # never charged: no retry, timeout or failure, whatever else happened
        assert set(evs) <= {"submitted", "lost", "done"} and evs[-1] == "done", (tid, evs)
        assert evs.count("submitted") == evs.count("lost") + 1, (tid, evs)
    for tid in killed:
        assert kinds[tid][:3] == ["submitted", "lost", "submitted"], (tid, kinds[tid])
        assert fault_count(campaign, tid) == 1  # the hang fired once, in the killed block
        jobs = attempt_jobs(campaign, tid)
        assert jobs[0] == first_job and first_job not in jobs[1:], jobs
    first_lost = {}
    for ev in events(campaign):
        if ev["event"] == "lost":
            assert "ManagerLost" in ev["error"], ev
            first_lost.setdefault(ev["task"], ev)
    assert set(killed) <= set(first_lost)
    assert cluster.job_states([first_job]).get(first_job) == state


def test_block_killed_by_walltime_mid_campaign(slurm_cluster, tmp_path, jax_cache, monkeypatch):  # noqa: F811
    """Two boxes hang until their one-minute block hits its walltime; the third waits behind
    them. The hung boxes come back as lost (ManagerLost, no retry charged), run again in a new
    block, and all three catalogs are valid.

    Timing: slurmctld checks time limits every 30 s, so a "00:01:00" block dies 60 to 90 s
    after it starts (+ KillWait 5 s); the interchange declares its manager lost after
    heartbeat_threshold (10 s here), and the provider's squeue poll (2 s here) lets
    the strategy submit the replacement block.

    The replacement block has the same one-minute walltime. On a loaded machine the first box
    of a fresh block took up to 63 s here (mostly JAX compilation), so that block may hit its
    walltime too: its boxes are then lost again and re-run, still never charged. Hence the
    journal is checked for "never charged, done in the end", not for exactly one loss.
    """
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    hung = ["r0000_z0.000", "r0001_z0.000"]
    faults = {t: {"action": "hang"} for t in hung}
    campaign = slurm_campaign(slurm_cluster, tmp_path, jax_cache, walltime="00:01:00",
                             lost_after=10, faults=faults)  # fmt: skip
    assert Runner(campaign, progress=False).run() == {"done": 3, "failed": 0}
    first_job = attempt_jobs(campaign, hung[0])[0]
    assert_lost_and_rerun(campaign, slurm_cluster, hung, first_job, "TIMEOUT")
    assert_all_valid(campaign, 3)


def test_block_scancelled_mid_campaign(slurm_cluster, tmp_path, jax_cache, monkeypatch):  # noqa: F811
    """scancel the block while two boxes run in it: they are lost, re-run in a new block."""
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    hung = ["r0000_z0.000", "r0001_z0.000"]
    campaign = slurm_campaign(slurm_cluster, tmp_path, jax_cache, lost_after=10,
                             faults={t: {"action": "hang"} for t in hung})  # fmt: skip

    def cancel_block():
        # both boxes hang in the first block (their fault counters exist), then scancel it
        wait_for(lambda: all(fault_count(campaign, t) for t in hung), 120, "the boxes to hang")
        (job,) = {attempt_jobs(campaign, t)[0] for t in hung}
        subprocess.run(["scancel", job], check=True, env=slurm_cluster.env())
        return job, time.monotonic()

    meddler = Meddler(cancel_block)
    meddler.start()
    assert Runner(campaign, progress=False).run() == {"done": 3, "failed": 0}
    first_job, t_cancel = meddler.join(5)
    assert_lost_and_rerun(campaign, slurm_cluster, hung, first_job, "CANCELLED")
    assert_all_valid(campaign, 3)
    # re-run once the cancel was noticed, not at the 10-minute walltime of the cancelled block
    assert time.monotonic() - t_cancel < 600


def ctld_env(cluster) -> dict[str, str]:
    """Environment for scripts/slurm-cluster.sh stop-ctld/start-ctld on the test's cluster."""
    if not (cluster.conf.parent / "run" / "slurmctld.pid").is_file():
        require_or_skip(
            "slurm", "needs a cluster run by scripts/slurm-cluster.sh (stop-ctld/start-ctld)"
        )
    return {**cluster.env(), "COVMOCKS_SLURM_DIR": str(cluster.conf.parent)}


# What Parsl logs when a status poll of the provider fails, and what the driver logs when
# sbatch finds no controller (covmocks.workflow.slurm_provider).
POLL_FAILED = "sacct/squeue failed with non-zero exit code"
DOWN = "the Slurm controller does not answer"


def parsl_log(campaign) -> str:
    return "".join(p.read_text() for p in campaign.layout.parsl_runs.glob("*/parsl.log"))


def test_slurmctld_outage_mid_campaign(slurm_cluster, tmp_path, jax_cache, monkeypatch):  # noqa: F811
    """Stop slurmctld while boxes run, until Parsl's squeue polls have failed and a box has
    finished: the block and its workers carry on, results still reach the driver, the failed
    polls are ignored (the block keeps its last known state, RUNNING), and after the restart
    (slurmctld without -c recovers its jobs) the campaign completes in the same block, nothing
    lost or charged. The cluster's MessageTimeout (scripts/slurm-cluster.sh) makes a poll
    fail within seconds of the controller going away.

    Two workers: r0000 and r0001 run first (the block's cold start, however long it takes);
    the outage begins once both r0002 and r0003 have started after them. r0003 sleeps 15 s
    (done during the outage), r0002 50 s (still running when the controller is back)."""
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    env = ctld_env(slurm_cluster)
    slow, witness = "r0002_z0.000", "r0003_z0.000"
    campaign = slurm_campaign(slurm_cluster, tmp_path, jax_cache, n=4, faults={
        slow: {"action": "sleep", "seconds": 50}, witness: {"action": "sleep", "seconds": 15},
    })  # fmt: skip

    def done():
        return {ev["task"]: ev["t"] for ev in events(campaign) if ev["event"] == "done"}

    def done_since(t0):
        return {task: t for task, t in done().items() if t > t0}

    def outage():
        wait_for(lambda: fault_count(campaign, slow) and fault_count(campaign, witness), 300,
                 "the slow and the witness box to start")  # fmt: skip
        subprocess.run(["bash", str(SCRIPT), "stop-ctld"], check=True, env=env)
        t_stop = time.time()
        try:
            finished = wait_for(
                lambda: POLL_FAILED in parsl_log(campaign) and done_since(t_stop), 40,
                "a failed squeue poll and a box done without Slurm",
            )  # fmt: skip
        finally:
            subprocess.run(["bash", str(SCRIPT), "start-ctld"], check=True, env=env)
        return finished, time.time()

    meddler = Meddler(outage)
    meddler.start()
    try:
        assert Runner(campaign, progress=False).run() == {"done": 4, "failed": 0}
    finally:
        finished_while_down, t_start = meddler.join(400)
    assert slow not in finished_while_down
    assert done()[slow] > t_start  # the campaign was still running when slurmctld came back
    kinds = event_kinds(campaign)
    assert all(evs == ["submitted", "done"] for evs in kinds.values()), kinds
    jobs = {job for t in kinds for job in attempt_jobs(campaign, t)}
    assert len(jobs) == 1, jobs
    assert_all_valid(campaign, 4)


def test_driver_starts_while_slurmctld_is_down(slurm_cluster, tmp_path, jax_cache, monkeypatch):  # noqa: F811
    """The first block's sbatch fails while slurmctld is down. Parsl alone marks that block
    FAILED, and its block error handler then fails every task with BadStateException
    (checked by hand: a task failed 20 s after parsl.load, and the executor stayed bad after
    the controller came back). PilotSlurmProvider retries sbatch while the controller does not
    answer, so the campaign starts once slurmctld is back (here once the driver has logged a
    failed sbatch; the retry interval is shortened to 2 s)."""
    from covmocks.workflow.slurm_provider import PilotSlurmProvider

    monkeypatch.setattr(PilotSlurmProvider, "SUBMIT_RETRY_S", 2.0)
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    env = ctld_env(slurm_cluster)
    campaign = slurm_campaign(slurm_cluster, tmp_path, jax_cache, n=1)

    def restart_after_a_failed_sbatch():
        log = campaign.layout.driver_log
        try:
            wait_for(lambda: log.is_file() and DOWN in log.read_text(), 120,
                     "the driver to log a failed sbatch")  # fmt: skip
        finally:
            subprocess.run(["bash", str(SCRIPT), "start-ctld"], check=True, env=env)
        return time.time()

    # an earlier block still completing would be recovered so by the restarted controller,
    # which then leaves the new block to the backfill scheduler (up to 30 s later)
    wait_for(lambda: not squeue(slurm_cluster), 120, "the queue to empty")
    subprocess.run(["bash", str(SCRIPT), "stop-ctld"], check=True, env=env)
    meddler = Meddler(restart_after_a_failed_sbatch)
    meddler.start()
    try:
        assert Runner(campaign, progress=False).run() == {"done": 1, "failed": 0}
    finally:
        t_start = meddler.join(180)
    assert event_kinds(campaign) == {"r0000_z0.000": ["submitted", "done"]}
    assert events(campaign)[-1]["t"] > t_start
    assert_all_valid(campaign, 1)
