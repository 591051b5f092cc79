"""Sample files: what a box keeps for its clustering samples is exactly the galaxies a sample
could need, the same whatever the chunking or the MPI ranks; number-density thresholds are
fixed for the ensemble, never per box."""

import json
import os
import sys

import numpy as np
import pytest

from covmocks.box import populate
from covmocks.box.spec import BoxSpec
from covmocks.clustering import samples
from covmocks.clustering.samples import Rule, SampleCollector
from tests.test_mpi import MPIEXEC, mpibox

BOX = 50.0  # Mpc/h
RULES = (Rule("sfr_top", "sfr", density=2e-3), Rule("massive", "mstar", floor=10.0),
         Rule("everything", "all"))  # fmt: skip


def _columns(rng, n: int) -> dict:
    sfr = np.round(rng.normal(-0.5, 1.0, n), 2).astype("f4")  # ties at any floor
    return {
        "pos": rng.uniform(0, BOX, (n, 3)).astype("f4"), "vel": rng.normal(0, 300, (n, 3)),
        "log10_mstar_surviving": np.round(rng.normal(9.5, 0.8, n), 1).astype("f4"),  # many ties
        "log10_sfr": sfr, "is_central": rng.random(n) < 0.7,
    }  # fmt: skip


def _collect(chunks: list[dict], rules=RULES) -> SampleCollector:
    c = SampleCollector(rules, BOX)
    row = 0
    for chunk in chunks:
        c.add(chunk, row)
        row += len(chunk["is_central"])
    return c


def _sorted(c: SampleCollector) -> dict:
    order = np.argsort(c.kept["row"])
    return {k: v[order] for k, v in c.kept.items()}


def _split(whole: dict, edges) -> list[dict]:
    spans = zip(edges[:-1], edges[1:], strict=True)
    return [{k: v[a:b] for k, v in whole.items()} for a, b in spans]


def test_kept_galaxies_are_the_same_for_any_chunking_or_merge():
    rng = np.random.default_rng(1)
    whole = _columns(rng, 5000)
    one = _sorted(_collect([whole]))
    for edges in ([0, 1000, 2500, 5000], [0, 7, 8, 4000, 5000]):
        parts = _split(whole, edges)
        got = _sorted(_collect(parts))
        for k in one:
            np.testing.assert_array_equal(got[k], one[k], err_msg=k)
        merged = SampleCollector(RULES, BOX)  # as MPI ranks: shard rows moved to the catalog's
        for a, part in zip(edges[:-1], parts, strict=True):
            merged.merge(_collect([part]).shifted(a))
        for k in one:
            np.testing.assert_array_equal(_sorted(merged)[k], one[k], err_msg=k)


def test_kept_galaxies_are_exactly_what_each_rule_needs():
    rng = np.random.default_rng(2)
    whole = _columns(rng, 4000)
    rules = (Rule("sfr_top", "sfr", density=2e-3), Rule("massive", "mstar", floor=10.0))
    c = _collect(_split(whole, [0, 1500, 4000]), rules)
    k = int(np.ceil(2e-3 * BOX**3))  # 250 galaxies
    kth = np.sort(whole["log10_sfr"])[::-1][k - 1]
    floors = c.floors()
    assert floors["sfr_top"] == kth and floors["massive"] == 10.0
    want = (whole["log10_sfr"] >= kth) | (whole["log10_mstar_surviving"] >= np.float32(10.0))
    np.testing.assert_array_equal(np.sort(c.kept["row"]), np.flatnonzero(want))
    assert (c.kept["log10_sfr"] >= kth).sum() >= k  # ties at the floor kept
    # a collector keeps everything for "all", nothing without rules
    assert len(_collect([whole], (Rule("all", "all"),)).kept["row"]) == 4000
    assert not SampleCollector((), BOX)


def test_sample_file_round_trip_and_cut(tmp_path):
    rng = np.random.default_rng(3)
    c = _collect([_columns(rng, 3000)])
    path = tmp_path / "box.samples.hdf5"
    c.write(path, {"box_size": BOX, "redshift": 0.5, "task_id": "r0000_z0.500"})
    box = samples.read(path)
    assert not list(tmp_path.glob(".*tmp*"))
    assert np.all(np.diff(box["row"]) > 0) and box["pos"].dtype == np.float32
    assert box["floors"] == pytest.approx(c.floors())
    floor = box["floors"]["sfr_top"]
    mask = samples.cut(box, "sfr_top", "sfr", floor + 0.3)
    np.testing.assert_array_equal(mask, box["log10_sfr"] >= floor + 0.3)
    with pytest.raises(ValueError, match="sample sfr_top: threshold .* below what the box kept"):
        samples.cut(box, "sfr_top", "sfr", floor - 0.1)
    assert samples.cut(box, "everything", "all", None).all()


def test_ensemble_threshold_reaches_the_mean_density_and_refuses_a_short_margin(tmp_path):
    rng = np.random.default_rng(4)
    boxes = []
    for i in range(6):
        c = _collect([_columns(rng, 4000)], (Rule("top", "sfr", density=2e-3),))
        c.write(tmp_path / f"{i}.hdf5", {"box_size": BOX})
        boxes.append(samples.read(tmp_path / f"{i}.hdf5"))
    target = 1e-3  # (h/Mpc)^3: half of what each box kept
    x = samples.ensemble_threshold(boxes, "top", "sfr", target)
    mean_n = np.mean([(b["log10_sfr"] >= x).sum() for b in boxes]) / BOX**3
    above = np.mean([(b["log10_sfr"] > x).sum() for b in boxes]) / BOX**3
    assert mean_n >= target > above  # the highest x whose mean n(>=x) reaches the target
    with pytest.raises(ValueError, match="kept too few galaxies .* raise clustering.margin"):
        samples.ensemble_threshold(boxes, "top", "sfr", 3e-3)


