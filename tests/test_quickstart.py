"""docs/quickstart.md, executed: every code block of the page runs (or is checked) in order,
in a copy of the repository's campaigns, and what the page says the demo produces is checked
against what it produced. This is also the test of the demo campaign end to end.

How each block is checked is said by an HTML comment on the line before it:

- ``set-up``: the README's install-and-run command. Its install part (``python3 -m venv
  .venv`` and ``.venv/bin/pip install -e ".[test,mpi,monitoring]"``) must be exactly what
  ``.ci/run`` runs on a fresh machine (CI is the test of the install, from PyPI, every
  time); re-creating the venv here would take many minutes, so the rest of the command
  runs with the venv that runs these tests, linked as ``.venv`` in the copy.
- ``ci``: the README's test command, the last command of ``.ci/run`` (this test is part of
  it), not run again here.
- ``output``: the output of the block before it, line by line; ``...`` matches anything
  and runs of spaces match any spaces.
- ``files``: the first word of every line is a path that must exist.
- no comment: a ``bash`` block runs in bash (``set -e``), a ``python`` block in the venv's
  Python, both from the copy's root. Any other block without a comment fails the test.
"""

import re
import sqlite3
import subprocess
from pathlib import Path

import pytest

from covmocks.campaign import Campaign
from covmocks.workflow.plan import make_plan
from tests.test_run import assert_qa_passed

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "docs" / "quickstart.md"

pytestmark = [pytest.mark.slow, pytest.mark.docs]


def code_blocks(text: str, tag: str = "quickstart") -> list[tuple[str | None, str, str]]:
    """(marker, language, code) of every fenced block, in order; the marker is the
    ``<!-- <tag>: X -->`` comment on the line before the fence, if any."""
    blocks = []
    pattern = rf"(?:<!-- {tag}: ([\w-]+) -->\n)?^```(\w*)\n(.*?)^```$"
    for m in re.finditer(pattern, text, flags=re.M | re.S):
        blocks.append((m.group(1), m.group(2), m.group(3)))
    return blocks


def ci_commands() -> list[str]:
    """The command lines of .ci/run (comments and blank lines left out)."""
    lines = (REPO / ".ci" / "run").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def without_quiet(command: str) -> str:
    return " ".join(word for word in command.split() if word != "-q")


def matches(expected: str, actual: str) -> bool:
    """``expected`` line by line against ``actual``: ``...`` matches anything, spaces any
    spaces."""
    want, got = expected.strip().splitlines(), actual.strip().splitlines()
    if len(want) != len(got):
        return False
    for w, g in zip(want, got, strict=True):
        parts = [re.escape(p) for p in w.strip().split("...")]
        regex = ".*".join(re.sub(r"(\\ )+", r"\\s+", p) for p in parts)
        if not re.fullmatch(regex, g.strip()):
            return False
    return True


def test_readme_and_quickstart_give_the_commands_ci_runs():
    blocks = code_blocks(QUICKSTART.read_text())
    setup = [code for marker, _, code in blocks if marker == "set-up"]
    ci = [code for marker, _, code in blocks if marker == "ci"]
    assert len(setup) == 1 and len(ci) == 1
    readme = [code for _, lang, code in code_blocks((REPO / "README.md").read_text())
              if lang == "bash"]  # fmt: skip
    assert readme[:2] == [setup[0], ci[0]], "README's two commands differ from the quickstart's"
    install = setup[0].strip().split(" && ")
    commands = [without_quiet(c) for c in ci_commands()]
    assert install[0] in commands and without_quiet(install[1]) in commands, install
    assert ci[0].strip() == ci_commands()[-1]  # the README's test command ends .ci/run


def run_bash(code: str, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(["bash", "-e", "-c", code], cwd=cwd, capture_output=True, text=True,
                          timeout=1200)  # fmt: skip
    assert proc.returncode == 0, f"{code}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def setup_command(code: str) -> str:
    """The set-up block's command after its install part."""
    parts = code.strip().split(" && ")
    assert parts[0] == "python3 -m venv .venv" and "pip install" in parts[1]
    return " && ".join(parts[2:])


def test_quickstart_runs_as_written(demo):
    """The set-up block was run by the session's ``demo`` fixture (tests/conftest.py), in a
    copy of the repository's campaigns, so that other tests can read the finished demo; the
    other blocks run here, in that copy."""
    root = demo.root
    text = QUICKSTART.read_text()
    last = None
    for marker, lang, code in code_blocks(text):
        if marker == "set-up":
            assert demo.run.args[-1] == setup_command(code)
            last = demo.run
        elif marker == "ci":
            continue  # checked against .ci/run above; this test is part of that run
        elif marker == "output":
            assert last is not None and matches(code, last.stdout), (code, last.stdout)
        elif marker == "files":
            for line in code.strip().splitlines():
                assert (root / line.split()[0]).exists(), line
        elif marker is None and lang == "bash":
            last = run_bash(code, root)
        elif marker is None and lang == "python":
            python = str(root / ".venv" / "bin" / "python")
            proc = subprocess.run([python, "-c", code], cwd=root, capture_output=True,
                                  text=True, timeout=600)  # fmt: skip
            assert proc.returncode == 0, proc.stderr[-3000:]
            last = proc
        else:
            pytest.fail(f"a {lang or 'plain'} block that nothing checks:\n{code}")
    check_the_demo(root, text)


def check_the_demo(root: Path, page: str):
    """What the page says the demo made, and what the demo's end-to-end test always checked."""
    campaign = Campaign.load(root / "campaigns" / "demo.yaml")
    assert campaign.layout.root == root / "campaign-runs" / "demo_1"
    plan = make_plan(campaign)
    assert plan.counts == {"done": 12, "todo": 0, "blocked": 0}
    for task in plan.tasks:
        assert_qa_passed(task)
        assert campaign.layout.clustering(task.task_id).is_file()
    catalogs = list(campaign.layout.catalogs.rglob("*.hdf5"))
    assert len(catalogs) == 12 and "one galaxy catalog per box (12)" in page
    with sqlite3.connect(campaign.layout.monitoring_db) as con:
        (n,) = con.execute("select count(*) from task").fetchone()
        (name,) = con.execute("select workflow_name from workflow").fetchone()
    # 12 boxes, and the measurements of the 2 calibration boxes of each of the 3 snapshots,
    # made before their snapshot's number-density threshold was fixed
    assert n == 12 + 2 * 3 and name == "demo"
    # the first run did it all (later tests may run the driver again, finding nothing to do)
    runs = re.findall(r"run finished: .*", campaign.layout.driver_log.read_text())
    finished = re.search(r"ends with `(run finished: [^`]+)`", page.replace("\n", " "))
    assert finished and runs and finished.group(1) in runs[0], runs
