"""The campaign report: built from hand-made per-box records (no model run), self-contained,
naming outliers and failures, and rendered by a real browser without errors or requests."""

import base64
import io
import json
import re
import shutil
import subprocess
import threading

import numpy as np
import pytest

from covmocks.catalog import summary as statistics
from covmocks.catalog.summary import BoxStatistics
from covmocks.clustering import thresholds
from covmocks.report import outliers
from covmocks.report import page as report
from covmocks.report import records as records_module
from covmocks.workflow.journal import Journal
from covmocks.workflow.metadata import write_plan
from tests.test_statistics import _columns

CHROMIUM = "/usr/bin/chromium"
N_IMAGES = 8  # completion, SMF, SFR function, SHMR, fractions, cosmic densities, n, timing
OUTLIER, FAILED, IN_FLIGHT, PARTIAL = "r0003_z0.000", "r0007_z1.000", "r0006_z1.000", "r0005_z1.000"


def _box_statistics(rng, n_galaxies: int) -> BoxStatistics:
    is_central = rng.random(n_galaxies) < 0.6
    is_central[0] = True
    host = np.maximum.accumulate(np.where(is_central, np.arange(n_galaxies), 0))
    mhalo = rng.normal(11.8, 0.5, n_galaxies)
    mstar = np.clip(mhalo - 2.0 + rng.normal(0, 0.2, n_galaxies), 6, 12.5)
    sfr = mstar - 10.0 + rng.normal(0, 0.5, n_galaxies)
    stats = BoxStatistics()
    stats.add(_columns(mstar, sfr, mhalo, is_central, host,
                       quenched=rng.random(n_galaxies) < 0.3), 0)  # fmt: skip
    n_probe = n_galaxies // 2  # galaxies of the halos below the cut: lighter
    stats.add_probe({"log10_mstar_surviving": mstar[:n_probe] - 1.0,
                     "log10_sfr": sfr[:n_probe] - 1.0})  # fmt: skip
    return stats


def write_box(layout, task_id: str, realization: int, redshift: float, n_galaxies: int,
              seed: int, *, qa: bool = True, wall_s: float = 30.0) -> None:  # fmt: skip
    """A box's statistics file (as generator.write_statistics writes it) and QA record."""
    stats = _box_statistics(np.random.default_rng(seed), n_galaxies)
    summary = stats.summary(box_size=50.0, h=0.7, log10_mhost_min_msun=11.0,
                            log10_msub_min_msun=10.5, probe_fraction=1.0)  # fmt: skip
    attrs = {"realization": realization, "snapshot": 7, "redshift": redshift,
             "snapshot_redshift": redshift, "seed": 1, "model_name": "diffsky_sfh",
             "model_version": "0.3.11", "box_size": 50.0, "h": 0.7, "Om0": 0.3,
             "t_obs_gyr": 13.0, "catalog": f"catalogs/{task_id}.hdf5"}  # fmt: skip
    stats.write(layout.statistics(task_id), {**attrs, **summary})
    if qa:
        record = {"task_id": task_id, "wall_s": wall_s, "file_bytes": 1000,
                  "peak_rss_bytes": (1 + realization) * 2**30,
                  "checks": {"schema_complete": True}}  # fmt: skip
        layout.qa_record(task_id).write_text(json.dumps(record))


@pytest.fixture
def campaign_with_records(make_campaign):
    """8 realizations x 2 snapshots: r0003_z0.000 has 10x the galaxies; r0007_z1.000 failed;
    r0006_z1.000 is in flight (statistics written, no QA record yet); r0005_z1.000 has a QA
    record but a truncated statistics file; every other box is done."""
    campaign = make_campaign(science={"realizations": list(range(8)), "redshifts": [0.0, 1.0]})
    write_plan(campaign)
    layout = campaign.layout
    journal = Journal(layout.journal)
    for tid, r, z in _tasks(campaign):
        if tid == FAILED:
            journal.write(tid, "submitted")
            journal.write(tid, "failed", error="boom", attempt=3)
            continue
        n = 3000 if tid == OUTLIER else 300 + 7 * r
        write_box(layout, tid, r, z, n, seed=r * 10 + int(z), qa=tid != IN_FLIGHT,
                  wall_s=20.0 + r)  # fmt: skip
        if tid == IN_FLIGHT:
            journal.write(tid, "submitted")
            continue
        if tid == PARTIAL:
            path = layout.statistics(tid)
            path.write_bytes(path.read_bytes()[:2000])
        layout.catalog(r, z).parent.mkdir(parents=True, exist_ok=True)
        layout.catalog(r, z).touch()  # the plan's "done"; the report never opens it
        journal.write(tid, "submitted")
        journal.write(tid, "done", wall_s=20.0 + r)
    journal.close()
    return campaign


