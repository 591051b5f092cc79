"""The notebook API: plan, run and watch a campaign from Jupyter.

``nb = covmocks.workflow.notebook.open_campaign("campaigns/demo.yaml")``; ``nb.plan()``,
``handle = nb.run(block=False)``, ``handle.status()``, ``handle.wait()``. The driver of a
non-blocking run is the same ``python -m covmocks.run`` in its own process; the notebook only
reads state from disk, so closing it does not stop the campaign.
"""

from __future__ import annotations

import subprocess
import sys
import time

from covmocks.campaign import Campaign
from covmocks.workflow.driver import Runner
from covmocks.workflow.plan import Plan, make_plan
from covmocks.workflow.status import Status, campaign_status


class CampaignSession:
    """A campaign as a notebook sees it."""

    def __init__(self, campaign: Campaign):
        self.campaign = campaign

    def plan(self) -> Plan:
        """The tasks and their states now."""
        return make_plan(self.campaign)

    def status(self) -> Status:
        """Counts by state, throughput, ETA and failures."""
        return campaign_status(self.campaign)

    def run(self, block: bool = True, monitoring: bool = True):
        """Run the campaign: here until done (returns outcome counts), or, with
        ``block=False``, in a driver process (returns a ``RunHandle``)."""
        if not block:
            return RunHandle(self.campaign, monitoring=monitoring)
        return Runner(self.campaign, monitoring=monitoring).run()


def open_campaign(path) -> CampaignSession:
    """Load a campaign file for a notebook (ConfigError lists every problem)."""
    return CampaignSession(Campaign.load(path))


class RunHandle:
    """A campaign driver running in its own process."""

    def __init__(self, campaign: Campaign, *, monitoring: bool = True):
        self.campaign = campaign
        cmd = [sys.executable, "-m", "covmocks.run", str(campaign.path)]
        if not monitoring:
            cmd.append("--no-monitoring")
        console = campaign.layout.driver_console
        console.parent.mkdir(parents=True, exist_ok=True)
        self._console = open(console, "a")
        self.process = subprocess.Popen(cmd, stdout=self._console, stderr=subprocess.STDOUT)

    def status(self):
        """Counts by state per snapshot (rows: redshift, plus 'all') as a pandas DataFrame."""
        import pandas as pd

        st = campaign_status(self.campaign)
        frame = pd.DataFrame.from_dict(st.by_redshift, orient="index").sort_index()
        frame.loc["all"] = pd.Series(st.counts)
        frame.index.name = "redshift"
        return frame

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout: float | None = None, progress: bool = True) -> int:
        """Wait for the driver to finish (a progress bar in notebooks); its exit status."""
        from tqdm.auto import tqdm

        total = len(self.campaign.science.realizations) * len(self.campaign.science.redshifts)
        deadline = None if timeout is None else time.monotonic() + timeout
        with tqdm(total=total, disable=not progress, desc=self.campaign.name) as bar:
            while self.running and (deadline is None or time.monotonic() < deadline):
                bar.n = campaign_status(self.campaign).counts["done"]
                bar.refresh()
                time.sleep(1.0)
            bar.n = campaign_status(self.campaign).counts["done"]
            bar.refresh()
        if self.running:
            raise TimeoutError(f"campaign {self.campaign.name} still running after {timeout} s")
        self._console.close()
        return self.process.returncode

    def cancel(self) -> int:
        """Stop the driver cleanly (SIGTERM: tasks in flight are abandoned, workers stopped)."""
        if self.running:
            self.process.terminate()
        return self.wait(progress=False)
