"""The documentation site (docs/) builds with every warning an error, as CI requires, and
its generated pages agree with the code: the campaign-file guide with the pydantic models."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"

pytestmark = pytest.mark.docs


def reference_module():
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        import covmocks_reference
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    return covmocks_reference


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
    assert reference_module().check_guide() == []


def test_file_layouts_are_written_by_the_package(tmp_path):
    """The stand-in files the format page is generated from hold what the page promises."""
    ref = reference_module()
    files = ref.stand_in_files(tmp_path)
    assert set(files) == {"catalog", "statistics", "samples", "clustering", "covariance"}
    rows, names = ref.layout_rows(*files["catalog"])
    from covmocks.catalog.hdf5 import SCHEMA

    assert set(SCHEMA) <= names and {"seed", "realization", "n_galaxies"} <= names
    text = (DOCS / "schema.md").read_text()
    documented = ref.documented_names(text)
    for kind, (path, symbols, rename) in files.items():
        _, names = ref.layout_rows(path, symbols, rename)
        assert names <= documented, (kind, sorted(names - documented))
