"""docs/reliability.md is what scripts/reliability.py renders from docs/reliability.json, the
tests it names still exist, and a loss any summary records shows on the page."""

import importlib.util
import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("reliability", REPO / "scripts/reliability.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_page_is_rendered_from_the_recorded_results():
    script = _script()
    results = json.loads(script.RESULTS.read_text())
    assert script.PAGE.read_text() == script.render(results), (
        "docs/reliability.md was edited by hand or not re-rendered: "
        "run `.venv/bin/python scripts/reliability.py render`"
    )


def test_every_recorded_test_still_exists_and_every_fault_test_is_recorded():
    script = _script()
    tests = json.loads(script.RESULTS.read_text())["tests"].values()
    recorded = {s["nodeid"].split("::")[0] for s in tests if s["nodeid"].startswith("tests/")}
    for summary in tests:
        if "::" not in summary["nodeid"]:
            continue
        path, name = summary["nodeid"].split("::")
        name = name.split("[")[0]
        assert re.search(rf"^def {name}\(", (REPO / path).read_text(), re.M), summary["nodeid"]
    assert recorded == set(script.FAULT_TESTS)


def test_a_loss_in_any_summary_shows_on_its_rows():
    """The page cannot hide a loss: each kind of summary that records one (problems, tasks
    recomputed or given up, a failed restart, fuzz cases that ended badly) says it in the
    "lost" column of every row that summary makes."""
    script = _script()
    results = json.loads(script.RESULTS.read_text())
    tests = results["tests"]
    by_kind = {s["kind"]: name for name, s in sorted(tests.items())}
    crash, disk, rehearsal, fuzz, conc = (tests[by_kind[k]] for k in
                                          ("crashes", "disk_full", "rehearsal", "fuzz",
                                           "concurrency"))  # fmt: skip
    crash.update(problems=["torn qa record"], tasks_recomputed=2)
    disk.update(problems=["a", "b"])
    conc.update(problems=["catalog read back wrong"])
    rehearsal.update(failed=3, done=rehearsal["tasks"] - 3, second_driver_exit=1)
    surface = next(iter(fuzz["surfaces"]))
    fuzz["surfaces"][surface]["failing_cases"] = 4
    rows = {}
    for line in script.render(results).splitlines():
        cells = line.split(" | ")
        if len(cells) == 4 and cells[3].startswith("`"):
            rows.setdefault(cells[3].strip("` |"), []).append(cells[2])
    assert rows[crash["nodeid"]] and set(rows[crash["nodeid"]]) == {
        "2 finished tasks recomputed, 1 problems: torn qa record"
    }
    assert rows[disk["nodeid"]] == ["2 problems: a; b"]
    assert set(rows[conc["nodeid"]]) == {"1 problems: catalog read back wrong"}
    assert rows[rehearsal["nodeid"]] == ["3 tasks given up"] * 2 + [
        "3 tasks given up, 1 problems: restart failed"
    ]
    assert "4 cases ended badly" in rows[fuzz["nodeid"]]
