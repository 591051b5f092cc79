"""Plans: tasks and states, the campaign directory, re-planning, estimates, the CLI verbs."""

import json
import logging
import os
import shutil
from pathlib import Path

import pytest
import yaml

from covmocks.campaign import CONFIGS, Campaign
from covmocks.cli import main
from covmocks.core.errors import CovmocksError
from covmocks.core.layout import Layout, task_id
from covmocks.galaxies.registry import MODELS
from covmocks.workflow.estimate import estimate
from covmocks.workflow.metadata import read_manifest, write_plan
from covmocks.workflow.plan import make_plan
from tests.conftest import DATA, campaign_file, deep_merge

REPO = Path(__file__).resolve().parents[1]
CAMPAIGNS = REPO / "campaigns"
SHARED_DATA = DATA.parent  # holds Mini_N64_L32, as $COVMOCKS_DATA of mini_abacus.yaml

# Layers over the factory's default campaign (tests/conftest.py).
SYNTHETIC = {
    "campaign": {"name": "syn", "seed": 3},
    "science": {"realizations": {"first": 2, "last": 4, "exclude": [3]}, "redshifts": [0.0, 1.1]},
    "resources": {"by_redshift": {0.0: {"nodes": 1, "walltime_s": 50}}},
}
ABACUS = {
    "campaign": {"name": "aba", "seed": 3},
    "science": {
        "source": "abacus",
        "n_hosts": None,
        "input": "sims/ph{realization:03d}/halos/z{redshift:.3f}",
        "realizations": [0, 1],
        "redshifts": [0.0, 1.0],
    },
}


def line_of(path: Path, text: str) -> int:
    """The number of the one line of ``path`` that reads ``text`` (stripped)."""
    lines = [n for n, line in enumerate(path.read_text().splitlines(), 1) if line.strip() == text]
    assert len(lines) == 1, (path, text, lines)
    return lines[0]


def finish(task, wall_s=10.0, file_bytes=1000) -> None:
    """Pretend the runner finished ``task``: its catalog, then its QA record."""
    task.output.parent.mkdir(parents=True, exist_ok=True)
    task.output.write_bytes(b"catalog " + task.task_id.encode())
    task.qa_record.parent.mkdir(parents=True, exist_ok=True)
    task.qa_record.write_text(json.dumps({"wall_s": wall_s, "file_bytes": file_bytes}))


def fake_abacus(root: Path, realization: int, redshift: float, slab=True) -> None:
    halo_info = root / f"sims/ph{realization:03d}/halos/z{redshift:.3f}/halo_info"
    halo_info.mkdir(parents=True)
    if slab:
        (halo_info / "halo_info_000.asdf").touch()


def test_tasks_name_paths_and_resources(make_campaign):
    c = make_campaign(SYNTHETIC)
    plan = make_plan(c)
    assert [t.task_id for t in plan.tasks] == [
        "r0002_z0.000", "r0002_z1.100", "r0004_z0.000", "r0004_z1.100"
    ]  # fmt: skip
    assert task_id(3, 1.1) == "r0003_z1.100"
    t = plan.tasks[1]
    d = c.directory
    assert (t.realization, t.redshift, t.snapshot, t.source, t.input) == (
        2,
        1.1,
        1100,
        "synthetic",
        None,
    )
    assert t.output == c.layout.catalog(2, 1.1) == d / "catalogs" / "r0002" / "mock_z1.100.hdf5"
    assert t.qa_record == c.layout.qa_record(t.task_id) == d / "qa" / "r0002_z1.100.json"
    assert t.log_stem == c.layout.log_stem(t.task_id) == d / "logs" / "r0002_z1.100"
    assert t.layout == c.layout
    assert t.state == "todo" and plan.counts == {"done": 0, "todo": 4, "blocked": 0}
    assert plan.tasks[0].resources.walltime_s == 50
    assert t.resources.walltime_s == c.execution.task_walltime_s
    assert not d.exists(), "planning in memory writes nothing"