def _synthetic_box(tmp_path, name, model, chunk_hosts) -> dict:
    spec = BoxSpec(source="synthetic", n_hosts=1500, redshift=0.5, seed=3, realization=1,
                   chunk_hosts=chunk_hosts, output=tmp_path / f"{name}.hdf5",
                   samples=tmp_path / f"{name}.samples.hdf5", sample_rules=RULES[:2])  # fmt: skip
    source = spec.open_source()
    populate.generate_box(source, model, spec.resolved(source.header))
    return samples.read(spec.samples)


def _assert_same_samples(a: dict, b: dict) -> None:
    for key in ("pos", "vel", "log10_mstar_surviving", "log10_sfr", "is_central", "row"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert a["floors"] == b["floors"]


def _record(path, floors: dict) -> dict:
    """The clustering record measured from a sample file: its samples cut at fixed values."""
    from covmocks.clustering import measure, power
    from covmocks.clustering.thresholds import SampleCut

    cuts = (SampleCut("sfr_top", "sfr", floors["sfr_top"], "given"),
            SampleCut("massive", "mstar", 10.0, "given"))  # fmt: skip
    record = path.with_name(path.name.replace(".samples.", ".pk."))
    job = measure.ClusteringJob(path, record, cuts, power.PowerSettings(nmesh=16))
    measure.measure(job)
    return power.read_record(record)


def _assert_same_records(a: dict, b: dict) -> None:
    assert a["samples"].keys() == b["samples"].keys()
    for name, sa in a["samples"].items():
        for key, value in sa.items():
            if key != "attrs":
                np.testing.assert_array_equal(value, b["samples"][name][key], err_msg=key)
        np.testing.assert_equal(sa["attrs"], b["samples"][name]["attrs"])  # NaN == NaN
        assert sa["attrs"]["n_objects"] > 10


@pytest.mark.slow
def test_sample_file_identical_for_any_chunking_and_true_to_the_catalog(tmp_path, model):
    import h5py

    one = _synthetic_box(tmp_path, "one", model, 1500)
    four = _synthetic_box(tmp_path, "four", model, 400)
    _assert_same_samples(one, four)
    _assert_same_records(_record(tmp_path / "one.samples.hdf5", one["floors"]),
                         _record(tmp_path / "four.samples.hdf5", one["floors"]))  # fmt: skip
    with h5py.File(tmp_path / "one.hdf5") as f:
        rows = one["row"]
        np.testing.assert_array_equal(f["pos"][...][rows], one["pos"])
        np.testing.assert_array_equal(f["log10_sfr"][...][rows], one["log10_sfr"])
        hubble_e = f.attrs["hubble_e"]
    assert one["attrs"]["hubble_e"] == hubble_e and 1.2 < hubble_e < 1.4  # z = 0.5
    assert one["attrs"]["log10_mstar_complete"] > 0
    assert os.path.getsize(tmp_path / "one.samples.hdf5") < 200_000


@pytest.mark.slow
@pytest.mark.mpi
@pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not found beside python or on PATH")
def test_sample_file_identical_on_one_and_two_ranks(tmp_path):
    import json
    from dataclasses import asdict

    args = ["--source", "synthetic", "--n-hosts", 1500, "--redshift", 0.5, "--seed", 3,
            "--chunk-hosts", 400, "--model-params", '{"batch_min": 256, "batch_max": 4096}',
            "--sample-rules", json.dumps([asdict(r) for r in RULES[:2]])]  # fmt: skip
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    got = {}
    for n in (1, 2):
        out = tmp_path / f"ranks{n}"
        rc, _, err, _ = mpibox(n, [*args, "--output", f"{out}.hdf5",
                                   "--samples", f"{out}.samples.hdf5"], env)  # fmt: skip
        assert rc == 0, err
        got[n] = samples.read(f"{out}.samples.hdf5")
    _assert_same_samples(got[1], got[2])
    floors = got[1]["floors"]
    _assert_same_records(_record(tmp_path / "ranks1.samples.hdf5", floors),
                         _record(tmp_path / "ranks2.samples.hdf5", floors))  # fmt: skip


def test_sample_files_hold_strict_json_that_the_reader_decodes(tmp_path):
    """``rules`` and ``floors`` are listed JSON attributes a strict parser reads (no
    -Infinity: ``all`` has no floor, null); the package's reader decodes them."""
    import h5py

    c = samples.SampleCollector([samples.Rule("everything", "all"),
                                 samples.Rule("top", "sfr", density=1e-3)], 50.0)  # fmt: skip
    rng = np.random.default_rng(2)
    n = 400
    c.add({"pos": rng.random((n, 3), np.float32) * 50, "vel": rng.random((n, 3), np.float32),
           "log10_mstar_surviving": rng.normal(10, 0.5, n).astype("f4"),
           "log10_sfr": rng.normal(0, 0.5, n).astype("f4"), "is_central": np.ones(n, bool)},
          0)  # fmt: skip
    path = tmp_path / "box.samples.hdf5"
    c.write(path, {"task_id": "r0000_z0.500"})
    with h5py.File(path) as f:
        listed = json.loads(f.attrs["json_attributes"])
        strict = {k: json.loads(f.attrs[k], parse_constant=lambda x: 1 / 0) for k in listed}
    assert {"rules", "floors"} <= set(listed) and strict["floors"]["everything"] is None
    box = samples.read(path)
    assert box["floors"]["everything"] == -np.inf and box["floors"]["top"] == c.floors()["top"]
    assert [r["name"] for r in box["attrs"]["rules"]] == ["everything", "top"]
