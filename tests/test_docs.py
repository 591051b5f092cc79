"""The documentation site (docs/) builds with every warning an error, as CI requires, and
its generated pages agree with the code: the campaign-file guide with the pydantic models."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"

pytestmark = pytest.mark.docs


def extension(name: str):
    """The site's Sphinx extension ``docs/_ext/<name>.py``, imported."""
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(DOCS / "_ext"))


@pytest.mark.slow
def test_site_builds_without_warnings(tmp_path):
    """The README's build command: fresh environment (-E), warnings are errors (-W)."""
    out = tmp_path / "html"
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-E", "-W", "--keep-going", "-q", "-b", "html",
         str(DOCS), str(out), "-d", str(tmp_path / "doctrees")],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    pages = {p.relative_to(out).as_posix() for p in out.rglob("*.html")}
    for page in ("index.html", "quickstart.html", "concepts.html", "campaigns.html",
                 "profiles.html", "running.html", "releases.html", "perlmutter.html",
                 "demo_campaign.html", "reference/campaign-file.html", "schema.html",
                 "performance.html", "reliability.html", "api.html", "input-data.html",
                 "reading-outputs.html", "clustering-settings.html", "failed-box.html",
                 "disk-budget.html", "citing.html"):  # fmt: skip
        assert page in pages, sorted(pages)
    reference = (out / "reference" / "campaign-file.html").read_text()
    for key in ("log10_mhost_min_msun", "mpi_tasks_per_block", "calibration_boxes", "umask"):
        assert key in reference
    api = (out / "api.html").read_text()
    assert "covmocks.workflow.driver.Runner" in api and "covmocks.catalog.hdf5.read_catalog" in api


def test_campaign_guide_agrees_with_the_models():
    """Every key of the guide's tables is a key of the models, every key of the models is in
    the guide, and the defaults the guide gives are the models'."""
    assert extension("covmocks_reference").check_guide() == []


def test_schema_tables_match_the_stand_in_files(tmp_path):
    """Each HDF5 file type's table on the format page against the file its writer writes
    from stand-in inputs (what the site's build checks): every name written is a row, every
    row is written, JSON attributes are strict and typed JSON."""
    schema = extension("covmocks_schema")
    files = schema.stand_in_files(tmp_path)
    assert set(files) == {"catalog", "statistics", "samples", "clustering", "covariance"}
    from covmocks.catalog.hdf5 import SCHEMA

    problems = []
    for kind, (path, _, rename) in files.items():
        written, found = schema.hdf5_names(path, rename)
        if kind == "catalog":
            assert set(SCHEMA) <= set(written) and {"@seed", "@n_galaxies"} <= set(written)
        problems += found + schema.schema_problems(kind, written, json_both_ways=False)
    assert problems == [], problems


def test_schema_check_rejects_loose_json(tmp_path):
    """The check itself: JSON with -Infinity in it, and JSON text not marked JSON, fail."""
    import h5py

    from covmocks.catalog.attrs import write_attrs

    schema = extension("covmocks_schema")
    path = tmp_path / "f.hdf5"
    with h5py.File(path, "w") as f:
        write_attrs(f, {"floors": {"all": float("-inf")}, "rules": "[]", "n": 1})
    page = ("<!-- schema: k -->\n| name | type | units | meaning |\n|---|---|---|---|\n"
            "| `@floors`, `@rules`, `@json_attributes` | JSON | | |\n"
            "| `@n`, `@gone` | int | | |\n")  # fmt: skip
    written, problems = schema.hdf5_names(path, {})
    problems += schema.schema_problems("k", written, page)
    assert problems == [
        "`@floors`: not strict JSON: -Infinity",
        "k: `@rules` is typed JSON on the page but is not marked JSON in the file",
        "k: the row `@gone` is not written",
    ], problems


@pytest.mark.slow
def test_schema_tables_match_the_demo_files(demo, tmp_path):
    """Each file type's table against the demo campaign's real files (catalog, statistics,
    samples, clustering record, covariance, QA record, metadata), both ways; an attribute
    typed JSON is JSON in the file (``json_attributes``, strict) and the reverse. The
    covariance of the demo's records is written here, by ``covariance.ensemble``, so that the
    demo's directory is left as it was (the quickstart writes its own)."""
    from covmocks.covariance import ensemble

    schema = extension("covmocks_schema")
    campaign = demo.campaign
    layout = campaign.layout
    samples = {s.name: "<sample>" for s in campaign.clustering.samples}
    rename = samples | {f"z{z:.3f}": "z<label>" for z in campaign.science.redshifts}
    tid = "r0000_z0.500"
    hdf5 = {"catalog": layout.catalog(0, 0.5),
            "statistics": layout.statistics(tid), "samples": layout.samples(tid),
            "clustering": layout.clustering(tid),
            "covariance": tmp_path / "covariance.hdf5"}  # fmt: skip
    ensemble.write(hdf5["covariance"], ensemble.compute(campaign))
    problems = []
    for kind, path in hdf5.items():
        written, found = schema.hdf5_names(path, rename)
        problems += found + schema.schema_problems(kind, written)
    manifest = layout.manifest.read_text().splitlines()[0]
    documents = {"qa-record": (layout.qa_record(tid).read_text(), {"checks"}),
                 "provenance": (layout.provenance.read_text(), {"software"}),
                 "plan": (layout.plan_summary.read_text(), set()),
                 "manifest": (manifest, set())}  # fmt: skip
    for kind, (text, mappings) in documents.items():
        written, found = schema.json_names(text, frozenset(mappings))
        problems += found + schema.schema_problems(kind, written)
    assert problems == [], problems


def test_profile_cost_figures_are_the_profiles_and_say_what_they_are():
    """The profiles page's cost table gives every shipped profile's `cost` figures as the
    profile files have them, each marked a measurement or an estimate."""
    import re

    from covmocks.campaign.profiles import profile_names, profile_path
    from covmocks.campaign.schema import ProfileFile
    from covmocks.campaign.yamldoc import read_yaml

    text = (DOCS / "profiles.md").read_text()
    table = text.split("<!-- profile-costs -->\n", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    rows = {}
    for line in table:
        name, seconds, gigabytes, status = [c.strip() for c in line.strip("|").split("|")]
        rows[name.strip("`")] = (float(seconds), float(gigabytes), status)
    assert set(rows) == set(profile_names())
    for name, (seconds, gigabytes, status) in rows.items():
        doc, _ = read_yaml(profile_path(name, DOCS))
        cost = ProfileFile.model_validate(doc.data).cost
        assert (seconds, gigabytes) == (cost.seconds_per_task, cost.gigabytes_per_task), name
        assert re.match(r"(estimate|measured)\b", status), (name, status)
