"""Clustering in the workflow: a campaign run through real Parsl workers measures every box's
samples, fixes a number-density threshold once from its calibration boxes, cuts every box
at it (never re-ranked), resumes owed measurements without redoing any, and assembles the
covariance from the records alone."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from covmocks.clustering import power, samples
from covmocks.covariance import ensemble
from covmocks.workflow.journal import Journal
from covmocks.workflow.status import campaign_status
from tests.conftest import LOCAL_RUN

N_BOXES = 6


def _clustering(n_target: float) -> dict:
    return {"clustering": {
        "samples": [
            {"name": "all", "select": "all"},
            {"name": "sfr_n", "select": "sfr", "number_density": n_target},
            {"name": "massive", "select": "mstar", "threshold": {0.5: 9.5}},
        ],
        "nmesh": 16, "dk": 1, "margin": 2.0, "calibration_boxes": 3,
    }}  # fmt: skip


def _target(campaign) -> float:
    """A third of a synthetic box's galaxies, in (h/Mpc)^3 (about 2.4 per host)."""
    from covmocks.box.spec import BoxSpec

    sci = campaign.science
    spec = BoxSpec(source="synthetic", output="x", n_hosts=sci.n_hosts, redshift=0.5,
                   log10_mhost_min_msun=sci.log10_mhost_min_msun)  # fmt: skip
    box_size = spec.open_source().header.box_size
    return round(0.8 * sci.n_hosts / box_size**3, 8)


@pytest.mark.slow
def test_campaign_measures_every_box_at_one_ensemble_threshold(make_campaign):
    from covmocks.workflow.driver import Runner

    science = {"realizations": list(range(N_BOXES)), "redshifts": [0.5]}
    probe = make_campaign(LOCAL_RUN, science=science)
    campaign = make_campaign(LOCAL_RUN, science=science, **_clustering(_target(probe)))
    layout = campaign.layout
    # faults in measurements only: a calibration box's (measured alone, after the threshold)
    # raises once; the first held box's (measured right after it is made) kills its worker
    # once (the first measurement: no worker compiles calc_power only to be killed, ~30 s)
    layout.faults.parent.mkdir(parents=True, exist_ok=True)
    layout.faults.write_text(json.dumps({
        "r0001_z0.500": {"action": "raise", "stage": "measure"},
        "r0003_z0.500": {"action": "kill", "stage": "measure"},
    }))  # fmt: skip
    assert Runner(campaign, progress=False, monitoring=False).run() == {"done": N_BOXES,
                                                                        "failed": 0}  # fmt: skip
    journal = Journal(layout.journal).read()
    failed = [(e["task"], e["attempt"]) for e in journal
              if e["event"] == "clustering" and "error" in e]  # fmt: skip
    assert sorted(failed) == [("r0001_z0.500", 1), ("r0003_z0.500", 1)]
    # the measurement was retried alone: each box made and settled once, none lost or retried
    assert sorted(e["task"] for e in journal if e["event"] == "submitted") == sorted(
        f"r{r:04d}_z0.500" for r in range(N_BOXES)
    )
    assert not [e for e in journal if e["event"] in ("lost", "retry", "failed")]

    fixed = json.loads(layout.thresholds.read_text())["0.500"]["sfr_n"]
    assert fixed["boxes"] == ["r0000_z0.500", "r0001_z0.500", "r0002_z0.500"]
    target = campaign.clustering.samples[1].number_density
    calibration = [samples.read(layout.samples(t)) for t in fixed["boxes"]]
    assert fixed["threshold"] == samples.ensemble_threshold(calibration, "sfr_n", "sfr", target)

    counts = []
    for r in range(N_BOXES):
        tid = f"r{r:04d}_z0.500"
        record = power.read_record(layout.clustering(tid))
        assert set(record["samples"]) == {"all", "sfr_n", "massive"}
        sfr = record["samples"]["sfr_n"]
        assert sfr["attrs"]["threshold"] == fixed["threshold"]
        box = samples.read(layout.samples(tid))
        assert sfr["attrs"]["n_objects"] == (box["log10_sfr"] >= fixed["threshold"]).sum()
        counts.append(sfr["attrs"]["n_objects"])
        assert record["samples"]["all"]["attrs"]["below_completeness"]
        assert record["samples"]["massive"]["attrs"]["threshold"] == 9.5
        assert np.all(np.isfinite(sfr["real"])) and sfr["real"].shape == (3, 3)
    assert len(set(counts)) > 1  # cut at one threshold: the counts fluctuate box to box
    volume = float(record["attrs"]["box_size"]) ** 3
    assert np.mean(counts[:3]) / volume == pytest.approx(target, rel=0.1)
    events = [e for e in journal if e["event"] == "clustering" and "samples" in e]
    assert sorted(e["task"] for e in events) == [f"r{r:04d}_z0.500" for r in range(N_BOXES)]

    # a rerun redoes nothing; a lost record is measured again, alone
    stamps = {r: layout.clustering(f"r{r:04d}_z0.500").stat().st_mtime_ns for r in range(6)}
    layout.clustering("r0004_z0.500").unlink()
    status = campaign_status(campaign).clustering
    assert (status["measured"], status["done"]) == (N_BOXES - 1, N_BOXES)
    assert status["thresholds"] == {"0.500": {"sfr_n": fixed["threshold"]}}
    assert Runner(campaign, progress=False, monitoring=False).run() == {"done": 0, "failed": 0}
    for r in range(N_BOXES):
        changed = layout.clustering(f"r{r:04d}_z0.500").stat().st_mtime_ns != stamps.get(r)
        assert changed == (r == 4), r

    # the workers compiled into the cache the environment names (tests/conftest.py)
    assert any(Path(os.environ["JAX_COMPILATION_CACHE_DIR"]).iterdir())

    from covmocks.cli import main
    from covmocks.report import page as report

    assert main.main(["covariance", "-q", str(campaign.path)]) == 0
    tree = ensemble.read(layout.covariance)
    group = tree["z0.500"]["sfr_n"]["real"]
    assert group["attrs"]["n_realizations"] == N_BOXES
    assert group["covariance"].shape == (9, 9)  # nmesh 16: 3 bins of k_f below Nyquist/2
    page = report.build_report(campaign).read_text()
    section = page.split('id="clustering"')[1].split("<h2")[0]
    assert section.count("data:image/png") >= 1 and "sfr_n" in section
