"""docs/reliability.md is what scripts/reliability.py renders from docs/reliability.json, the
tests it names still exist, and no recorded run lost anything."""

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


def test_nothing_was_lost():
    script = _script()
    page = script.render(json.loads(script.RESULTS.read_text()))
    rows = [line for line in page.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) > 10
    lost = [row.split(" | ")[2] for row in rows[1:]]
    assert set(lost) == {"nothing"}, [row for row in rows[1:] if " | nothing | " not in row]
