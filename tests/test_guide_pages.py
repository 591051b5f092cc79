"""The guide pages' Python, executed: every ``python`` block of the pages below runs, in
order, in the finished demo campaign (the session's ``demo`` fixture, tests/conftest.py),
and a block marked ``<!-- guide: output -->`` is the output of the block before it, line by
line (``...`` matches anything; runs of spaces match any spaces). A ``bash`` block runs only
where marked ``<!-- guide: run -->``; other blocks (commands for a cluster, YAML, listings)
are shown, not run."""

import subprocess

import pytest

from tests.test_quickstart import REPO, code_blocks, matches, run_bash

pytestmark = [pytest.mark.slow, pytest.mark.docs]

PAGES = ("reading-outputs.md", "clustering-settings.md", "input-data.md", "disk-budget.md")


def run_python(code: str, root) -> subprocess.CompletedProcess:
    python = str(root / ".venv" / "bin" / "python")
    proc = subprocess.run([python, "-c", code], cwd=root, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, f"{code}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.parametrize("page", PAGES)
def test_page_python_runs_on_the_demo(demo, page):
    blocks = code_blocks((REPO / "docs" / page).read_text(), tag="guide")
    assert any(lang == "python" for _, lang, _ in blocks), page
    last = None
    for marker, lang, code in blocks:
        if marker == "output":
            assert last is not None and matches(code, last.stdout), (code, last.stdout)
        elif marker == "run" and lang == "bash":
            last = run_bash(code, demo.root)
        elif lang == "python":
            assert marker is None, (page, marker)
            last = run_python(code, demo.root)
        else:
            assert marker is None, (page, marker)
            last = None  # shown, not run: an output block cannot follow it
