"""When a box's clustering can be measured: the driver's side of ``covmocks.clustering.thresholds``.

A snapshot with a number-density sample measures nothing until its threshold is fixed, and
that waits for the snapshot's calibration boxes (its first realizations). Meanwhile
(``route``) its calibration boxes are made without measuring, and its other boxes are held;
once every calibration box has settled (made, or failed for good), the threshold is fixed
(``settled``) and the held boxes are released with the calibration boxes' measurements. Boxes
of snapshots whose thresholds are all given never wait.

Work items are ``(task, generate, cuts)``: make the box (``generate``) or only measure it,
with the snapshot's ``thresholds.SampleCut`` s, or ``None``: make it, measure nothing now.
"""

from __future__ import annotations

import collections
import logging

from covmocks.clustering import thresholds
from covmocks.core.layout import redshift_label

log = logging.getLogger(__name__)


class SampleGate:
    """Holds and releases a run's work items. ``failed``: ids of tasks that will not run
    (failed for good, or blocked on a missing input); a calibration box counts as made once
    its task is done (catalog and QA record; ``plan``, or ``settled``) with its sample file."""

    def __init__(self, campaign, plan, failed: set[str]):
        self.campaign = campaign
        self.fixed = thresholds.load(campaign.layout)
        self.failed = set(failed)
        self.done = {t.task_id for t in plan.tasks if t.state == "done"}
        by_z = collections.defaultdict(list)
        for task in plan.tasks:
            by_z[redshift_label(task.redshift)].append(task)
        clustering = campaign.clustering
        self.calibration = {z: thresholds.calibration(clustering, tasks)
                            for z, tasks in by_z.items()}  # fmt: skip
        self.held = collections.defaultdict(list)  # label -> [(task, generate)]
        self.unmeasured = collections.defaultdict(list)  # label -> calibration tasks made
        self.broken: set[str] = set()  # snapshots whose thresholds could not be fixed

    def _cuts(self, task):
        return thresholds.cuts(self.campaign.clustering, task.redshift, self.fixed)

    def _calibrates(self, task) -> bool:
        label = redshift_label(task.redshift)
        return any(t.task_id == task.task_id for t in self.calibration[label])

    def route(self, task, generate: bool) -> tuple | None:
        """The work item to submit now for ``task``, or None: nothing to do (a measurement
        at a snapshot without samples, or whose thresholds could not be fixed) or held
        until its thresholds are fixed."""
        cuts = self._cuts(task)
        label = redshift_label(task.redshift)
        if cuts is not None or label in self.broken:
            return (task, generate, cuts or None) if generate or cuts else None
        if self._calibrates(task):
            if generate:
                return (task, True, None)
            self.unmeasured[label].append(task)
            return None
        self.held[label].append((task, generate))
        return None

    def settled(self, task, made: bool, measured: bool) -> list[tuple]:
        """``task`` was made (``made``; its clustering ``measured`` or not) or failed for
        good: the work items this releases."""
        label = redshift_label(task.redshift)
        if not made:
            self.failed.add(task.task_id)
            return self._release(label)
        self.done.add(task.task_id)
        cuts = self._cuts(task)
        if measured:
            return self._release(label)
        if cuts:  # made without cuts, fixed meanwhile
            return [(task, False, cuts)]
        if cuts is None and self._calibrates(task) and label not in self.broken:
            self.unmeasured[label].append(task)
        return self._release(label)

    def release_ready(self) -> list[tuple]:
        """Work items of every snapshot whose calibration boxes have all settled already."""
        return [item for label in list(self.calibration) for item in self._release(label)]

    def waiting(self) -> list[str]:
        """Task ids still held (a calibration box never settled)."""
        held = [t for items in self.held.values() for t, _ in items]
        return [t.task_id for t in held + [t for ts in self.unmeasured.values() for t in ts]]

    def _release(self, label: str) -> list[tuple]:
        waiting = self.held[label] or self.unmeasured[label]
        calibration = self.calibration[label]
        if not waiting or self._cuts(calibration[0]) is not None or label in self.broken:
            return []
        layout = self.campaign.layout
        made = [t for t in calibration if t.task_id in self.done and t.task_id not in self.failed
                and layout.samples(t.task_id).exists()]  # fmt: skip
        settled = {t.task_id for t in calibration if t.task_id in self.failed
                   or t.task_id in self.done}  # fmt: skip
        if len(settled) < len(calibration):
            return []  # a calibration box is still to be made
        try:
            self.fixed = thresholds.fix(self.campaign, calibration[0].redshift, made)
            cuts = self._cuts(calibration[0])
        except (OSError, ValueError, KeyError) as exc:
            log.error("z=%s: thresholds not fixed, its clustering is not measured: %s", label,
                      exc)  # fmt: skip
            self.broken.add(label)
            cuts = None
        items = [(t, g, cuts) for t, g in self.held.pop(label, []) if g or cuts is not None]
        unmeasured = self.unmeasured.pop(label, [])
        if cuts is not None:
            items += [(t, False, cuts) for t in unmeasured]
        return items
