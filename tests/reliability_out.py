"""The reliability summaries that tests write for the generated reliability table: each test
module's summary (a JSON object with its ``test`` name) is merged, under that name, into the
file that ``$COVMOCKS_RELIABILITY_OUT`` names (nothing is written when it is unset)."""

from __future__ import annotations

import json
import os
from pathlib import Path

SUMMARY_ENV = "COVMOCKS_RELIABILITY_OUT"


def merge_summary(summary: dict) -> Path | None:
    """Merge ``summary`` into ``$COVMOCKS_RELIABILITY_OUT`` under ``summary["test"]``, with
    the pytest node id of the test that made it (``nodeid``), keeping the other tests'
    entries (a file that is missing or not JSON starts afresh);
    the file written, or None when the variable is unset."""
    out = os.environ.get(SUMMARY_ENV)
    if not out:
        return None
    current = os.environ.get("PYTEST_CURRENT_TEST", "")  # "tests/x.py::test_y (call)"
    summary = {"nodeid": current.rsplit(" (", 1)[0], **summary}
    path = Path(out)
    try:
        merged = json.loads(path.read_text())
    except (OSError, ValueError):
        merged = {}
    if not isinstance(merged, dict):
        merged = {}
    merged[summary["test"]] = summary
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(merged, indent=1))
    os.replace(tmp, path)
    return path
