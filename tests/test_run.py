"""The campaign runner end to end through real Parsl HTEX workers on this machine."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from covmocks.core.errors import CovmocksError
from covmocks.halos import blocks, sources
from covmocks.workflow.driver import Runner
from covmocks.workflow.driver_lock import DriverLock, driver_alive
from covmocks.workflow.journal import Journal
from covmocks.workflow.plan import make_plan
from covmocks.workflow.status import campaign_status
from tests.conftest import LOCAL_RUN

pytestmark = pytest.mark.slow
# A layer for runs that kill workers: Parsl looks for dead workers every second, not every 5.
QUICK_LOSS = {"execution": {"executor": {"heartbeat_period_s": 1}}}


def write_faults(campaign, faults: dict):
    """Plan faults for the campaign's tasks (``covmocks.apps.faults``); returns the campaign."""
    campaign.layout.faults.parent.mkdir(parents=True, exist_ok=True)
    campaign.layout.faults.write_text(json.dumps(faults))
    return campaign


def events_of(campaign, task):
    return [e for e in Journal(campaign.layout.journal).read() if e["task"] == task]


def assert_qa_passed(task):
    """The task's QA record exists (written only for a catalog that passed) and lists its
    checks, all passed."""
    record = json.loads(task.qa_record.read_text())
    assert record["task_id"] == task.task_id and record["output"] == str(task.output)
    assert record["checks"] and all(record["checks"].values()), record["checks"]


def test_campaign_end_to_end_and_rerun_skips_finished_work(demo):
    """The demo campaign (12 boxes), run once for the test session by the quickstart's command
    (tests/conftest.py); run again here, it finds everything done."""
    campaign = demo.campaign
    plan = make_plan(campaign)
    assert plan.counts["done"] == 12
    for task in plan.tasks:
        assert_qa_passed(task)
        with h5py.File(task.output) as f:
            assert f.attrs["realization"] == task.realization
            assert f.attrs["snapshot"] == task.snapshot
        assert task.output.parent.name == f"r{task.realization:04d}"
        assert (task.log_stem.parent / f"{task.task_id}.err").exists()
    # realizations draw different halos
    first, other = (t for t in plan.tasks if t.redshift == 0.0 and t.realization in (0, 1))
    with h5py.File(first.output) as a, h5py.File(other.output) as b:
        assert not np.array_equal(a["log10_mhalo"][:50], b["log10_mhalo"][:50])
    # Parsl's monitoring database holds every task: the 12 boxes and the measurements of the
    # 2 calibration boxes of each snapshot, made before its threshold was fixed
    with sqlite3.connect(campaign.layout.monitoring_db) as con:
        (n,) = con.execute("select count(*) from task").fetchone()
    assert n == 12 + 2 * 3
    status = campaign_status(campaign)
    assert status.counts["done"] == 12 and status.driver is None
    # a rerun finds everything done: nothing recomputed, files untouched
    stamps = {t.task_id: t.output.stat().st_mtime_ns for t in plan.tasks}
    assert Runner(campaign, progress=False).run() == {"done": 0, "failed": 0}
    assert stamps == {t.task_id: t.output.stat().st_mtime_ns for t in plan.tasks}


def test_faults_retried_with_growing_delays_lost_workers_rerun_for_free(make_campaign):
    faults = {
        "r0000_z1.000": {"action": "hang"},
        "r0001_z0.000": {"action": "kill"},
        "r0001_z1.000": {"action": "raise", "times": 2},
    }
    # Two workers: the hung box, submitted first, holds one of them while the other makes
    # r0000_z0.000 (compiling the kernels into the cache) and then the faulty boxes. The hung
    # box's snapshot has a walltime of its own, waited out in full: 60 s, which covers a
    # fresh worker's box (seconds with the kernels in the compilation cache; 20 to 50 s cold
    # on a loaded 2-core machine). The other snapshot keeps LOCAL_RUN's 600 s.
    campaign = make_campaign(LOCAL_RUN, QUICK_LOSS,
                             science={"realizations": [0, 1], "redshifts": [0.0, 1.0]},
                             execution={"executor": {"workers_per_node": 2}},
                             resources={"by_redshift": {1.0: {"walltime_s": 60}}})  # fmt: skip
    write_faults(campaign, faults)
    assert Runner(campaign, progress=False).run() == {"done": 4, "failed": 0}
    # a killed worker: re-run without charging the retry budget
    kinds = [e["event"] for e in events_of(campaign, "r0001_z0.000")]
    assert kinds == ["submitted", "lost", "submitted", "done"]
    # a transient failure twice: retried after real, growing delays
    ev = events_of(campaign, "r0001_z1.000")
    retries = [e for e in ev if e["event"] == "retry"]
    assert [e["delay_s"] for e in retries] == [1.0, 2.0]
    submits = [e["t"] for e in ev if e["event"] == "submitted"]
    gaps = [b - r["t"] for r, b in zip(retries, submits[1:], strict=True)]
    assert gaps[0] >= 1.0 and gaps[1] >= 2.0
    assert ev[-1]["event"] == "done"
    # a hung task: killed at its walltime, recorded as a timeout, then retried
    ev = events_of(campaign, "r0000_z1.000")
    assert [e["event"] for e in ev] == ["submitted", "timeout", "submitted", "done"]
    assert "walltime 60" in ev[1]["error"]