def test_write_plan_makes_the_directory_and_metadata(make_campaign):
    c = make_campaign(SYNTHETIC)
    plan = write_plan(c)
    d, layout = c.directory, c.layout
    assert {p.name for p in d.iterdir()} == {"metadata", "catalogs", "logs", "qa"}
    assert {p.name for p in layout.metadata.iterdir()} == {
        "campaign.yaml", "config.json", "science.json", "provenance.json", "plan.jsonl",
        "plan.json",
    }  # fmt: skip
    assert layout.campaign_file.read_bytes() == c.path.read_bytes()
    config = json.loads(layout.config.read_text())
    assert config["values"]["campaign"]["seed"] == 3
    seed_line = line_of(c.path, "seed: 3")
    assert config["sources"]["campaign.seed"] == f"campaign file {c.path.name}:{seed_line}"
    prov = json.loads(layout.provenance.read_text())
    assert {"software", "git_commit", "host", "user", "time_utc"} <= set(prov)
    assert "covmocks" in prov["software"]
    science = json.loads(layout.science.read_text())
    assert science["record"]["campaign.seed"] == 3 and len(science["sha256"]) == 64
    assert science["record"]["input"] is None  # synthetic halos: their record is their identity
    summary = json.loads(layout.plan_summary.read_text())
    assert summary["counts"] == {"done": 0, "todo": 4, "blocked": 0} and summary["tasks"] == 4
    rows = read_manifest(layout)
    assert [r["task_id"] for r in rows] == [t.task_id for t in plan.tasks]
    assert rows[0] == {
        "task_id": "r0002_z0.000", "realization": 2, "redshift": 0.0, "snapshot": 0,
        "state": "todo", "source": "synthetic", "input": None, "cleaning": None,
        "output": "catalogs/r0002/mock_z0.000.hdf5", "qa_record": "qa/r0002_z0.000.json",
        "log_stem": "logs/r0002_z0.000", "nodes": 1, "ranks": 1, "gpus": 0, "walltime_s": 50.0,
    }  # fmt: skip


def test_missing_inputs_are_blocked_until_they_appear(tmp_path, make_campaign, caplog):
    c = make_campaign(ABACUS)
    with caplog.at_level(logging.WARNING, logger="covmocks.workflow.plan"):
        plan = make_plan(c)
    assert plan.counts == {"done": 0, "todo": 0, "blocked": 4}
    assert "4 of 4 tasks blocked: 4 inputs missing (halo or cleaned catalogs), e.g. " in caplog.text
    assert str(tmp_path / "sims/ph000/halos/z0.000") in caplog.text
    assert plan.missing_inputs()[0] == str(tmp_path / "sims/ph000/halos/z0.000")

    fake_abacus(tmp_path, 1, 1.0)
    fake_abacus(tmp_path, 0, 1.0, slab=False)  # a directory without halo_info_*.asdf
    states = {t.task_id: t.state for t in make_plan(c).tasks}
    assert states == {"r0000_z0.000": "blocked", "r0000_z1.000": "blocked",
                      "r0001_z0.000": "blocked", "r0001_z1.000": "todo"}  # fmt: skip


def test_hdf5_inputs_are_files(tmp_path, make_campaign):
    c = make_campaign(
        ABACUS, science={"source": "hdf5", "input": "halos_{realization}_{redshift:.1f}.h5"}
    )
    assert make_plan(c).counts["blocked"] == 4
    (tmp_path / "halos_1_0.0.h5").touch()
    assert [t.task_id for t in make_plan(c).select("todo")] == ["r0001_z0.000"]


def test_done_needs_catalog_and_qa_record(make_campaign):
    c = make_campaign(SYNTHETIC)
    first, second, third = make_plan(c).tasks[:3]
    finish(first)
    second.output.parent.mkdir(parents=True, exist_ok=True)
    second.output.touch()  # a catalog without QA record: not finished
    third.qa_record.write_text("{}")  # a QA record without catalog: not finished
    assert [t.state for t in make_plan(c).tasks] == ["done", "todo", "todo", "todo"]


