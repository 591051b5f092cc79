"""A campaign on the generic slurm profile: HTEX pilot blocks submitted with sbatch."""

import json
import subprocess

import pytest

from covmocks.campaign import Campaign
from covmocks.run import Runner

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

CAMPAIGN = """
campaign: {{name: slurmdemo, version: 1, seed: 11}}
science:
  source: synthetic
  n_hosts: 200
  realizations: [0, 1, 2]
  redshifts: [0.0]
  log10_mhost_min_msun: 11.0
  model: diffsky_sfh
  model_params: {{batch_min: 256, batch_max: 1024}}
execution:
  profile: slurm
  max_in_flight: 4
  retries: 1
  task_walltime_s: 600
  provider:
    partition: {partition}
    walltime: "00:10:00"
    init_blocks: 1
    max_blocks: 1
    workers_per_node: {workers}
    worker_init: "export SLURM_CONF={conf}"
outputs: {{base: {base}}}
"""


def test_campaign_runs_through_slurm_pilot_blocks(slurm_cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    path = tmp_path / "slurm.yaml"
    text = CAMPAIGN.format(partition=slurm_cluster.partition, conf=slurm_cluster.conf,
                           workers=slurm_cluster.cpus, base=tmp_path / "runs")  # fmt: skip
    path.write_text(text)
    campaign = Campaign.load(path)
    assert campaign.execution.profile["provider"]["kind"] == "slurm"
    assert Runner(campaign, progress=False).run() == {"done": 3, "failed": 0}
    plan = campaign.plan()
    assert plan.counts["done"] == 3
    assert all(json.loads(t.qa_record.read_text())["passed"] for t in plan.tasks)
    # the work ran inside a Slurm job: the pilot's submit script went through sbatch
    scripts = [p for p in (campaign.directory / "logs" / "parsl").rglob("submit_scripts/parsl.*")
               if not p.name.endswith((".sh", ".stdout", ".stderr"))]  # fmt: skip
    assert scripts and f"#SBATCH --partition={slurm_cluster.partition}" in scripts[0].read_text()
    queue = subprocess.run(["squeue", "-h"], capture_output=True, text=True,
                           env=slurm_cluster.env())  # fmt: skip
    assert queue.stdout.strip() == ""  # the block was cancelled when the driver finished
