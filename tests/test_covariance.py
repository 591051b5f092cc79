"""The clustering covariance: assembled from per-box clustering records drawn from a known
mean and covariance (no model run, no power spectrum measured), incremental, refusing mixed
binnings, and shown in the report's "Clustering" section."""

import base64
import io
import logging
import os
import re
from types import SimpleNamespace

import numpy as np
import pytest

from covmocks.clustering import power
from covmocks.core.errors import CovmocksError
from covmocks.covariance import ensemble, estimators
from covmocks.report import clustering
from covmocks.workflow.plan import make_plan

NK = 4
P = 3 * NK
K_MID = (np.arange(NK) + 0.5) * 0.05
N_MODES = np.array([26, 122, 306, 538])
SETTINGS = {"nmesh": 64, "k_max": 0.2, "dk_fundamentals": 1, "paste": "TSC", "interlaced": True,
            "compensated": True, "abacusutils_version": "2.1.2"}  # fmt: skip


def _truth() -> tuple[np.ndarray, np.ndarray]:
    """A mean data vector [P0, P2, P4] and a dense covariance with 10-20% scatter."""
    rng = np.random.default_rng(42)
    p0 = 2e4 / (1 + K_MID / 0.1)
    mean = np.concatenate([p0, 0.5 * p0, 0.1 * p0])
    a = rng.normal(size=(P, P))
    c = a @ a.T / P + np.eye(P)
    d = np.sqrt(np.diag(c))
    sigma = np.abs(mean) * rng.uniform(0.1, 0.2, P)
    return mean, c / np.outer(d, d) * np.outer(sigma, sigma)


MEAN, COV = _truth()
RSD = 1.3  # the redshift-space mean is RSD * MEAN; each line of sight draws from COV


def _sample(rng, *, k_mid=K_MID, below=False) -> dict:
    real = rng.multivariate_normal(MEAN, COV).reshape(3, NK)
    los = [rng.multivariate_normal(RSD * MEAN, COV).reshape(3, NK) for _ in range(3)]
    return {"k_mid": k_mid, "k_avg": k_mid * 1.01, "n_modes": N_MODES, "real": real,
            "redshift_x": los[0], "redshift_y": los[1], "redshift_z": los[2],
            "redshift": np.mean(los, axis=0), "n_objects": 1000, "number_density": 1e-3,
            "shot_noise": 1e3, "selection": {"select": "log10_mstar", "threshold": 10.5,
            "threshold_origin": "number_density", "below_completeness": below}}  # fmt: skip


def write_box(campaign, task, *, samples=("LRG", "ELG"), below=(), settings=SETTINGS, **kw):
    rng = np.random.default_rng(1000 + task.realization * 7 + int(10 * task.redshift))
    attrs = {"task_id": task.task_id, "realization": task.realization,
             "redshift": task.redshift, "box_size": 500.0, "model_name": "diffsky_sfh",
             "model_version": "0.3.11", "seed": 1, "estimator": settings}  # fmt: skip
    data = {name: _sample(rng, below=name in below, **kw) for name in samples}
    power.write_record(campaign.layout.clustering(task.task_id), data, attrs)


def _campaign(make_campaign, realizations, redshifts=(0.5,)):
    campaign = make_campaign(science={"realizations": list(range(realizations)),
                                      "redshifts": list(redshifts)})  # fmt: skip
    return campaign, make_plan(campaign)


