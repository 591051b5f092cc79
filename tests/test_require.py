"""``$COVMOCKS_REQUIRE`` (tests/conftest.py): a test that would skip for lack of a stack the
variable names fails instead, with the same reason, so CI cannot pass by skipping; without
the word it skips; a word the helper does not know is a usage error, not a silent no-op."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NEEDS_DATA = "def test_reads_the_catalog(mini_catalog_dir):\n    assert mini_catalog_dir\n"
REASON = "AbacusSummit test catalog not found at"


def _pytest(tmp_path, require: str | None) -> subprocess.CompletedProcess:
    """A pytest run of a one-test file that needs the test catalog, under this suite's
    conftest (``-p tests.conftest``), with the catalog pointed somewhere absent."""
    (tmp_path / "test_needs_data.py").write_text(NEEDS_DATA)
    env = dict(os.environ, COVMOCKS_TEST_DATA=str(tmp_path / "absent"), PYTHONPATH=str(REPO))
    env.pop("COVMOCKS_REQUIRE", None)
    if require is not None:
        env["COVMOCKS_REQUIRE"] = require
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "-rsf", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("require", "skips"), [(None, True), ("slurm,mpio", True), ("slurm, data", False)]
)
def test_a_required_stack_turns_its_skip_into_a_failure(tmp_path, require, skips):
    run = _pytest(tmp_path, require)
    out = run.stdout + run.stderr
    # the fixture fails: the test errors at set-up
    assert ("1 skipped" if skips else "1 error") in out and REASON in out, out
    assert run.returncode == (0 if skips else 1), out
    assert ("COVMOCKS_REQUIRE has 'data'" in out) != skips, out


def test_an_unknown_word_is_a_usage_error(tmp_path):
    run = _pytest(tmp_path, "data,slrum")
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.stdout + run.stderr
    assert "COVMOCKS_REQUIRE: unknown slrum (known: data, slurm, mpio)" in run.stderr