def test_an_empty_or_garbled_qa_record_does_not_count_as_done(make_campaign):
    """The completion marker cut to nothing by a node crash: the box is validated again.
    One cut short or garbled by hand: planning a run (which parses each record) plans the
    box again; a look (status) stats records only, and counts it done."""
    c = make_campaign(SYNTHETIC)
    tasks = make_plan(c).tasks[:4]
    for task in tasks:
        finish(task)
    tasks[1].qa_record.write_text("")
    tasks[2].qa_record.write_text('{"task_id": "r0000_z0.5')  # cut short
    tasks[3].qa_record.write_text("[1, 2]")  # JSON, not a record
    assert [t.state for t in make_plan(c).tasks][:4] == ["done", "todo", "done", "done"]
    assert [t.state for t in write_plan(c).tasks][:4] == ["done", "todo", "todo", "todo"]


def test_replanning_keeps_finished_work(make_campaign):
    c = make_campaign(SYNTHETIC)
    plan = write_plan(c)
    finish(plan.tasks[0])
    log = plan.tasks[0].log_stem.with_suffix(".out")
    log.write_text("log")
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (plan.tasks[0].output,
              plan.tasks[0].qa_record, log)}  # fmt: skip
    manifests = []
    for _ in range(2):
        replanned = write_plan(c)
        manifests.append(read_manifest(c.layout))
    assert replanned.counts == {"done": 1, "todo": 3, "blocked": 0}
    assert manifests[0] == manifests[1] and manifests[0][0]["state"] == "done"
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in before} == before


def test_changing_science_of_a_started_campaign_is_refused(make_campaign):
    c = make_campaign(SYNTHETIC)
    write_plan(c)
    cut = deep_merge(SYNTHETIC, {"science": {"log10_mhost_min_msun": 12.0}})
    write_plan(make_campaign(cut))  # no catalogs yet: allowed, and recorded
    finish(make_plan(c).tasks[0])
    with pytest.raises(CovmocksError, match=(
        r"already has catalogs .* different values of science.log10_mhost_min_msun .* "
        r"bump campaign.version"
    )):  # fmt: skip
        write_plan(c)
    with pytest.raises(CovmocksError, match="different values of campaign.seed"):
        write_plan(make_campaign(cut, campaign={"seed": 4}))
    with pytest.raises(CovmocksError, match="values of science.model_params"):
        write_plan(make_campaign(cut, science={"model_params": {"n_t_table": 40}}))
    # Execution, resources and parameters that only cut the work may change.
    write_plan(make_campaign(cut, execution={"max_in_flight": 1}, resources={"gpus": 1},
                             science={"model_params": {"batch_max": 4096}}))  # fmt: skip
    bumped = make_campaign(cut, campaign={"seed": 4, "version": 2})
    assert write_plan(bumped).counts["todo"] == 4 and bumped.directory.name == "syn_2"


def test_a_version_grows_and_shrinks_without_redoing_a_box(make_campaign):
    """Realizations and snapshots added, one realization excluded after its box was made: the
    same version re-plans; finished boxes stay done and untouched, the excluded box's catalog
    is set aside (kept, listed, out of the plan) and planned again once included."""
    c = make_campaign(SYNTHETIC)
    plan = write_plan(c)
    for task in plan.tasks[:3]:  # r2 (both snapshots) and r4 at z = 0
        finish(task)
    stamps = {t.output: t.output.stat().st_mtime_ns for t in plan.tasks[:3]}
    grown = make_campaign(
        SYNTHETIC,
        science={
            "realizations": {"first": 2, "last": 6, "exclude": [3]},
            "redshifts": [0.0, 1.1, 2.0],
        },
    )
    plan = write_plan(grown)
    assert plan.counts == {"done": 3, "todo": 9, "blocked": 0} and plan.set_aside == ()
    assert grown.directory == c.directory
    shrunk = make_campaign(SYNTHETIC, science={"realizations": [4, 5, 6], "redshifts": [0.0]})
    plan = write_plan(shrunk)
    assert plan.counts == {"done": 1, "todo": 2, "blocked": 0}
    assert plan.set_aside == ("r0002_z0.000", "r0002_z1.100")
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing removed or rewritten
    assert write_plan(c).counts["done"] == 3 and make_plan(c).set_aside == ()


