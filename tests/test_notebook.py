"""The example notebook in docs/ runs a campaign end to end through the notebook API."""

from pathlib import Path

import pytest

from covmocks.workflow.plan import make_plan
from tests.conftest import LOCAL_RUN

pytestmark = pytest.mark.slow
NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "demo_campaign.ipynb"


def test_notebook_runs_a_campaign(make_campaign, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="install the [test] extra")
    nbclient = pytest.importorskip("nbclient", reason="install the [test] extra")
    campaign = make_campaign(LOCAL_RUN, science={"redshifts": [0.0, 0.5]})
    monkeypatch.setenv("COVMOCKS_NOTEBOOK_CAMPAIGN", str(campaign.path))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    source = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")
    assert "open_campaign(" in source  # the notebook API, not the driver's internals
    resources = {"metadata": {"path": str(NOTEBOOK.parent)}}
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources=resources).execute()
    assert make_plan(campaign).counts["done"] == 4
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert any("image/png" in o.get("data", {}) for o in outputs)