def test_estimates_match_the_truth_within_sampling_error(make_campaign):
    campaign, plan = _campaign(make_campaign, 400)
    for task in plan.tasks:
        write_box(campaign, task, samples=("LRG",))
    path = ensemble.build(campaign, plan)
    assert path == campaign.layout.covariance and not list(path.parent.glob(".covariance*"))
    data = ensemble.read(path)
    root = data["attrs"]
    assert root["campaign"] == campaign.name and root["campaign_version"] == campaign.version
    assert (root["model_name"], root["model_version"]) == ("diffsky_sfh", "0.3.11")
    assert root["estimator"] == SETTINGS and root["covmocks_version"] == "0.1.0"
    assert root["n_boxes_used"] == 400 and root["boxes_per_group"] == {"z0.500/LRG": 400}
    assert root["shot_noise_subtracted"] is False or root["shot_noise_subtracted"] == 0
    np.testing.assert_array_equal(data["z0.500"]["k_mid"], K_MID)
    np.testing.assert_array_equal(data["z0.500"]["n_modes"], N_MODES)
    group = data["z0.500"]["LRG"]
    assert group["tasks"] == [t.task_id for t in plan.tasks]
    np.testing.assert_array_equal(group["realizations"], np.arange(400))
    assert group["attrs"]["select"] == "log10_mstar" and group["attrs"]["threshold"] == 10.5
    n = 400
    # each line of sight drawn independently: one line of sight has COV, the mean of three COV/3
    stats = (("real", MEAN, COV), ("redshift", RSD * MEAN, COV),
             ("redshift_mean3", RSD * MEAN, COV / 3))  # fmt: skip
    for stat, mean, cov in stats:
        s = group[stat]
        assert s["attrs"]["n_realizations"] == n and s["attrs"]["p"] == P
        sigma = np.sqrt(np.diag(cov))
        assert np.abs((s["mean"] - mean) / (sigma / np.sqrt(n))).max() < 5
        # Var of a sample covariance element: (C_ii C_jj + C_ij^2) / (N - 1)
        err = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / (n - 1))
        assert np.abs((s["covariance"] - cov) / err).max() < 5
        np.testing.assert_allclose(s["covariance"], s["covariance"].T)
        np.testing.assert_allclose(np.diag(s["correlation"]), 1.0, rtol=1e-12)
        assert s["attrs"]["hartlap"] == pytest.approx((n - P - 2) / (n - 1))
        assert s["attrs"]["hartlap_note"] == ""
        # converged: the first 200 realizations agree with all 400
        assert s["attrs"]["n_half"] == 200
        assert np.abs(s["diag_ratio_half"] - 1).max() < 0.35
        assert len(s["eigenvalues"]) == estimators.N_EIGEN
        assert s["attrs"]["convergence"] == "consistent with noise"
        assert np.all(np.diff(s["eigenvalues"]) <= 0)
        np.testing.assert_allclose(s["eigenvalues_half"], s["eigenvalues"], rtol=0.35)


def test_estimate_is_numpy_s_covariance_and_halves_by_realization():
    x = np.random.default_rng(3).normal(size=(20, 6))
    realizations = np.arange(20)[::-1]  # the first half: the last ten rows
    e = estimators.estimate(x, realizations)
    np.testing.assert_allclose(e["covariance"], np.cov(x, rowvar=False, ddof=1))
    np.testing.assert_allclose(e["correlation"], np.corrcoef(x, rowvar=False))
    half = np.cov(x[10:], rowvar=False)
    np.testing.assert_allclose(e["diag_ratio_half"], np.diag(half) / np.diag(e["covariance"]))
    assert e["attrs"]["hartlap"] == pytest.approx((20 - 6 - 2) / 19)
    few = estimators.estimate(x[:8], np.arange(8))  # N = 8 <= p + 2
    assert (
        np.isnan(few["attrs"]["hartlap"]) and "N = 8 <= p + 2 = 8" in few["attrs"]["hartlap_note"]
    )