def test_a_catalog_gone_behind_the_campaign_is_named(make_campaign, capsys):
    """A scratch purge removes a catalog and leaves its QA record: the box is to do again,
    and status names it apart from boxes never made."""
    c = make_campaign(SYNTHETIC)
    plan = write_plan(c)
    for task in plan.tasks[:2]:
        finish(task)
    plan.tasks[1].output.unlink()
    plan = make_plan(c)
    assert [t.state for t in plan.tasks[:3]] == ["done", "todo", "todo"]
    assert plan.catalogs_lost() == [plan.tasks[1].task_id]
    assert main.main(["status", str(c.path)]) == 0
    out = capsys.readouterr().out
    assert f"catalog gone (its QA record stays), to make again: {plan.tasks[1].task_id}" in out
    from covmocks.report.page import _completion
    from covmocks.workflow.status import campaign_status, task_states

    status = campaign_status(c, plan)
    html = _completion(plan, status, task_states(plan, [], None))
    assert f"to be made again (1): {plan.tasks[1].task_id}.</p>" in html


def test_estimate_from_profile_cost_figures(tmp_path, make_campaign):
    (tmp_path / "prof.yaml").write_text(yaml.safe_dump({
        "executor": {"workers_per_node": 4},
        "provider": {"max_blocks": 2, "nodes_per_block": 3},
        "resources": {"gpus": 1},
        "cost": {"seconds_per_task": 360, "seconds_by_redshift": {1.1: 720},
                 "gigabytes_per_task": 2},
    }))  # fmt: skip
    c = make_campaign(SYNTHETIC, execution={"profile": "prof.yaml", "max_in_flight": 100})
    est = estimate(c, make_plan(c))
    assert est.basis.startswith("profile prof.yaml: cost figures")
    assert est.remaining == 4 and est.done == 0 and est.nodes == 6
    assert est.seconds_per_task == pytest.approx(540)
    assert est.node_hours == pytest.approx(2 * (360 + 720) / 4 / 3600)
    assert est.gpu_hours == pytest.approx(2 * (360 + 720) / 3600)
    assert est.storage_bytes == pytest.approx(8e9) and est.done_bytes == 0
    assert est.wall_s == 720  # the longest task: 6 nodes hold all four at once
    assert estimate(c, make_plan(c), nodes=1).busy_nodes == 1


def test_estimate_from_measured_tasks(make_campaign):
    c = make_campaign(SYNTHETIC, execution={"max_in_flight": 1})
    plan = make_plan(c)
    finish(plan.tasks[0], wall_s=100, file_bytes=4000)  # z = 0.0
    finish(plan.tasks[1], wall_s=300, file_bytes=2000)  # z = 1.1
    finish(plan.tasks[2], wall_s=200, file_bytes=6000)  # z = 0.0
    est = estimate(c, make_plan(c), nodes=4)
    assert est.basis == "measured: medians of 3 QA records of this campaign"
    assert est.remaining == 1 and est.done == 3
    assert est.seconds_per_task == 300  # the z = 1.1 median, not the overall 200
    on_disk = [sum(os.stat(p).st_blocks * 512 for p in (t.output, t.qa_record))
               for t in plan.tasks[:3]]  # fmt: skip
    assert est.storage_bytes == sorted(on_disk)[1]  # the median box: every file, on disk
    assert est.done_bytes >= sum(on_disk)  # and the metadata
    workers = c.execution.executor.workers_per_node
    assert workers > 1  # the local profile's: a one-node task shares its node
    assert est.busy_nodes == pytest.approx(1 / workers) and est.wall_s == 300


