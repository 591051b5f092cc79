"""The campaign driver: streams a plan's runnable tasks through Parsl, one driver per campaign.

Keeps a bounded number of tasks in flight, asks ``covmocks.workflow.retry.RetryPolicy`` what to do
with each failure (re-run, retry after a backoff, or fail), and records everything in the
journal (``covmocks.workflow.journal``). Re-running after the driver died skips finished boxes:
completion is read from disk.
"""

from __future__ import annotations

import collections
import concurrent.futures
import heapq
import logging
import math
import sys
import time
from pathlib import Path

from covmocks.apps.box_task import BoxJob, generate_and_validate, measure_clustering
from covmocks.clustering.measure import ClusteringJob
from covmocks.clustering.samples import rules_for
from covmocks.clustering.threshold_gate import SampleGate
from covmocks.core import logs
from covmocks.core.errors import CovmocksError
from covmocks.core.oneline import error_line
from covmocks.workflow.driver_lock import DriverLock
from covmocks.workflow.journal import Journal, last_events
from covmocks.workflow.metadata import umask, write_plan
from covmocks.workflow.notify import Notifier
from covmocks.workflow.plan import record_written
from covmocks.workflow.retry import RetryPolicy, classify
from covmocks.workflow.space import (
    SpaceWait,
    box_bytes,
    full_directory,
    out_of_space,
    room_needed,
)

log = logging.getLogger(__name__)

# An MPI executor's resource specification for a task of one rank (a measurement).
ONE_RANK = {"num_nodes": 1, "num_ranks": 1, "ranks_per_node": 1}
# A box's clustering measurement is tried this many times (a failed or lost one again
# alone, MEASURE_RETRY_S later), then left unmeasured: never its box again.
MEASURE_ATTEMPTS = 3
MEASURE_RETRY_S = 5.0


def _made_on_disk(task) -> bool:
    """The box's catalog and its completion marker, as the plan counts a box done."""
    return task.output.exists() and record_written(task.qa_record, parse=True)


def uses_mpi(campaign) -> bool:
    """Whether boxes run on MPI ranks: the profile's executor is ``mpi``, or a snapshot asks
    for more than one rank per task."""
    ranks = (campaign.resources_for(z).ranks for z in campaign.science.redshifts)
    return campaign.execution.executor.kind == "mpi" or max(ranks) > 1


def parsl_config(campaign, *, monitoring: bool = True):
    """The Parsl Config a run of ``campaign`` loads, and whether its boxes run on MPI ranks."""
    from covmocks.workflow.pilots import build_config

    mpi = uses_mpi(campaign)
    config = build_config(campaign.execution, campaign.directory, monitoring=monitoring, mpi=mpi)
    if config.monitoring is not None:
        config.monitoring.workflow_name = campaign.name
        config.monitoring.workflow_version = str(campaign.version)
    return config, mpi


def mpi_resources(task, mpi_launcher: str) -> dict:
    """Parsl's ``parsl_resource_specification`` for one MPI task (GPUs split among ranks)."""
    r = task.resources
    spec = {"num_nodes": r.nodes, "num_ranks": r.ranks,
            "ranks_per_node": math.ceil(r.ranks / r.nodes)}  # fmt: skip
    if r.gpus and mpi_launcher == "srun":
        spec["launcher_options"] = f"--gpus-per-task={max(1, r.gpus // r.ranks)}"
    return spec