def test_incremental_builds_count_the_finished_boxes_and_skip_unreadable(make_campaign, caplog):
    campaign, plan = _campaign(make_campaign, 10, (0.5, 1.0))
    first = [t for t in plan.tasks if t.realization < 5]
    for task in first:
        write_box(campaign, task)
    data = ensemble.read(ensemble.build(campaign, plan))
    assert data["attrs"]["n_boxes_used"] == 10 and data["attrs"]["n_boxes_missing"] == 10
    for z in ("z0.500", "z1.000"):
        for sample in ("LRG", "ELG"):
            assert data[z][sample]["attrs"]["n_realizations"] == 5
            assert data[z][sample]["real"]["attrs"]["n_realizations"] == 5
            assert np.isnan(data[z][sample]["real"]["attrs"]["hartlap"])  # 5 <= p + 2
            assert "p + 2" in data[z][sample]["real"]["attrs"]["hartlap_note"]
    truncated, partial = "r0007_z1.000", "r0008_z0.500"
    for task in plan.tasks:
        if task.realization >= 5:
            write_box(campaign, task)
    path = campaign.layout.clustering(truncated)
    path.write_bytes(path.read_bytes()[:1500])
    import h5py

    with h5py.File(campaign.layout.clustering(partial), "a") as f:
        del f["ELG/redshift_y"]  # as if a writer died midway
    caplog.set_level(logging.WARNING, logger="covmocks.covariance.ensemble")
    data = ensemble.read(ensemble.build(campaign, plan))
    root = data["attrs"]
    assert root["n_boxes_used"] == 18 and root["n_boxes_missing"] == 0
    assert root["n_boxes_skipped"] == 2 and root["skipped"] == [truncated, partial]
    assert partial in caplog.text and truncated in caplog.text
    assert data["z0.500"]["LRG"]["attrs"]["n_realizations"] == 9
    assert partial not in data["z0.500"]["LRG"]["tasks"]
    assert data["z1.000"]["ELG"]["real"]["attrs"]["n_realizations"] == 9
    assert root["boxes_per_group"] == {f"{z}/{s}": 9 for z in ("z0.500", "z1.000")
                                       for s in ("LRG", "ELG")}  # fmt: skip
    # a cache kept between loads rereads only the records that changed
    cache: dict = {}
    boxes, skipped, _ = ensemble.load(campaign, plan, cache=cache)
    assert len(boxes) == 18 and skipped == [truncated, partial] and len(cache) == 18
    before = {p: entry[1] for p, entry in cache.items()}
    write_box(campaign, plan.tasks[0], samples=("LRG",))
    boxes, _, _ = ensemble.load(campaign, plan, cache=cache)
    assert (
        list(boxes[0][1]["samples"]) == ["LRG"]
        and boxes[1][1] is before[campaign.layout.clustering(plan.tasks[1].task_id)]
    )


def test_a_box_with_another_binning_or_estimator_is_an_error(make_campaign):
    campaign, plan = _campaign(make_campaign, 6)
    for task in plan.tasks:
        write_box(campaign, task)
    odd = plan.tasks[4]
    write_box(campaign, odd, k_mid=K_MID * 1.1)
    with pytest.raises(CovmocksError, match=f"box {odd.task_id}: k binning .* differs from box "
                       f"{plan.tasks[0].task_id}"):  # fmt: skip
        ensemble.build(campaign, plan)
    assert not campaign.layout.covariance.exists()
    write_box(campaign, odd, settings={**SETTINGS, "nmesh": 128})
    with pytest.raises(CovmocksError, match=f"box {odd.task_id}: clustering estimator .*nmesh"):
        ensemble.build(campaign, plan)
    # another abacusutils release with the same settings is not another estimator
    write_box(campaign, odd, settings={**SETTINGS, "abacusutils_version": "2.2.0"})
    assert ensemble.read(ensemble.build(campaign, plan))["attrs"]["n_boxes_used"] == 6