def test_corrupt_input_fails_without_retry_then_retry_verb_runs_it(tmp_path, make_campaign):
    src = sources.open_source("synthetic", n_hosts=300, log10_mhost_min_msun=11.0)
    block = next(src.iter_blocks(1000))
    blocks.write_hdf5_halos(tmp_path / "halos_0.hdf5", block, src.header)
    (tmp_path / "halos_1.hdf5").write_bytes(b"\x89HDF this is not a catalog")
    alerts = tmp_path / "alerts.txt"
    record = ["-c", "import sys; open(sys.argv[1], 'a').write(sys.argv[2] + '\\n')", str(alerts)]
    campaign = make_campaign(LOCAL_RUN, science={
        "source": "hdf5", "n_hosts": None, "input": f"{tmp_path}/halos_{{realization}}.hdf5"
    }, campaign={"notify": {"command": [sys.executable, *record],
                            "failure_fraction": 0.5}})  # fmt: skip
    assert Runner(campaign, progress=False).run() == {"done": 1, "failed": 1}
    # the driver alerted once at half the tasks failed, and once at the end
    first, last = sorted(alerts.read_text().splitlines(), key=lambda x: "finished" in x)
    assert "failures reached 50%" in first and "run finished: 1 done, 1 failed of 2" in last
    ev = events_of(campaign, "r0001_z0.000")
    assert [e["event"] for e in ev] == ["submitted", "failed"]
    assert ev[-1]["kind"] == "deterministic" and "halos_1.hdf5" in ev[-1]["error"]
    status = campaign_status(campaign)
    assert status.counts["failed"] == 1 and status.counts["done"] == 1
    (failure,) = status.failed
    assert failure["task"] == "r0001_z0.000" and failure["log"].endswith("r0001_z0.000.err")
    # a plain rerun leaves the failed task alone; `retry` runs it again
    assert Runner(campaign, progress=False).run() == {"done": 0, "failed": 0}
    blocks.write_hdf5_halos(tmp_path / "halos_1.hdf5", block, src.header)
    rerun = Runner(campaign, progress=False, retry=["r0001_z0.000"]).run()
    assert rerun == {"done": 1, "failed": 0}
    assert campaign_status(campaign).counts["done"] == 2


def test_second_driver_is_refused_and_a_dead_driver_holds_no_lock(make_campaign):
    campaign = make_campaign(LOCAL_RUN)
    lock = campaign.layout.lock
    with DriverLock(lock):
        with pytest.raises(CovmocksError, match="already being run by pid"):
            Runner(campaign, progress=False).run()
    code = ("import sys, time; from covmocks.workflow.driver_lock import DriverLock; "
            f"DriverLock({str(lock)!r}).acquire(); print('locked', flush=True); "
            "time.sleep(600)")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    assert driver_alive(lock).startswith(f"pid {proc.pid}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert driver_alive(lock) is None
    with DriverLock(lock):
        pass


def test_driver_killed_mid_campaign_then_restarted(make_campaign):
    campaign = make_campaign(LOCAL_RUN, science={"realizations": [0, 1, 2, 3, 4, 5]})
    cmd = [sys.executable, "-m", "covmocks.run", str(campaign.path), "--no-monitoring"]
    driver = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    qa = campaign.layout.qa
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(qa.glob("*.json"))) < 2:
        time.sleep(0.2)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and everything it started
    driver.wait()
    finished = {p.stem for p in qa.glob("*.json")}
    assert 2 <= len(finished) < 6
    before = {t.task_id: t.output.stat().st_mtime_ns for t in make_plan(campaign).select("done")}
    assert set(before) == finished
    subprocess.run(cmd, check=True, timeout=600, capture_output=True)
    plan = make_plan(campaign)
    assert plan.counts["done"] == 6
    for tid, stamp in before.items():  # finished before the kill: never recomputed
        assert next(t for t in plan.tasks if t.task_id == tid).output.stat().st_mtime_ns == stamp
    leftovers = [p.name for p in campaign.layout.catalogs.rglob("*") if p.is_file()]
    assert sorted(leftovers) == ["mock_z0.000.hdf5"] * 6  # no duplicates or partial files