class Runner:
    """Runs a campaign's runnable tasks through Parsl; one driver per campaign directory."""

    def __init__(self, campaign, *, monitoring: bool = True, retry: list[str] | None = None,
                 progress: bool = True, box_function=None):  # fmt: skip
        """``box_function(job: BoxJob) -> qa record`` runs on workers; the default generates
        and validates a box (``covmocks.apps.box_task``). Benchmarks pass a stand-in."""
        self.campaign = campaign
        self.box_function = box_function or generate_and_validate
        self.monitoring = monitoring
        self.retry = retry  # task ids (or ["all"]) of failed tasks to run again
        self.progress = progress
        self.journal = Journal(campaign.layout.journal)
        ex = campaign.execution
        self.policy = RetryPolicy(ex.retries, ex.backoff_base_s, ex.backoff_cap_s)
        self.measure_attempts: collections.Counter[str] = collections.Counter()
        self.space: SpaceWait | None = None  # set while the driver waits for disk space

    def runnable(self, plan) -> list:
        """Tasks to run: to do, minus those failed before unless asked to retry them."""
        latest = last_events(self.journal.read())
        wanted = set(self.retry or ())
        tasks = []
        for task in plan.select("todo"):
            last = latest.get(task.task_id)
            failed = last is not None and last["event"] == "failed"
            if failed and not ("all" in wanted or task.task_id in wanted):
                continue
            tasks.append(task)
        unknown = wanted - {"all"} - {t.task_id for t in plan.tasks}
        if unknown:
            raise CovmocksError(f"no such task(s) in this campaign: {', '.join(sorted(unknown))}")
        return tasks

    def run(self) -> dict:
        """Run to completion; returns counts of this run's outcomes."""
        layout = self.campaign.layout
        ex = self.campaign.execution
        with umask(ex.umask), DriverLock(layout.lock), logs.copied_to(layout.driver_log):
            self._room_to_start()
            plan = write_plan(self.campaign)
            tasks = self.runnable(plan)
            items = self._work(plan, tasks)
            try:
                log.info("campaign %s: %d tasks to run (%s)", self.campaign.name, len(tasks),
                         ", ".join(f"{k} {v}" for k, v in plan.counts.items()))  # fmt: skip
                return self._execute(items, len(tasks)) if items else {"done": 0, "failed": 0}
            finally:
                self.journal.close()

    def _work(self, plan, tasks) -> list[tuple]:
        """The work items (``covmocks.clustering.threshold_gate``) of ``tasks``, and the
        measurements that boxes already made still owe; ``self.gate`` holds what must wait for
        thresholds."""
        if self.campaign.clustering is None:
            self.gate = None
            return [(t, True, None) for t in tasks]
        layout = self.campaign.layout
        latest = last_events(self.journal.read())
        running = {t.task_id for t in tasks}
        failed = {t.task_id for t in plan.tasks if t.state == "blocked" or (
            t.state == "todo" and t.task_id not in running
            and latest.get(t.task_id, {}).get("event") == "failed")}  # fmt: skip
        self.gate = SampleGate(self.campaign, plan, failed)
        owed = [t for t in plan.select("done") if not layout.clustering(t.task_id).exists()
                and rules_for(self.campaign.clustering, t.redshift)]  # fmt: skip
        lost = [t.task_id for t in owed if not layout.samples(t.task_id).exists()]
        if lost:
            log.warning("%d done boxes have no sample file, so no clustering (made before "
                        "the clustering section, or the file was removed): %s", len(lost),
                        ", ".join(lost[:20]))  # fmt: skip
            owed = [t for t in owed if t.task_id not in set(lost)]
        routed = [self.gate.route(t, True) for t in tasks]
        routed += [self.gate.route(t, False) for t in owed]
        return [item for item in routed if item is not None] + self.gate.release_ready()

    def _submit(self, apps, item, mpi: bool, launcher: str):
        task, generate, cuts = item
        clustering = cuts and ClusteringJob.for_task(self.campaign, task, cuts)
        job = BoxJob.for_task(self.campaign, task, mpi, clustering=clustering or None)
        if generate:
            Path(f"{task.log_stem}.timeout").unlink(missing_ok=True)
            self.journal.write(task.task_id, "submitted",
                               attempt=self.policy.attempt(task.task_id))  # fmt: skip
        app = apps[0] if generate else apps[1]
        if mpi:  # MPIExecutor turns this into the task's $PARSL_MPI_PREFIX
            spec = mpi_resources(task, launcher) if generate else dict(ONE_RANK)
            return app(job, parsl_resource_specification=spec)
        return app(job)

    def _execute(self, items, n_boxes: int) -> dict:
        import parsl
        from tqdm import tqdm

        ex = self.campaign.execution
        config, mpi = parsl_config(self.campaign, monitoring=self.monitoring)
        launcher = ex.launcher.mpi_launcher
        dfk = parsl.load(config)
        apps = [parsl.python_app(f, executors=["covmocks"])
                for f in (self.box_function, measure_clustering)]  # fmt: skip
        pending = list(reversed(items))  # pop() from the end keeps plan order
        waiting: list[tuple[float, int, object]] = []  # (ready time, seq, task) heap
        in_flight: dict = {}
        held: list[tuple] = []  # boxes that failed for want of space (``self.space``)
        outcome = {"done": 0, "failed": 0}
        notifier = Notifier(self.campaign, n_boxes)
        every_s = 0.5 if sys.stderr.isatty() else 30.0
        bar = tqdm(total=n_boxes, disable=not self.progress, unit="box", mininterval=every_s,
                   desc=self.campaign.name)  # fmt: skip
        seq = 0
        try:
            while pending or waiting or in_flight or held:
                now = time.monotonic()
                while waiting and waiting[0][0] <= now:
                    pending.append(heapq.heappop(waiting)[2])
                if self.space is not None and self.space.ready():
                    log.warning("space is free again: resuming %d held boxes", len(held))
                    pending.extend(reversed(held))
                    held.clear()
                    self.space = None
                while pending and len(in_flight) < ex.max_in_flight and self.space is None:
                    item = pending.pop()
                    in_flight[self._submit(apps, item, mpi, launcher)] = item
                timeout = 1.0 if not waiting else max(0.05, min(1.0, waiting[0][0] - now))
                if not in_flight:  # a retry's backoff, or space: wait() would return at once
                    time.sleep(timeout)
                finished, _ = concurrent.futures.wait(
                    list(in_flight), timeout=timeout,
                    return_when=concurrent.futures.FIRST_COMPLETED,
                )  # fmt: skip
                for future in finished:
                    item = in_flight.pop(future)
                    if not item[1]:  # a measurement only
                        again = self._measured(item[0], future, item[2])
                        retry_at = again and time.monotonic() + MEASURE_RETRY_S
                    elif self._out_of_space(item[0], future, notifier):
                        held.append(item)
                        retry_at = None
                    else:
                        retry_at = self._settle(item, future, outcome)
                        if retry_at is None:
                            bar.update(1)
                            notifier.settled(outcome)
                            pending.extend(reversed(self._released(item, future)))
                    if retry_at:
                        seq += 1
                        heapq.heappush(waiting, (retry_at, seq, item))
                bar.set_postfix(failed=outcome["failed"], running=len(in_flight), refresh=False)
        finally:
            bar.close()
            dfk.cleanup()
            parsl.clear()
        if self.gate is not None and self.gate.waiting():
            waiting = self.gate.waiting()
            log.error("%d boxes not run or not measured: their snapshot's calibration boxes "
                      "never settled (a done box without its sample file?): %s", len(waiting),
                      ", ".join(waiting[:20]))  # fmt: skip
        log.info("run finished: %d done, %d failed", outcome["done"], outcome["failed"])
        notifier.finished(outcome)
        return outcome

    def _space_wait(self, in_flight: int, *also: Path) -> SpaceWait:
        """A wait for the room ``room_needed`` asks for ``in_flight`` boxes (``also``: a
        directory a box failed to write), sized from this campaign's QA records, else its
        profile."""
        layout = self.campaign.layout
        per_box = box_bytes(sorted(layout.qa.glob("r*.json")),
                            self.campaign.profile.cost.gigabytes_per_task * 1e9)  # fmt: skip
        return SpaceWait(room_needed(layout, per_box, in_flight, *also),
                         self.campaign.execution.space_poll_s)  # fmt: skip

    def _room_to_start(self) -> None:
        """Before the plan is written and Parsl loaded: wait, saying so once, until the
        campaign's filesystems have room for Parsl's files and one box (``workflow.space``;
        a box that then finds the disk full is held as any other). Not room for every box
        in flight: before a box is made its size is the profile's estimate, made for
        production boxes (a rehearsal's stand-ins are far smaller)."""
        wait = self._space_wait(1)
        if not wait.short():
            return
        message = wait.describe()
        log.error("%s", message)
        Notifier(self.campaign, 0).send(f"covmocks campaign {self.campaign.name}: {message}")
        while not wait.ready():
            time.sleep(1.0)
        log.warning("space is free: starting")

    def _out_of_space(self, task, future, notifier) -> bool:
        """Whether a box failed for want of space; then it is held (``workflow.space``), with
        no retry charged, and the driver stops submitting until space returns."""
        exc = future.exception()
        if not out_of_space(exc):
            return False
        self.journal.write(task.task_id, "held", error=error_line(exc))
        if self.space is None:
            self.space = self._space_wait(self.campaign.execution.max_in_flight,
                                          full_directory(exc, self.campaign.directory))  # fmt: skip
            message = self.space.describe()
            log.error("%s", message)
            notifier.send(f"covmocks campaign {self.campaign.name}: {message}")
        return True

    def _released(self, item, future) -> list[tuple]:
        """The work items a settled box releases: its snapshot's held boxes once the
        thresholds are fixed, and its own measurement again where that failed."""
        task, _, cuts = item
        if self.gate is None:
            return []
        made = future.exception() is None or (cuts is not None and _made_on_disk(task))
        measured = False
        if made and cuts is not None:  # the box was to be measured as well
            measured = not self._measured(task, future, cuts)
            if not measured and self.measure_attempts[task.task_id] >= MEASURE_ATTEMPTS:
                measured = True  # given up: nothing more to release for it
        return self.gate.settled(task, made, measured)

    def _measured(self, task, future, cuts) -> bool:
        """Journal a box's clustering measurement (``clustering``: samples, its time and the
        worker's peak memory, or the error with the attempt); True where it failed and should
        be tried again, alone."""
        tid = task.task_id
        exc = future.exception()
        result = future.result().get("clustering") if exc is None else None
        if result is not None and "error" not in result:
            self.journal.write(tid, "clustering", **result)
            return False
        marker = Path(f"{task.log_stem}.measure-timeout")
        if result is not None:
            error = result["error"]
        elif marker.exists():
            error = f"killed: {marker.read_text().strip()}"
        else:
            error = error_line(exc)
        self.measure_attempts[tid] += 1
        attempt = self.measure_attempts[tid]
        self.journal.write(tid, "clustering", error=error, attempt=attempt)
        again = attempt < MEASURE_ATTEMPTS
        log.error("%s: clustering not measured (attempt %d of %d%s): %s", tid, attempt,
                  MEASURE_ATTEMPTS, ", trying again" if again else "", error)  # fmt: skip
        return again

    def _settle(self, item, future, outcome) -> float | None:
        """Record a finished box; return when to retry it, or None. A box whose worker was
        lost in its measurement (catalog and QA record on disk) is done: only its
        measurement is tried again (``_released``)."""
        task, _, cuts = item
        tid = task.task_id
        exc = future.exception()
        if exc is None or (cuts is not None and _made_on_disk(task)):
            wall_s = future.result().get("wall_s") if exc is None else None
            self.journal.write(tid, "done", wall_s=wall_s)
            outcome["done"] += 1
            return None
        marker = Path(f"{task.log_stem}.timeout")
        kind = classify(exc, marker.exists())
        error = error_line(exc)
        if kind == "timeout" and marker.exists():
            error = f"killed: {marker.read_text().strip()}"
        decision = self.policy.decide(tid, kind)
        if decision.action == "rerun":
            self.journal.write(tid, "lost", error=error, lost=decision.lost)
            log.warning("%s lost with its worker (%s); re-running", tid, error)
            return time.monotonic()
        if decision.action == "fail":
            self.journal.write(tid, "failed", error=error, attempt=decision.charged, kind=kind)
            log.error("%s failed (%s, attempt %d): %s", tid, kind, decision.charged, error)
            outcome["failed"] += 1
            return None
        self.journal.write(tid, decision.event, error=error, attempt=decision.charged,
                           delay_s=decision.delay_s)  # fmt: skip
        log.warning("%s %s (attempt %d), retrying in %.1f s: %s", tid, kind, decision.charged,
                    decision.delay_s, error)  # fmt: skip
        return time.monotonic() + decision.delay_s
