"""The campaign runner end to end through real Parsl HTEX workers on this machine."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from covmocks import halos, state
from covmocks.campaign import Campaign
from covmocks.errors import CovmocksError
from covmocks.run import Runner

pytestmark = pytest.mark.slow

CAMPAIGN = """
campaign: {{name: t, version: 1, seed: 5}}
science:
  source: {source}
  {science}
  realizations: {realizations}
  redshifts: {redshifts}
  log10_mhost_min_msun: 11.0
  model: diffsky_sfh
  model_params: {{batch_min: 256, batch_max: 1024}}
execution:
  profile: local
  max_in_flight: 2
  retries: 2
  backoff_base_s: 1
  backoff_cap_s: 4
  task_walltime_s: {walltime}
  provider: {{workers_per_node: 1}}
outputs: {{base: {base}}}
{extra}
"""


def make_campaign(tmp_path, *, source="synthetic", science="n_hosts: 200", realizations="[0, 1]",
                  redshifts="[0.0]", walltime=600, faults=None, extra="",
                  name="campaign"):  # fmt: skip
    """A small campaign on the local profile; ``extra``: more top-level YAML (e.g. resources)."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(CAMPAIGN.format(source=source, science=science, realizations=realizations,
                                    redshifts=redshifts, walltime=walltime, extra=extra,
                                    base=tmp_path / name))  # fmt: skip
    campaign = Campaign.load(path)
    if faults:
        (campaign.directory / "metadata").mkdir(parents=True, exist_ok=True)
        (campaign.directory / "metadata" / "faults.json").write_text(json.dumps(faults))
    return campaign


def events_of(campaign, task):
    return [e for e in state.Journal(campaign.directory).read() if e["task"] == task]


def test_campaign_end_to_end_and_rerun_skips_finished_work(tmp_path):
    campaign = make_campaign(tmp_path, redshifts="[0.0, 1.0]")
    assert Runner(campaign, progress=False).run() == {"done": 4, "failed": 0}
    plan = campaign.plan()
    assert plan.counts["done"] == 4
    for task in plan.tasks:
        record = json.loads(task.qa_record.read_text())
        assert record["passed"] and all(record["checks"].values())
        with h5py.File(task.output) as f:
            assert f.attrs["realization"] == task.realization
            assert f.attrs["snapshot"] == task.snapshot
        assert task.output.parent.name == f"r{task.realization:04d}"
        assert (task.log_stem.parent / f"{task.task_id}.err").exists()
    # realizations draw different halos; snapshots use different streams
    with h5py.File(plan.tasks[0].output) as a, h5py.File(plan.tasks[2].output) as b:
        assert not np.array_equal(a["log10_mhalo"][:50], b["log10_mhalo"][:50])
    # Parsl's monitoring database holds every task
    db = campaign.directory / "metadata" / "monitoring.db"
    with sqlite3.connect(db) as con:
        (n,) = con.execute("select count(*) from task").fetchone()
    assert n == 4
    status = state.campaign_status(campaign)
    assert status.counts["done"] == 4 and status.done_last_hour == 4 and status.driver is None
    # a rerun finds everything done: nothing recomputed, files untouched
    stamps = {t.task_id: t.output.stat().st_mtime_ns for t in plan.tasks}
    assert Runner(campaign, progress=False).run() == {"done": 0, "failed": 0}
    assert stamps == {t.task_id: t.output.stat().st_mtime_ns for t in plan.tasks}


def test_faults_retried_with_growing_delays_lost_workers_rerun_for_free(tmp_path):
    faults = {
        "r0000_z0.000": {"action": "kill"},
        "r0001_z0.000": {"action": "raise", "times": 2},
        "r0002_z0.000": {"action": "hang"},
    }
    # the walltime must cover a fresh worker's kernel compilation on a loaded 2-core machine
    campaign = make_campaign(tmp_path, realizations="[0, 1, 2]", walltime=120, faults=faults)
    assert Runner(campaign, progress=False).run() == {"done": 3, "failed": 0}
    # a killed worker: re-run without charging the retry budget
    kinds = [e["event"] for e in events_of(campaign, "r0000_z0.000")]
    assert kinds == ["submitted", "lost", "submitted", "done"]
    # a transient failure twice: retried after real, growing delays
    ev = events_of(campaign, "r0001_z0.000")
    retries = [e for e in ev if e["event"] == "retry"]
    assert [e["delay_s"] for e in retries] == [1.0, 2.0]
    submits = [e["t"] for e in ev if e["event"] == "submitted"]
    gaps = [b - r["t"] for r, b in zip(retries, submits[1:], strict=True)]
    assert gaps[0] >= 1.0 and gaps[1] >= 2.0
    assert ev[-1]["event"] == "done"
    # a hung task: killed at its walltime, recorded as a timeout, then retried
    ev = events_of(campaign, "r0002_z0.000")
    assert [e["event"] for e in ev] == ["submitted", "timeout", "submitted", "done"]
    assert "walltime 120" in ev[1]["error"]


