"""``covmocks release``, ``covmocks verify`` and the plan to tape (issue 26).

The demo campaign (the session's ``demo``) is copied before it is released: a release makes
its files read-only and freezes the version."""

import contextlib
import io
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from covmocks.campaign import Campaign
from covmocks.catalog.hdf5 import SCHEMA
from covmocks.cli import main
from covmocks.core.layout import Layout, ReleaseLayout, redshift_label
from covmocks.release import bag, card, htar
from covmocks.release.build import TAG_FILES
from covmocks.workflow.driver_lock import DriverLock
from covmocks.workflow.estimate import estimate
from covmocks.workflow.journal import Journal
from covmocks.workflow.plan import make_plan

CAMPAIGNS = Path(__file__).resolve().parents[1] / "campaigns"
GB = 10**9


def copy_demo(demo, to: Path) -> Path:
    """The finished demo's campaign files and run directory under ``to``; its campaign file."""
    shutil.copytree(demo.root / "campaigns", to / "campaigns")
    shutil.copytree(demo.root / "campaign-runs", to / "campaign-runs")
    return to / "campaigns" / "demo.yaml"


def writable(path: Path) -> None:
    """Give the owner write permission back on ``path`` and the directories above it."""
    for p in (path, *path.parents[:3]):
        if p.exists():
            p.chmod(p.stat().st_mode | stat.S_IWUSR)