def _tasks(campaign):
    from covmocks.workflow.plan import make_plan

    return [(t.task_id, t.realization, t.redshift) for t in make_plan(campaign).tasks]


def _images(text: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', text)]


def _decode(png: bytes) -> np.ndarray:
    import matplotlib.image

    return matplotlib.image.imread(io.BytesIO(png), format="png")


def test_report_names_outlier_and_failure_and_embeds_every_figure(campaign_with_records):
    campaign = campaign_with_records
    path = report.build_report(campaign)
    assert path == campaign.layout.qa / "report.html" and path.is_file()
    assert not list(path.parent.glob(".report.html.tmp*"))
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text.lower() and "<link" not in text.lower()
    assert OUTLIER in text
    failures = text.split('id="failures"')[1].split("<h2")[0]
    assert FAILED in failures and "boom" in failures and f"logs/{FAILED}.err" in failures
    # 7 done at z=0 plus the outlier; 5 at z=1 (one failed, one in flight, one unreadable)
    assert "13 boxes in the statistics, of 16 planned" in text
    assert f"1 with a QA record skipped, statistics unreadable ({PARTIAL})" in text
    assert "Salpeter" in text and "Chabrier" in text and "0.63" in text
    images = _images(text)
    assert len(images) == N_IMAGES
    for png in images:
        pixels = _decode(png)
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.std() > 0.01
    assert "0.3.11" in text and "diffsky_sfh" in text  # provenance: model version from a box


def test_report_shows_each_samples_threshold_against_the_completeness_limit(make_campaign):
    samples = [{"name": "all", "select": "all"},
               {"name": "faint", "select": "mstar", "threshold": 6.0},
               {"name": "bright", "select": "mstar", "threshold": 12.0},
               {"name": "sfr_n", "select": "sfr", "number_density": 1e-3}]  # fmt: skip
    campaign = make_campaign(
        science={"realizations": [0, 1, 2], "redshifts": [0.0]},
        clustering={"samples": samples, "calibration_boxes": 2},
    )
    write_plan(campaign)
    for tid, r, z in _tasks(campaign):
        write_box(campaign.layout, tid, r, z, 400, seed=r)

    def section():
        text = report.build_report(campaign).read_text(encoding="utf-8")
        return text.split('id="completeness"')[1].split("<h2")[0]

    assert "not fixed yet" in section()  # sfr_n: its ensemble threshold is not calibrated
    assert thresholds.load(campaign.layout) == {}
    campaign.layout.thresholds.write_text(json.dumps({"0.000": {"sfr_n": {"threshold": 9.0}}}))
    limits = [statistics.read(campaign.layout.statistics(t))["attrs"]["log10_mstar_complete"]
              for t, _, _ in _tasks(campaign)]  # fmt: skip
    assert all(6.0 < limit < 12.0 for limit in limits)
    rows = {m[0]: m[1:] for m in re.findall(
        r"<tr><td class=l>z=[\d.]+</td><td class=l>(\w+)</td><td class=l>(\w+)</td>"
        r"<td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td>", section())}  # fmt: skip
    assert rows["faint"] == ("mstar", "6.000", f"{np.median(limits):.2f} "
                             f"[{min(limits):.2f}, {max(limits):.2f}]", "3 of 3")  # fmt: skip
    assert rows["bright"][1:] == ("12.000", rows["faint"][2], "0 of 3")
    assert rows["all"][3] == "every box"
    assert rows["sfr_n"][:2] == ("sfr", "9.000") and rows["sfr_n"][3] == "0 of 3"


def test_outliers_return_exactly_the_planted_box(campaign_with_records):
    records, skipped = records_module.load_records(campaign_with_records)
    assert skipped == [PARTIAL]
    assert {r.task_id for r in records} >= {OUTLIER} and len(records) == 13
    found = outliers.find(records)
    # ten times the galaxies: off in number density and in the mass function
    assert {f.task_id for f in found} == {OUTLIER}
    assert found[0].statistic == outliers.NUMBER_DENSITY and found[1].statistic.startswith("SMF")
    density = found[0]
    assert density.redshift == 0.0 and density.value > 5 * density.mean
    assert density.sigmas > report.N_SIGMA
    # z=0 has 8 boxes, z=1 5: a bar of 9 boxes calls none
    assert outliers.find(records, min_boxes=8) == found
    assert outliers.find(records, min_boxes=9) == []


def test_records_carry_wall_time_and_peak_memory(campaign_with_records):
    records, _ = records_module.load_records(campaign_with_records)
    for r in records:
        assert r.wall_s == 20.0 + r.realization and r.peak_rss_bytes == (1 + r.realization) * 2**30
    z0 = records_module.ensembles(records)[0]
    np.testing.assert_array_equal(z0.peak_rss_bytes, [(1 + r) * 2**30 for r in range(8)])
    text = report.build_report(campaign_with_records).read_text()
    assert "peak_rss_bytes" in text.split('id="timing"')[1].split("<h2")[0]


def test_pool_reads_the_same_records_as_one_process(campaign_with_records, monkeypatch):
    serial, skipped = records_module.load_records(campaign_with_records, workers=1)
    monkeypatch.setattr(records_module, "POOL_MIN_FILES", 1)
    pools = []

    class Spy(records_module.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            pools.append(kwargs["mp_context"].get_start_method())
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(records_module, "ProcessPoolExecutor", Spy)
    single = threading.active_count() == 1
    pooled, skipped_pooled = records_module.load_records(campaign_with_records, workers=2)
    assert pools == (["fork"] if single else [])  # never forks a process with other threads
    assert skipped == skipped_pooled and len(pooled) == len(serial) == 13
    for a, b in zip(serial, pooled, strict=True):
        assert (a.task_id, a.values, a.wall_s) == (b.task_id, b.values, b.wall_s)
        np.testing.assert_array_equal(a.sfr_all, b.sfr_all)
        np.testing.assert_array_equal(a.shmr[1], b.shmr[1])


def test_ensemble_units_and_md14(campaign_with_records):
    records, _ = records_module.load_records(campaign_with_records)
    (z0, z1) = records_module.ensembles(records)
    assert (z0.n, z1.n) == (8, 5) and z0.label == "0.000"
    volume = 50.0**3
    at_z0 = [r for r in records if r.redshift == 0.0]
    assert z0.tasks == [r.task_id for r in at_z0]
    np.testing.assert_allclose(z0.smf.sum(axis=1) * 0.1 * volume,
                               [r.smf_all.sum() for r in at_z0])  # fmt: skip
    np.testing.assert_allclose(z0.sfr_cum[:, 0] * volume, [r.sfr_all.sum() for r in at_z0])
    assert z0.shmr.sum() == sum(r.shmr[1].sum() for r in at_z0)
    assert report.md14_sfrd(0.0, chabrier=False) == pytest.approx(0.015 / (1 + 2.9**-5.6))
    assert report.md14_sfrd(1.0) == pytest.approx(0.63 * report.md14_sfrd(1.0, chabrier=False))
    # eq. 2 integrated: about 10^8.76 Msun/Mpc^3 today for Salpeter (MD14 fig. 11), falling
    assert 8.6 < np.log10(report.md14_smd(0.0, chabrier=False)) < 8.9
    smd = report.md14_smd(np.array([0.0, 1.0, 3.0]))
    assert np.all(np.diff(smd) < 0)


def test_report_while_nothing_has_finished(make_campaign):
    campaign = make_campaign()
    text = report.build_report(campaign).read_text()
    assert "0 boxes in the statistics, of 2 planned" in text
    assert "No finished box yet" in text and len(_images(text)) == 1  # the completion map


def test_watch_rebuilds_until_stopped_and_reuses_unchanged_records(campaign_with_records,
                                                                  monkeypatch):  # fmt: skip
    reads = []
    original = records_module._read_box
    monkeypatch.setattr(records_module, "_read_box",
                        lambda *a: reads.append(a[0]) or original(*a))  # fmt: skip
    # the unreadable box is read at every build: stop after the second
    path = report.watch(campaign_with_records, 0.01, stop=lambda: reads.count(PARTIAL) >= 2)
    assert path.is_file() and 'http-equiv="refresh"' in path.read_text()
    assert len(reads) == 14 + 1 and len(set(reads)) == 14  # the rest was not read again


def test_watch_ends_by_itself_when_no_driver_runs_and_every_box_is_done(make_campaign):
    campaign = make_campaign()  # 2 boxes, both done
    for r in (0, 1):
        write_box(campaign.layout, f"r{r:04d}_z0.000", r, 0.0, 200, seed=r)
        campaign.layout.catalog(r, 0.0).parent.mkdir(parents=True, exist_ok=True)
        campaign.layout.catalog(r, 0.0).touch()
    path = report.watch(campaign, 3600.0)  # returns after one build, not in an hour
    text = path.read_text()
    assert "2 boxes in the statistics, of 2 planned" in text and "refresh" not in text


def _netlog_page_requests(netlog) -> list[str]:
    """URLs the page asked for (URL_REQUEST_START_JOB with a page initiator), other than
    file: and data: URLs; chromium's own background requests carry 'not an origin'."""
    data = json.loads(netlog.read_text())
    kind = data["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in data["events"]:
        params = event.get("params") or {}
        url = params.get("url")  # only a job's start event carries it
        if event["type"] == kind and url and params.get("initiator") != "not an origin":
            if not url.startswith(("file:", "data:")):
                urls.append(url)
    return urls


def _chromium(page, tmp_path, name):
    shot, netlog = tmp_path / f"{name}.png", tmp_path / f"{name}.netlog.json"
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
         "--window-size=1400,3000", "--virtual-time-budget=10000", "--enable-logging=stderr",
         "--v=0", "--host-resolver-rules=MAP * ~NOTFOUND", f"--log-net-log={netlog}",
         "--disable-background-networking", "--no-first-run", page.as_uri()],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    return done, shot, netlog


@pytest.mark.slow
def test_report_renders_in_chromium_without_errors_or_requests(campaign_with_records, tmp_path):
    if not shutil.which(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not found (Debian: apt-get install chromium)")
    # the detectors work: a page that fetches from the network and throws is caught
    bad = tmp_path / "bad.html"
    bad.write_text('<img src="http://example.invalid/x.png"><script>undefinedFn()</script>')
    done, _, netlog = _chromium(bad, tmp_path, "bad")
    assert "Uncaught" in done.stderr and _netlog_page_requests(netlog)

    page = report.build_report(campaign_with_records)
    done, shot, netlog = _chromium(page, tmp_path, "report")
    assert done.returncode == 0, done.stderr[-2000:]
    for marker in ("Uncaught", "ERROR:CONSOLE", ":CONSOLE"):
        assert marker not in done.stderr, done.stderr[-2000:]
    assert _netlog_page_requests(netlog) == []
    from PIL import Image

    with Image.open(shot) as image:
        assert image.format == "PNG" and image.size == (1400, 3000)
        pixels = np.asarray(image.convert("L"), float)
    assert pixels.std() > 5  # text and figures, not a blank page
    assert (pixels < 128).mean() > 0.005
    for png in _images(page.read_text()):
        assert _decode(png).size


def test_report_command(campaign_with_records, capsys):
    from covmocks.cli import main

    assert main.main(["report", "-q", str(campaign_with_records.path)]) == 0
    out = capsys.readouterr().out.strip()
    assert out == str(campaign_with_records.layout.report)
    assert OUTLIER in campaign_with_records.layout.report.read_text()


def test_status_names_the_outlier(campaign_with_records, capsys):
    from covmocks.cli import main

    assert main.main(["status", "-q", "--outliers", str(campaign_with_records.path)]) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("outlier ")]
    assert len(lines) == 2 and all(x.startswith(f"outlier {OUTLIER} z=0: ") for x in lines)
    assert ": number density " in lines[0] and ": SMF log10 M* " in lines[1]


def test_status_says_when_a_snapshot_has_too_few_boxes_to_judge(make_campaign, capsys):
    from covmocks.cli import main

    campaign = make_campaign(science={"realizations": [0, 1, 2], "redshifts": [0.0]})
    write_plan(campaign)
    for tid, r, z in _tasks(campaign):
        write_box(campaign.layout, tid, r, z, 300 + 7 * r, seed=r)
        campaign.layout.catalog(r, z).parent.mkdir(parents=True, exist_ok=True)
        campaign.layout.catalog(r, z).touch()
    assert main.main(["status", "-q", "--outliers", str(campaign.path)]) == 0
    out = capsys.readouterr().out
    assert "outliers z=0.000: too few boxes to judge (3 done, 5 needed)" in out