def test_below_completeness_boxes_are_used_counted_and_flagged(make_campaign):
    campaign, plan = _campaign(make_campaign, 8)
    flagged = {1, 4, 6}
    for task in plan.tasks:
        write_box(campaign, task, below=("ELG",) if task.realization in flagged else ())
    data = ensemble.read(ensemble.build(campaign, plan))
    elg, lrg = data["z0.500"]["ELG"], data["z0.500"]["LRG"]
    assert elg["attrs"]["n_realizations"] == 8 and elg["attrs"]["n_below_completeness"] == 3
    np.testing.assert_array_equal(elg["below_completeness"], [r in flagged for r in range(8)])
    assert lrg["attrs"]["n_below_completeness"] == 0
    assert data["attrs"]["below_completeness_per_group"] == {"z0.500/LRG": 0, "z0.500/ELG": 3}


def _images(text: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', text)]


def test_report_section_renders_from_records_or_the_file(make_campaign, monkeypatch):
    import matplotlib.image

    campaign, plan = _campaign(make_campaign, 12, (0.5, 1.0))
    assert clustering.section(campaign, plan) is None
    for task in plan.tasks:
        write_box(campaign, task, below=("LRG",) if task.task_id == "r0002_z1.000" else ())
    text = clustering.section(campaign)
    assert "assembled from the records" in text and "24 boxes with a clustering record" in text
    images = _images(text)
    assert len(images) == 2  # one figure per snapshot
    for png in images:
        pixels = matplotlib.image.imread(io.BytesIO(png), format="png")
        assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.std() > 0.01
    assert "Shot noise not subtracted" in text and "(Mpc/h)^2" in text and "h/Mpc" in text
    assert "http" not in text and "<script" not in text
    z1 = text.split("z=1.000")[1]
    row = z1.split("<td class=l>LRG</td>")[1].split("</tr>")[0]
    assert (
        row.startswith("<td class=l>log10_mstar &gt;= 10.5000") and "<td>12</td><td>1</td>" in row
    )
    monkeypatch.setattr(clustering, "_figure", lambda *args: "")  # drawn above
    path = ensemble.build(campaign, plan)
    records = [campaign.layout.clustering(t.task_id) for t in plan.tasks]
    built = path.stat().st_mtime
    for record in records:
        os.utime(record, (built - 10, built - 10))
    assert "read from covariance.hdf5" in clustering.section(campaign, plan)
    os.utime(records[3], (built + 10, built + 10))  # a box finished since
    assert "assembled from the records" in clustering.section(campaign, plan)
    write_box(campaign, plan.tasks[5], k_mid=K_MID * 2)
    text = clustering.section(campaign, plan)
    assert "No covariance" in text and plan.tasks[5].task_id in text


def test_verdict_names_what_makes_a_covariance_unusable(make_campaign):
    """A NaN bin (the old production binning's empty first bin), an asymmetric matrix and a
    sample the campaign measures but the file lacks: one line each, naming snapshot, sample
    and statistic."""
    from covmocks.covariance.verdict import verdict

    campaign, plan = _campaign(make_campaign, 8)
    for task in plan.tasks:
        write_box(campaign, task)
    tree = ensemble.compute(campaign, plan)
    lrg = tree["z0.500"]["LRG"]
    lrg["real"]["covariance"][0, :] = np.nan
    lrg["redshift"]["covariance"][0, 1] += 1.0
    tree["z0.500"]["n_modes"] = np.array([0, *N_MODES[1:]])
    problems = verdict(tree)
    assert any(p.startswith("z0.500 LRG real (N = 8, p = 12): ") and "not finite" in p
               for p in problems), problems  # fmt: skip
    assert any(p.startswith("z0.500 LRG redshift ") and "not symmetric" in p for p in problems)
    assert any(p == "z0.500 ELG: 1 k bins hold no mode" for p in problems)
    assert not any("ELG redshift_mean3" in p for p in problems)  # N = 8 < p: singular is fine
    del tree["z0.500"]["ELG"]
    sample = SimpleNamespace(name="ELG", measured_at=lambda z: True)
    fake = SimpleNamespace(clustering=SimpleNamespace(samples=[sample]),
                           science=SimpleNamespace(redshifts=(0.5,)))  # fmt: skip
    assert "z0.500 ELG: not measured" in verdict(tree, fake)
