"""Alerts: run the campaign's notification command (``campaign.notify``) with a summary.

The command is an argv list, run without a shell, with the summary as one extra argument;
its output goes to ``logs/notify.log``. It never blocks or stops the driver: it is started
and left to run (reaped when the run ends, or left behind if it outlasts the driver), and a
command that cannot start is logged as a warning.
"""

from __future__ import annotations

import logging
import subprocess

log = logging.getLogger(__name__)

# Seconds the driver waits, at its end, for notification commands still running.
REAP_S = 5.0


class Notifier:
    """Sends a campaign's alerts: once when the failed fraction of this run reaches the
    threshold, and when the run finishes."""

    def __init__(self, campaign, total: int):
        self.campaign = campaign
        self.total = total
        self.alerted = False
        self.started: list[subprocess.Popen] = []

    def _summary(self, what: str, outcome: dict) -> str:
        c = self.campaign
        return (f"covmocks campaign {c.name} version {c.version} ({c.description}): {what}: "
                f"{outcome['done']} done, {outcome['failed']} failed of {self.total} tasks "
                f"in this run; {c.directory}")  # fmt: skip

    def send(self, summary: str) -> None:
        notify = self.campaign.notify
        if notify is None:
            return
        logfile = self.campaign.layout.logs / "notify.log"
        try:
            logfile.parent.mkdir(parents=True, exist_ok=True)
            with open(logfile, "a") as out:
                self.started.append(subprocess.Popen(
                    [*notify.command, summary], stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True,
                ))  # fmt: skip
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the command or summary
            log.warning("notification command %s failed to start: %s", notify.command[0], exc)

    def settled(self, outcome: dict) -> None:
        """After each finished task: alert once the failed fraction reaches the threshold."""
        notify = self.campaign.notify
        if notify is None or self.alerted or not self.total:
            return
        if outcome["failed"] / self.total >= notify.failure_fraction:
            self.alerted = True
            self.send(self._summary(f"failures reached {notify.failure_fraction:.0%}", outcome))

    def finished(self, outcome: dict) -> None:
        """The run ended: say so, then give running commands a moment to finish."""
        self.send(self._summary("run finished", outcome))
        for proc in self.started:
            try:
                proc.wait(timeout=REAP_S)
            except subprocess.TimeoutExpired:
                log.warning("notification command (pid %d) still running; left", proc.pid)
