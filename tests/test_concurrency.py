"""Concurrency: while a campaign runs, a second driver is refused and changes nothing, and
``status``, the report and a user reading every file under a final name (catalogs, QA
records, statistics) never see a half-written file."""

import json
import subprocess
import sys
import time

import h5py
import pytest

from covmocks.catalog import validation
from covmocks.report import page
from covmocks.workflow.driver_lock import driver_alive
from covmocks.workflow.plan import make_plan
from covmocks.workflow.status import campaign_status
from tests.conftest import LOCAL_RUN
from tests.reliability_out import merge_summary

pytestmark = pytest.mark.slow


def _read_everything(layout, seen: dict) -> list[str]:
    """Read every file under a final name; the reasons any of them is not whole."""
    bad = []
    for path in sorted(layout.catalogs.glob("r*/mock_z*.hdf5")):
        failures = validation.check_file(path)
        bad += [f"{path.name}: {f}" for f in failures]
        seen["catalogs"] += 1
    for path in sorted(layout.qa.glob("r*.json")):
        try:
            record = json.loads(path.read_text())
            assert record["sha256"] and record["task_id"] == path.stem
        except (ValueError, KeyError, AssertionError) as exc:
            bad.append(f"{path.name}: {exc!r}")
        seen["qa_records"] += 1
    for path in sorted(layout.qa.glob("r*.stats.hdf5")):
        try:
            with h5py.File(path, "r") as f:
                f.visititems(lambda _, obj: obj[()] if isinstance(obj, h5py.Dataset) else None)
        except OSError as exc:
            bad.append(f"{path.name}: {exc}")
        seen["statistics"] += 1
    return bad


def test_readers_and_a_second_driver_while_a_campaign_runs(make_campaign):
    campaign = make_campaign(LOCAL_RUN, science={"realizations": list(range(8))})
    layout = campaign.layout
    layout.metadata.mkdir(parents=True, exist_ok=True)
    # the last box waits at its start (a fault) until the test lets it go: the run lasts until
    # a second driver has been refused and the readers have read through the making of the
    # other seven boxes
    go = campaign.path.parent / "go"
    layout.faults.write_text(json.dumps({"r0007_z0.000": {"action": "wait", "until": str(go)}}))
    cmd = [sys.executable, "-m", "covmocks.run", str(campaign.path), "--no-monitoring"]
    driver = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = {"catalogs": 0, "qa_records": 0, "statistics": 0, "status": 0, "report": 0}
    bad, refused, counts_seen = [], None, set()
    try:
        deadline = time.monotonic() + 600
        while driver.poll() is None and driver_alive(layout.lock) is None:
            assert time.monotonic() < deadline, "the driver never took its lock"
            time.sleep(0.1)
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        refused = (second.returncode, second.stderr.strip().splitlines()[-1:])
        while driver.poll() is None and time.monotonic() < deadline:
            bad += _read_everything(layout, seen)
            counts_seen.add(done := campaign_status(campaign).counts.get("done", 0))
            if done >= 7:
                go.touch()
            seen["status"] += 1
            page.build_report(campaign, workers=1)
            seen["report"] += 1
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.wait() == 0, driver.stderr.read()[-2000:]
    assert not bad, bad
    assert refused[0] != 0 and "already being run by pid" in refused[1][0], refused
    # the readers overlapped the run: they read finished boxes while others were in flight
    assert any(1 <= n < 8 for n in counts_seen) and seen["catalogs"] >= 1, counts_seen
    assert make_plan(campaign).counts["done"] == 8
    assert _read_everything(layout, seen) == []
    why = refused[1][0].split(" is ", 1)[-1]  # "already being run by pid N on host since ..."
    merge_summary({"test": "concurrency", "kind": "concurrency", "reads": seen, "boxes": 8,
                   "second_driver": why, "problems": bad})  # fmt: skip
