"""The driver's sample gate, without Parsl: a snapshot's number-density threshold is fixed
only from calibration boxes that are done, boxes wait for it and are released with it, a
made box is measured exactly once, and a resumed driver owes nothing it does not need."""

import json

import numpy as np
import pytest

from covmocks.clustering.samples import SampleCollector, rules_for
from covmocks.workflow.driver import Runner
from covmocks.workflow.journal import Journal
from covmocks.workflow.metadata import write_plan
from covmocks.workflow.plan import make_plan
from tests.conftest import LOCAL_RUN

SAMPLES = {"samples": [{"name": "n", "select": "sfr", "number_density": 3e-3}],
           "calibration_boxes": 2}  # fmt: skip


@pytest.fixture
def campaign(make_campaign):
    return make_campaign(LOCAL_RUN, science={"realizations": [0, 1, 2, 3], "redshifts": [0.5]},
                         clustering=SAMPLES)  # fmt: skip


def _sample_file(campaign, task, seed: int, n: int = 3000) -> None:
    rng = np.random.default_rng(seed)
    kept = SampleCollector(rules_for(campaign.clustering, task.redshift), 100.0)
    kept.add({"pos": rng.uniform(0, 100, (n, 3)), "vel": rng.normal(0, 300, (n, 3)),
              "log10_mstar_surviving": rng.normal(9.5, 0.8, n), "log10_sfr": rng.normal(-0.5, 1, n),
              "is_central": rng.random(n) < 0.7}, 0)  # fmt: skip
    kept.write(campaign.layout.samples(task.task_id), {"box_size": 100.0, "redshift": 0.5,
                                                       "task_id": task.task_id})  # fmt: skip


def _done(campaign, task, seed: int) -> None:
    """A made box: sample file, catalog and QA record (the plan's done)."""
    _sample_file(campaign, task, seed)
    task.output.parent.mkdir(parents=True, exist_ok=True)
    task.output.write_text("catalog")
    task.qa_record.parent.mkdir(parents=True, exist_ok=True)
    task.qa_record.write_text("{}")


def _work(campaign):
    plan = write_plan(campaign)  # as Runner.run does first
    runner = Runner(campaign, progress=False, monitoring=False)
    return runner, plan, runner._work(plan, runner.runnable(plan))


def _ids(items) -> list[tuple]:
    return [(t.task_id, generate, cuts is not None) for t, generate, cuts in items]


def test_calibration_boxes_run_first_then_release_the_others_with_the_threshold(campaign):
    runner, plan, items = _work(campaign)
    # r0, r1 calibrate: made without a measurement; r2, r3 wait
    assert _ids(items) == [("r0000_z0.500", True, False), ("r0001_z0.500", True, False)]
    t0, t1, t2, t3 = plan.tasks
    _done(campaign, t0, 0)
    assert runner.gate.settled(t0, made=True, measured=False) == []  # r1 not made yet
    _done(campaign, t1, 1)
    released = runner.gate.settled(t1, made=True, measured=False)
    assert sorted(_ids(released)) == [
        ("r0000_z0.500", False, True), ("r0001_z0.500", False, True),
        ("r0002_z0.500", True, True), ("r0003_z0.500", True, True),
    ]  # fmt: skip
    fixed = json.loads(campaign.layout.thresholds.read_text())["0.500"]["n"]
    assert fixed["boxes"] == ["r0000_z0.500", "r0001_z0.500"]
    assert runner.gate.waiting() == []


def test_a_sample_file_without_a_done_box_never_calibrates(campaign):
    t0, t1 = make_plan(campaign).tasks[:2]
    _sample_file(campaign, t0, 0)  # r0's attempt died after writing it, then failed for good
    _sample_file(campaign, t1, 1)  # r1's attempt was killed after writing it; r1 is todo
    journal = Journal(campaign.layout.journal)
    journal.write(t0.task_id, "failed", error="walltime")
    journal.close()
    runner, plan, items = _work(campaign)
    assert not campaign.layout.thresholds.exists()
    assert _ids(items) == [("r0001_z0.500", True, False)]  # r0 failed: not run again
    _done(campaign, plan.tasks[1], 1)
    released = runner.gate.settled(plan.tasks[1], made=True, measured=False)
    fixed = json.loads(campaign.layout.thresholds.read_text())["0.500"]["n"]
    assert fixed["boxes"] == ["r0001_z0.500"]  # the failed box's file is left out
    assert ("r0001_z0.500", False, True) in _ids(released)


def test_a_resumed_driver_measures_only_what_is_owed(make_campaign):
    sample = {"name": "m", "select": "mstar", "threshold": 10.0, "redshifts": [0.5]}
    campaign = make_campaign(LOCAL_RUN, science={"realizations": [0, 1], "redshifts": [0.5, 1.0]},
                             clustering={"samples": [sample]})  # fmt: skip
    plan = make_plan(campaign)
    for i, task in enumerate(plan.tasks):
        if task.redshift == 0.5:
            _done(campaign, task, i)
        else:  # a snapshot that measures nothing: nothing owed
            task.output.parent.mkdir(parents=True, exist_ok=True)
            task.output.write_text("catalog")
            task.qa_record.write_text("{}")
    campaign.layout.clustering("r0000_z0.500").write_text("measured")
    _, _, items = _work(campaign)
    assert _ids(items) == [("r0001_z0.500", False, True)]


def test_a_made_calibration_box_without_its_sample_file_does_not_hold_the_others(campaign):
    plan = make_plan(campaign)
    _done(campaign, plan.tasks[0], 0)
    plan.tasks[1].output.parent.mkdir(parents=True, exist_ok=True)
    plan.tasks[1].output.write_text("catalog")  # done, but its sample file is gone
    plan.tasks[1].qa_record.write_text("{}")
    runner, _, items = _work(campaign)
    fixed = json.loads(campaign.layout.thresholds.read_text())["0.500"]["n"]
    assert fixed["boxes"] == ["r0000_z0.500"]
    assert sorted(_ids(items)) == [("r0000_z0.500", False, True), ("r0002_z0.500", True, True),
                                   ("r0003_z0.500", True, True)]  # fmt: skip
    assert runner.gate.waiting() == []
