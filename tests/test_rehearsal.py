"""The production rehearsal, reduced for CI: 1,000 tasks of the 20-snapshot plan through the
local Slurm cluster's pilot blocks with the REHEARSAL stand-in box (``bench/rehearsal.py``),
2% of the tasks failing once, one-minute pilot blocks, the driver SIGKILLed at 40% and
restarted: every task done, none failed, with no manual step; the 100,000-task lifetime
plan is planned and its status read."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reliability_out import merge_summary
from tests.slurm_cluster import slurm_cluster  # noqa: F401

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]


def test_rehearsal_completes_with_faults_and_a_killed_driver(slurm_cluster, tmp_path):  # noqa: F811
    out = tmp_path / "figures.json"
    cmd = [sys.executable, str(REPO / "bench" / "rehearsal.py"), "--realizations", "50",
           "--redshifts", "20", "--walltime", "00:01:00", "--out", str(tmp_path / "run"),
           "--json", str(out)]  # fmt: skip
    done = subprocess.run(cmd, env=slurm_cluster.env(), capture_output=True, text=True,
                          timeout=1200)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    f = json.loads(out.read_text())
    assert (f["tasks"], f["done"], f["failed"]) == (1000, 1000, 0)
    assert f["first_driver_exit"] == -9 and 400 <= f["done_when_killed"] < 1000
    assert f["second_driver_exit"] == 0
    assert f["faults_planned"] == 20 and 1 <= f["retried_charged"] <= 20 + f["timeouts"]
    assert f["lifetime_tasks"] == 100_000 and f["report_ok"]
    assert "| tasks | 1,000 | done 1000, failed 0 |" in done.stdout
    merge_summary(f | {"test": "rehearsal", "kind": "rehearsal"})