def test_estimate_needs_enough_nodes_for_one_task(make_campaign):
    c = make_campaign(SYNTHETIC, resources={"by_redshift": {0.0: {"nodes": 3}}})
    with pytest.raises(CovmocksError, match="--nodes 2: some tasks need 3 nodes each"):
        estimate(c, make_plan(c), nodes=2)


def test_shipped_campaigns_plan():
    demo = make_plan(Campaign.load(CAMPAIGNS / "demo.yaml"))
    assert len(demo.tasks) == 12 and demo.counts["blocked"] == 0
    mini = make_plan(Campaign.load(CAMPAIGNS / "mini_abacus.yaml"))
    expected = "blocked" if not (SHARED_DATA / "Mini_N64_L32").is_dir() else "todo"
    assert len(mini.tasks) == 1 and mini.tasks[0].state in (expected, "done")
    roman = Campaign.load(CAMPAIGNS / "roman_grs_covariance.yaml")
    if Path(roman.science.input_path(3000, 0.5)).exists():
        pytest.skip("AbacusSummit is mounted here: the roman inputs are not all missing")
    assert make_plan(roman).counts == {"done": 0, "todo": 0, "blocked": 40000}


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """The shipped campaign files copied to tmp/campaigns, runs under tmp/campaign-runs."""
    shutil.copytree(CAMPAIGNS, tmp_path / "campaigns")
    monkeypatch.delenv("SCRATCH", raising=False)
    monkeypatch.setenv("COVMOCKS_DATA", str(SHARED_DATA))
    return tmp_path / "campaigns"


def test_cli_plan(shipped, capsys):
    assert main.main(["plan", str(shipped / "demo.yaml")]) == 0
    out = capsys.readouterr().out
    assert "campaign demo version 1: 12 tasks (4 realizations x 3 snapshots)" in out
    assert "done 0 todo 12 blocked 0" in out
    runs = shipped.parent / "campaign-runs" / "demo_1"
    assert len(read_manifest(Layout(runs))) == 12 and (runs / "qa").is_dir()

    assert main.main(["plan", "-q", str(shipped / "roman_grs_covariance.yaml")]) == 0
    out = capsys.readouterr().out
    assert "40000 tasks (2000 realizations x 20 snapshots)" in out
    blocked = "blocked until 40000 inputs appear (halo or cleaned catalogs), e.g.:\n  /global/cfs/"
    assert blocked in out
    rows = read_manifest(Layout(shipped.parent / "campaign-runs" / "roman_grs_covariance_1"))
    assert len(rows) == 40000 and rows[-1]["task_id"] == "r4999_z0.725"


def test_cli_plan_mini_abacus_is_runnable(shipped, mini_catalog_dir, capsys):
    assert main.main(["plan", str(shipped / "mini_abacus.yaml")]) == 0
    assert "done 0 todo 1 blocked 0" in capsys.readouterr().out