def test_corrupt_input_fails_without_retry_then_retry_verb_runs_it(tmp_path):
    src = halos.open_source("synthetic", n_hosts=300)
    block = next(src.iter_blocks(1000))
    halos.write_hdf5_halos(tmp_path / "halos_0.hdf5", block, src.header)
    (tmp_path / "halos_1.hdf5").write_bytes(b"\x89HDF this is not a catalog")
    campaign = make_campaign(tmp_path, source="hdf5",
                             science=f'input: "{tmp_path}/halos_{{realization}}.hdf5"')  # fmt: skip
    assert Runner(campaign, progress=False).run() == {"done": 1, "failed": 1}
    ev = events_of(campaign, "r0001_z0.000")
    assert [e["event"] for e in ev] == ["submitted", "failed"]
    assert ev[-1]["kind"] == "deterministic" and "halos_1.hdf5" in ev[-1]["error"]
    status = state.campaign_status(campaign)
    assert status.counts["failed"] == 1 and status.counts["done"] == 1
    (failure,) = status.failed
    assert failure["task"] == "r0001_z0.000" and failure["log"].endswith("r0001_z0.000.err")
    # a plain rerun leaves the failed task alone; `retry` runs it again
    assert Runner(campaign, progress=False).run() == {"done": 0, "failed": 0}
    halos.write_hdf5_halos(tmp_path / "halos_1.hdf5", block, src.header)
    rerun = Runner(campaign, progress=False, retry=["r0001_z0.000"]).run()
    assert rerun == {"done": 1, "failed": 0}
    assert state.campaign_status(campaign).counts["done"] == 2


def test_second_driver_is_refused_and_a_dead_driver_holds_no_lock(tmp_path):
    campaign = make_campaign(tmp_path)
    with state.DriverLock(campaign.directory):
        with pytest.raises(CovmocksError, match="already being run by pid"):
            Runner(campaign, progress=False).run()
    code = ("import sys, time; from covmocks.state import DriverLock; "
            f"DriverLock({str(campaign.directory)!r}).acquire(); print('locked', flush=True); "
            "time.sleep(600)")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    assert state.driver_alive(campaign.directory).startswith(f"pid {proc.pid}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state.driver_alive(campaign.directory) is None
    with state.DriverLock(campaign.directory):
        pass


def test_driver_killed_mid_campaign_then_restarted(tmp_path):
    campaign = make_campaign(tmp_path, realizations="[0, 1, 2, 3, 4, 5]")
    cmd = [sys.executable, "-m", "covmocks.run", str(campaign.path), "--no-monitoring"]
    driver = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    qa = campaign.directory / "qa"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(qa.glob("*.json"))) < 2:
        time.sleep(0.2)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and everything it started
    driver.wait()
    finished = {p.stem: (campaign.directory / "catalogs").rglob("mock_z*.hdf5")
                for p in qa.glob("*.json")}  # fmt: skip
    assert 2 <= len(finished) < 6
    before = {t.task_id: t.output.stat().st_mtime_ns for t in campaign.plan().select("done")}
    subprocess.run(cmd, check=True, timeout=600, capture_output=True)
    plan = campaign.plan()
    assert plan.counts["done"] == 6
    for tid, stamp in before.items():  # finished before the kill: never recomputed
        assert next(t for t in plan.tasks if t.task_id == tid).output.stat().st_mtime_ns == stamp
    leftovers = [p.name for p in (campaign.directory / "catalogs").rglob("*") if p.is_file()]
    assert sorted(leftovers) == ["mock_z0.000.hdf5"] * 6  # no duplicates or partial files


def test_the_demo_campaign_runs_end_to_end(tmp_path):
    demo = Path(__file__).resolve().parents[1] / "campaigns" / "demo.yaml"
    text = demo.read_text()
    assert "base: ../campaign-runs" in text
    path = tmp_path / "demo.yaml"
    path.write_text(text.replace("base: ../campaign-runs", f"base: {tmp_path / 'runs'}"))
    proc = subprocess.run([sys.executable, "-m", "covmocks.run", str(path)], capture_output=True,
                          text=True, timeout=1200)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    campaign = Campaign.load(path)
    plan = campaign.plan()
    assert plan.counts == {"done": 12, "todo": 0, "blocked": 0}
    assert all(json.loads(t.qa_record.read_text())["passed"] for t in plan.tasks)
    with sqlite3.connect(campaign.directory / "metadata" / "monitoring.db") as con:
        (n,) = con.execute("select count(*) from task").fetchone()
        (name,) = con.execute("select workflow_name from workflow").fetchone()
    assert n == 12 and name == "demo"
    assert (campaign.directory / "logs" / "driver.log").read_text().count("run finished") == 1