@pytest.fixture(scope="module")
def released(demo, tmp_path_factory):
    """A copy of the demo, released with an htar plan of small bundles: (campaign file,
    release directory, what ``release`` printed)."""
    yaml = copy_demo(demo, tmp_path_factory.mktemp("released"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main.main(["release", "-q", str(yaml), "--htar-plan", "--bundle-min-gb",
                          "0.0004", "--bundle-max-gb", "0.002", "--workers", "2"])  # fmt: skip
    assert code == 0
    campaign = Campaign.load(yaml)
    return yaml, ReleaseLayout(campaign.layout.release("demo", "1")), out.getvalue()


def test_release_of_the_demo(released, capsys):
    yaml, release, out = released
    root = Campaign.load(yaml).layout.root
    assert "released demo version 1 in " in out and str(release.root) in out
    manifest = bag.read_manifest(release.manifest)
    payload = bag.tree_files(root)
    assert sorted(manifest) == payload and len(payload) >= 12 * 5  # 12 boxes, 5 files each
    sums = subprocess.run(["sha256sum", *payload], cwd=root, capture_output=True, text=True,
                          check=True).stdout.splitlines()  # fmt: skip
    assert {line.split("  ")[1]: line.split("  ")[0] for line in sums} == manifest
    sizes = bag.read_manifest(release.root / bag.SIZES)
    assert {n: int(s) for n, s in sizes.items()} == {n: (root / n).stat().st_size for n in payload}
    for path in [root / n for n in payload] + list(release.root.rglob("*")):
        assert stat.S_IMODE(path.stat().st_mode) & 0o222 == 0, path
    assert stat.S_IMODE((root / "catalogs").stat().st_mode) & 0o222 == 0
    tags = bag.read_manifest(release.tagmanifest)
    assert set(tags) == set(bag.tree_files(release.root, ())) - {release.tagmanifest.name}

    readme, model = release.card.read_text(), release.datamodel.read_text()
    for column in SCHEMA:
        assert f"`{column}`" in readme and f"`{column}`" in model
    shown = {card.pattern(n) for n in payload} | {n.split("/")[0] for n in tags}
    for pattern in shown:
        assert f"`{pattern.replace('htar', 'htar/')}`" in model, pattern
    assert "Nothing: every planned box is here." in readme and "Partial" not in readme
    assert "covmocks verify release/demo_1" in readme
    record = json.loads(release.record.read_text())
    assert record["payload"] == "../.." and record["boxes_released"] == 12
    rows = (release.boxes).read_text().splitlines()
    assert rows[0].split(",") == list(card.BOX_COLUMNS) and len(rows) == 13
    prov = json.loads((release.root / "provenance.json").read_text())
    assert prov["model"]["name"] == "diffsky_sfh" and "numpy" in prov["installed"]
    layout = Campaign.load(yaml).layout  # the quickstart's demo has no covariance or report
    for source in (layout.campaign_file, layout.config, layout.science, layout.thresholds,
                   layout.covariance, layout.report):  # fmt: skip
        assert (release.root / source.name).is_file() == source.is_file(), source
        assert source.name in TAG_FILES
    assert (release.root / "thresholds.json").is_file()  # the demo measures clustering

    assert main.main(["verify", "-q", str(release.root)]) == 0
    assert "all match" in capsys.readouterr().out
    argv = ["release", str(yaml), "--dry-run", "--bundle-min-gb", "0.0004", "--bundle-max-gb",
            "0.002"]  # fmt: skip
    assert main.main(argv) == 0  # prints the bundles, released or not; writes nothing
    planned = (release.htar / "bundles.txt").read_text().splitlines()
    assert capsys.readouterr().out.splitlines()[:-1] == planned[:-1]  # the release's own grew


def test_a_released_version_refuses_changes(released, tmp_path, capsys):
    yaml, release, _ = released
    layout = Campaign.load(yaml).layout
    catalog = layout.catalog(0, 0.5)
    verbs = (["run", str(yaml)], ["retry", str(yaml)], ["covariance", str(yaml)],
             ["generate", "--campaign", str(yaml), "--task", "r0000_z0.500", "--output",
              str(catalog), "--overwrite"])  # fmt: skip
    for argv in verbs:
        assert main.main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and f"is released ({release.root}" in err, (argv, err)
        assert "bump campaign.version" in err
    assert main.main(["release", str(yaml)]) == 2
    assert "already released" in capsys.readouterr().err
    # the next version is a new directory, and plans
    nxt = yaml.with_name("demo2.yaml")
    nxt.write_text(yaml.read_text().replace("version: 1", "version: 2"))
    assert main.main(["plan", "-q", str(nxt)]) == 0
    assert "done 0 todo 12" in capsys.readouterr().out


def test_verify_names_a_changed_a_missing_and_an_extra_file(released, tmp_path, capsys):
    yaml, release, _ = released
    copy = tmp_path / "copy"  # a copy restored elsewhere: the payload found from release.json
    shutil.copytree(Campaign.load(yaml).layout.root, copy)
    rel = copy / "release" / "demo_1"
    assert main.main(["verify", "-q", str(rel)]) == 0
    alone = tmp_path / "alone"  # the release directory without its campaign directory
    shutil.copytree(rel, alone)
    assert main.main(["verify", "-q", str(alone)]) == 2
    assert "its payload (the campaign directory) is not at" in capsys.readouterr().err
    assert main.main(["verify", "-q", str(alone), "--payload", str(copy)]) == 0
    capsys.readouterr()
    changed, removed = copy / "catalogs/r0001/mock_z1.000.hdf5", copy / "qa/r0003_z0.000.json"
    added = copy / "catalogs/r0001/notes.txt"
    for path in (changed, removed, added):
        writable(path.parent)
    changed.chmod(0o644)
    with open(changed, "r+b") as f:
        f.seek(5000)
        byte = f.read(1)
        f.seek(5000)
        f.write(bytes([byte[0] ^ 1]))
    removed.unlink()
    added.write_text("x")
    assert main.main(["verify", "-q", str(rel)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith(f"changed {changed}: sha256") for line in lines), lines
    assert f"missing payload file {removed}" in lines
    assert any(line.startswith(f"extra payload file {added}") for line in lines)
    assert len(lines) == 4 and lines[-1].endswith("3 problems")


def test_allow_incomplete_lists_a_failed_box(demo, tmp_path, capsys):
    yaml = copy_demo(demo, tmp_path)
    layout = Campaign.load(yaml).layout
    layout.qa_record("r0004_z1.000").unlink()  # the box's done mark gone: it failed
    Journal(layout.journal).write("r0004_z1.000", "failed", error="ValidationError: test")
    with DriverLock(layout.lock, "covmocks run"):  # never beside a running driver
        assert main.main(["release", "-q", str(yaml), "--allow-incomplete"]) == 2
    assert "is already being run by covmocks run" in capsys.readouterr().err
    assert main.main(["release", "-q", str(yaml)]) == 2
    err = capsys.readouterr().err
    assert "1 of 12 boxes are not done (e.g. r0004_z1.000: failed" in err and "--allow" in err
    assert main.main(["release", "-q", str(yaml), "--allow-incomplete", "--workers", "1"]) == 0
    release = ReleaseLayout(layout.release("demo", "1"))
    readme = release.card.read_text()
    assert "Partial release: 1 of 12 boxes are missing" in readme
    assert "- `r0004_z1.000`: failed: ValidationError: test" in readme
    (row,) = [r for r in release.boxes.read_text().splitlines() if r.startswith("r0004_z1.000")]
    assert ",failed,ValidationError: test" in row and ",,," in row
    assert main.main(["verify", "-q", str(release.root)]) == 0


def test_a_box_that_fails_stops_the_release(demo, tmp_path, capsys):
    yaml = copy_demo(demo, tmp_path)
    layout = Campaign.load(yaml).layout
    record = layout.qa_record("r0001_z0.500")
    data = json.loads(record.read_text())
    record.write_text(json.dumps({**data, "sha256": "0" * 64}))
    assert main.main(["release", "-q", str(yaml), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "mock_z0.500.hdf5: sha256" in err and "differs from its QA record" in err
    assert not layout.release_record.exists() and not layout.release("demo", "1").exists()


# --- the plan to tape ------------------------------------------------------------------


@pytest.fixture(scope="module")
def production():
    """The production campaign's 40,000 boxes as htar units, snapshot by snapshot: each box's
    catalog at the size ``estimate`` gives, and its four QA files."""
    roman = Campaign.load(CAMPAIGNS / "roman_grs_covariance.yaml")
    plan = make_plan(roman)
    est = estimate(roman, plan)
    size, rel = int(est.storage_bytes / est.remaining), Layout(Path())  # paths as a release
    snapshots: dict[str, list] = {}
    for t in plan.tasks:
        files = [(rel.catalog(t.realization, t.redshift).as_posix(), size),
                 (rel.qa_record(t.task_id).as_posix(), 2_000),
                 (rel.statistics(t.task_id).as_posix(), 200_000),
                 (rel.samples(t.task_id).as_posix(), 50_000_000),
                 (rel.clustering(t.task_id).as_posix(), 100_000)]  # fmt: skip
        snapshots.setdefault(redshift_label(t.redshift), []).append((t.realization, files))
    return snapshots


def test_htar_plan_of_the_production_campaign(production):
    assert sum(len(u) for u in production.values()) == 40_000
    every = sorted(n for us in production.values() for _, files in us for n, _ in files)
    for max_gb, n_bundles in ((2000, 20), (300, 20 * 4)):
        bundles = htar.plan_bundles("roman_grs_covariance_1", Path("/x"), production,
                                    100 * GB, max_gb * GB)  # fmt: skip
        members = [m for b in bundles for m in b.members]
        assert sorted(members) == every and len(set(members)) == 200_000
        for b in bundles:
            assert 100 * GB <= b.n_bytes <= max_gb * GB, (b.name, b.n_bytes)
            assert len(b.snapshots) == 1  # a snapshot's realizations restore together
        assert len(bundles) == n_bundles


def test_htar_plan_refuses_what_htar_cannot_hold():
    big = {"1.100": [(0, [("catalogs/r0000/mock_z1.100.hdf5", 69 * GB)])]}
    with pytest.raises(Exception, match="over htar's member limit"):
        htar.plan_bundles("x", Path("/x"), big)
    long = {"1.100": [(0, [("catalogs/r0000/" + "m" * 101, 1)])]}
    with pytest.raises(Exception, match="a name htar cannot store"):
        htar.plan_bundles("x", Path("/x"), long)


STAND_IN_HTAR = """#!/usr/bin/env bash
# A stand-in htar: records its calls; -cvf ARCHIVE ... -L LIST lists each member (which must
# exist); $HTAR_FAIL in the archive's name: prints HTAR SUCCESSFUL and exits 70 (a skipped
# member), as htar does
echo "$PWD $*" >> "$HTAR_CALLS"
archive=$2 list=${@: -1}
while read -r m; do
  [ -e "$m" ] || { echo "HTAR: $m: no such file"; exit 1; }
  echo "HTAR: a   $m"
done < "$list"
echo "HTAR: HTAR SUCCESSFUL"
case $archive in *"${HTAR_FAIL:-@none@}"*) exit 70;; esac
exit 0
"""


def test_htar_script_with_a_stand_in_htar(released, tmp_path):
    _, release, _ = released
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "htar").write_text(STAND_IN_HTAR)
    (bin_dir / "htar").chmod(0o755)
    script = release.htar / "htar.sh"
    bundles = (release.htar / "bundles.txt").read_text().splitlines()
    names = [line.split()[0] for line in bundles]
    assert len(names) >= 4 and names[-1] == "demo_1_release"
    members = [m for n in names for m in (release.htar / f"{n}.members").read_text().split()]
    assert len(members) == len(set(members))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HPSS_DIR": "/hpss/demo",
           "HTAR_CALLS": str(tmp_path / "calls"), "LOG_DIR": str(tmp_path / "logs")}  # fmt: skip

    def run(*args, **extra):
        return subprocess.run(["bash", str(script), *args], capture_output=True, text=True,
                              env={**env, **extra}, timeout=60)  # fmt: skip

    dry = run("--dry-run")
    assert dry.returncode == 0 and not (tmp_path / "calls").exists()
    assert [line.split()[0] for line in dry.stdout.splitlines()] == names

    ok = run()
    assert ok.returncode == 0, ok.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert len(calls) == len(names)
    for call, name in zip(calls, names, strict=True):
        assert f"-cvf /hpss/demo/{name}.tar -Hcrc -L {release.htar}/{name}.members" in call
        listing = (tmp_path / "logs" / f"{name}.listing").read_text()
        assert "HTAR SUCCESSFUL" in listing and (tmp_path / "logs" / f"{name}.done").exists()
    assert run().returncode == 0  # a rerun: every bundle archived before, htar not called
    assert len((tmp_path / "calls").read_text().splitlines()) == len(names)

    # exit status 70 after "HTAR SUCCESSFUL" stops the script at that bundle
    (tmp_path / "calls").unlink()
    failed = run(LOG_DIR=str(tmp_path / "logs2"), HTAR_FAIL=names[1], HTAR_CHECK="-Hverify=1")
    assert failed.returncode == 1
    assert f"bundle {names[1]} failed (htar exit status 70" in failed.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert len(calls) == 2 and "-Hverify=1" in calls[0]
    assert (tmp_path / "logs2" / f"{names[1]}.listing").exists()
    assert not (tmp_path / "logs2" / f"{names[1]}.done").exists()