def test_cli_config_show(shipped, capsys):
    assert main.main(["config", "show", str(shipped / "roman_grs_covariance.yaml")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("# ") and "profile file -> campaign file -> override" in lines[0]
    shown = {line.split(":")[0]: line for line in lines[1:]}
    retries = line_of(shipped / "roman_grs_covariance.yaml", "retries: 3")
    backoff = line_of(CONFIGS / "perlmutter-gpu.yaml", "backoff_base_s: 30")
    assert shown["execution.retries"].endswith(
        f"# campaign file roman_grs_covariance.yaml:{retries}"
    )
    assert shown["execution.backoff_base_s"].endswith(
        f"# profile file perlmutter-gpu.yaml:{backoff}"
    )
    assert shown["execution.provider.partition"].endswith("# default")
    override = shown["resources.by_redshift[0.725].walltime_s"]
    assert "# override roman_grs_covariance.yaml:" in override


def test_cli_estimate(shipped, capsys):
    assert (
        main.main(["estimate", "-q", str(shipped / "roman_grs_covariance.yaml"), "--nodes", "8"])
        == 0
    )
    out = capsys.readouterr().out
    assert "basis       profile perlmutter-gpu: cost figures" in out
    assert "node-hours  833.3" in out and "GPU-hours   3333.3" in out
    assert "storage     20 TB to write" in out and "on 8 node(s)" in out


def test_cli_reports_bad_files_in_one_line_each(tmp_path, capsys):
    bad = campaign_file(tmp_path, SYNTHETIC, file="bad.yaml", science={"n_hosts": "many"})
    line = line_of(bad, "n_hosts: many")
    for verb in (["plan"], ["estimate"], ["config", "show"]):
        assert main.main([*verb, str(bad)]) == 2
        err = capsys.readouterr().err
        assert err == (f"covmocks: error: {bad}:{line} science.n_hosts: expected an integer, "
                       "got 'many'\n")  # fmt: skip
    assert main.main(["plan", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml: no such file" in capsys.readouterr().err


def test_make_plan_never_writes(tmp_path, make_campaign):
    c = make_campaign(ABACUS)
    make_plan(c)
    assert sorted(p.name for p in tmp_path.iterdir()) == [c.path.name]


def test_unwritable_campaign_directory_is_a_clean_error(tmp_path, capsys):
    (tmp_path / "a-file").touch()
    path = campaign_file(tmp_path, SYNTHETIC, outputs={"base": "a-file"})
    assert main.main(["plan", str(path)]) == 2
    assert "cannot write campaign directory" in capsys.readouterr().err


def test_catalogs_of_another_model_version_refuse_a_replan(make_campaign):
    c = make_campaign()
    finish(write_plan(c).tasks[0])
    science = json.loads(c.layout.science.read_text())
    assert science["record"]["science.model_version"] == MODELS["diffsky_sfh"].version
    science["record"]["science.model_version"] = "1.0"  # as the previous covmocks wrote it
    c.layout.science.write_text(json.dumps(science))
    with pytest.raises(CovmocksError, match="different values of science.model_version"):
        write_plan(c)


def test_estimate_counts_every_stage_and_the_measurement(make_campaign):
    """A box's seconds: its QA record's stages (generation and validation), plus the median
    time of its snapshot's clustering measurements, journaled after the record."""
    from covmocks.workflow.journal import Journal

    samples = {"samples": [{"name": "all", "select": "all"}]}
    c = make_campaign(SYNTHETIC, clustering=samples, execution={"max_in_flight": 1})
    plan = make_plan(c)
    for task, generate_s in ((plan.tasks[0], 100), (plan.tasks[2], 200)):  # z = 0.0
        finish(task)
        record = json.loads(task.qa_record.read_text())
        record["stages"] = {"generate_s": generate_s, "validate_s": 20}
        task.qa_record.write_text(json.dumps(record))
    journal = Journal(c.layout.journal)
    for task, seconds in ((plan.tasks[0], 30), (plan.tasks[2], 50)):
        journal.write(task.task_id, "clustering", samples={}, wall_s=seconds)
    journal.write(plan.tasks[0].task_id, "clustering", error="lost", attempt=1)
    journal.close()
    est = estimate(c, make_plan(c), nodes=4)
    # the median of 100 + 20 + 40 and 200 + 20 + 40 for the remaining tasks
    assert est.seconds_per_task == 210


def test_estimate_counts_everything_the_demo_wrote(demo):
    """What ``estimate`` says the finished demo holds is what ``du`` finds in its directory,
    within 10%: catalogs, QA records, statistics, samples, clustering records, logs, the
    journal, Parsl's run directories, the monitoring database, the metadata, the report
    and the covariance."""
    import subprocess

    campaign = demo.campaign
    est = estimate(campaign, make_plan(campaign))
    du = subprocess.run(["du", "-s", "-B1", str(campaign.directory)], capture_output=True,
                        text=True, check=True)  # fmt: skip
    on_disk = int(du.stdout.split()[0])
    assert est.done == 12 and est.remaining == 0
    assert est.done_bytes == pytest.approx(on_disk, rel=0.1), (est.done_bytes, on_disk)
