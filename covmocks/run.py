"""The campaign runner: ``python -m covmocks.run campaign.yaml``.

Streams the plan's runnable tasks through Parsl with a bounded number in flight, retries
transient failures with exponential backoff, re-runs tasks lost with their pilot block
without charging their retry budget, fails deterministic errors at once, and records
everything in the journal (covmocks.state). Re-running after the driver died skips
finished boxes: completion is read from disk.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import heapq
import logging
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from covmocks import state
from covmocks.errors import CovmocksError, InputError, OutputError, WalltimeExceeded

log = logging.getLogger(__name__)

# A task lost with its worker or block re-runs for free, up to this many times (a guard
# against a task that itself kills every worker it lands on).
MAX_LOST = 10


def halo_seed(seed: int, realization: int) -> int:
    """Seed of a realization's synthetic halos: independent per (campaign seed, realization)."""
    return int(np.random.SeedSequence([seed, realization]).generate_state(1, np.uint64)[0])


def uses_mpi(campaign) -> bool:
    """Whether boxes run on MPI ranks: the profile's executor is ``mpi``, or a snapshot asks
    for more than one rank per task."""
    ranks = (campaign.resources_for(z).ranks for z in campaign.science.redshifts)
    return campaign.execution.profile["executor"] == "mpi" or max(ranks) > 1


def parsl_config(campaign, *, monitoring: bool = True):
    """The Parsl Config a run of ``campaign`` loads, and whether its boxes run on MPI ranks."""
    from covmocks.configs.parsl_config import build_config

    mpi = uses_mpi(campaign)
    config = build_config(campaign.execution.profile, campaign.directory, monitoring=monitoring,
                          mpi=mpi)  # fmt: skip
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


def task_spec(campaign, task, mpi: bool = False) -> dict:
    """Everything a worker needs for one box, as plain data; ``mpi``: run it on
    ``task.resources.ranks`` MPI ranks."""
    sci, ex = campaign.science, campaign.execution
    mmin = sci.log10_mhost_min_msun
    return {
        "task_id": task.task_id,
        "realization": task.realization,
        "redshift": task.redshift,
        "snapshot": task.snapshot,
        "source": task.source,
        "input": task.input,
        "n_hosts": sci.n_hosts,
        "halo_seed": halo_seed(campaign.seed, task.realization),
        "log10_mmin_msun": float("-inf") if mmin is None else mmin,
        "seed": campaign.seed,
        "model": sci.model,
        "model_params": sci.model_params,
        "chunk_hosts": ex.chunk_hosts,
        "compression": ex.compression,
        "walltime_s": task.resources.walltime_s,
        "mpi": mpi,
        "ranks": task.resources.ranks,
        "output": str(task.output),
        "qa_record": str(task.qa_record),
        "log_stem": str(task.log_stem),
        "jax_cache": str(campaign.directory / "metadata" / "jax-cache"),
        "campaign_dir": str(campaign.directory),
    }


def classify(exc: BaseException, timeout_marker: Path) -> str:
    """'deterministic' (bad input: no retry), 'timeout', 'lost' (free re-run) or 'transient'."""
    from parsl.executors.high_throughput.errors import ManagerLost, WorkerLost

    from covmocks.validation import ValidationError

    if isinstance(exc, InputError | OutputError | ValidationError | ImportError):
        return "deterministic"  # ImportError: the workers' environment lacks a package
    if isinstance(exc, WalltimeExceeded):
        return "timeout"
    if isinstance(exc, ManagerLost | WorkerLost):
        return "timeout" if timeout_marker.exists() else "lost"
    return "transient"


class Progress:
    """A one-line progress display on a terminal; a log line every 30 s otherwise."""

    def __init__(self, total: int, stream=sys.stderr):
        self.total, self.stream = total, stream
        self.tty = stream.isatty()
        self.t0 = time.monotonic()
        self.last = 0.0

    def update(self, done: int, failed: int, in_flight: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < (0.5 if self.tty else 30.0):
            return
        self.last = now
        rate = done / (now - self.t0) if done else 0.0
        eta = f"{(self.total - done - failed) / rate:.0f}s" if rate else "?"
        line = (f"{done}/{self.total} done, {failed} failed, {in_flight} running, "
                f"{rate * 60:.1f}/min, ETA {eta}")  # fmt: skip
        if self.tty:
            width = 30
            fill = int(width * (done + failed) / max(self.total, 1))
            print(f"\r[{'#' * fill}{'.' * (width - fill)}] {line}", end="", file=self.stream)
        else:
            log.info("progress: %s", line)

    def close(self) -> None:
        if self.tty:
            print(file=self.stream)


class Runner:
    """Runs a campaign's runnable tasks through Parsl; one driver per campaign directory."""

    def __init__(self, campaign, *, monitoring: bool = True, retry: list[str] | None = None,
                 progress: bool = True, box_function=None):  # fmt: skip
        """``box_function(spec) -> qa record`` runs on workers; the default generates and
        validates a box (``covmocks.apps.box``). Benchmarks pass a stand-in."""
        self.campaign = campaign
        self.box_function = box_function
        self.monitoring = monitoring
        self.retry = retry  # task ids (or ["all"]) of failed tasks to run again
        self.progress = progress
        self.cancelled = False
        self.journal = state.Journal(campaign.directory)

    def runnable(self, plan) -> list:
        """Tasks to run: to do, minus those failed before unless asked to retry them."""
        latest = state.last_events(self.journal.read())
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
        from covmocks.plan import write_plan

        directory = self.campaign.directory
        with state.DriverLock(directory):
            plan = write_plan(self.campaign)
            tasks = self.runnable(plan)
            handler = _driver_log(directory)
            try:
                log.info("campaign %s: %d tasks to run (%s)", self.campaign.name, len(tasks),
                         ", ".join(f"{k} {v}" for k, v in plan.counts.items()))  # fmt: skip
                return self._execute(tasks) if tasks else {"done": 0, "failed": 0}
            finally:
                self.journal.close()
                logging.getLogger().removeHandler(handler)
                handler.close()

    def _execute(self, tasks) -> dict:
        import parsl

        from covmocks.apps.box import generate_and_validate

        ex = self.campaign.execution
        config, mpi = parsl_config(self.campaign, monitoring=self.monitoring)
        launcher = ex.profile["provider"]["mpi_launcher"]
        dfk = parsl.load(config)
        app = parsl.python_app(self.box_function or generate_and_validate, executors=["covmocks"])
        pending = list(reversed(tasks))  # pop() from the end keeps plan order
        waiting: list[tuple[float, int, object]] = []  # (ready time, seq, task) heap
        in_flight: dict = {}
        charged: dict[str, int] = {}
        lost: dict[str, int] = {}
        outcome = {"done": 0, "failed": 0}
        bar = Progress(len(tasks)) if self.progress else None
        seq = 0
        try:
            while (pending or waiting or in_flight) and not self.cancelled:
                now = time.monotonic()
                while waiting and waiting[0][0] <= now:
                    pending.append(heapq.heappop(waiting)[2])
                while pending and len(in_flight) < ex.max_in_flight:
                    task = pending.pop()
                    Path(f"{task.log_stem}.timeout").unlink(missing_ok=True)
                    spec = task_spec(self.campaign, task, mpi)
                    if mpi:  # MPIExecutor turns this into the task's $PARSL_MPI_PREFIX
                        resources = mpi_resources(task, launcher)
                        future = app(spec, parsl_resource_specification=resources)
                    else:
                        future = app(spec)
                    in_flight[future] = task
                    self.journal.write(task.task_id, "submitted",
                                       attempt=charged.get(task.task_id, 0) + 1)  # fmt: skip
                timeout = 1.0 if not waiting else max(0.05, min(1.0, waiting[0][0] - now))
                finished, _ = concurrent.futures.wait(
                    list(in_flight), timeout=timeout,
                    return_when=concurrent.futures.FIRST_COMPLETED,
                )  # fmt: skip
                for future in finished:
                    task = in_flight.pop(future)
                    retry_at = self._settle(task, future, charged, lost, outcome)
                    if retry_at is not None:
                        seq += 1
                        heapq.heappush(waiting, (retry_at, seq, task))
                if bar:
                    bar.update(outcome["done"], outcome["failed"], len(in_flight))
        finally:
            if bar:
                bar.update(outcome["done"], outcome["failed"], len(in_flight), force=True)
                bar.close()
            dfk.cleanup()
            parsl.clear()
        log.info("run finished: %d done, %d failed", outcome["done"], outcome["failed"])
        return outcome

    def _settle(self, task, future, charged, lost, outcome) -> float | None:
        """Record a finished future; return when to retry it, or None."""
        ex = self.campaign.execution
        tid = task.task_id
        exc = future.exception()
        if exc is None:
            record = future.result()
            self.journal.write(tid, "done", wall_s=record.get("wall_s"))
            outcome["done"] += 1
            return None
        marker = Path(f"{task.log_stem}.timeout")
        kind = classify(exc, marker)
        error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        if kind == "timeout":
            error = f"killed: {marker.read_text().strip()}"
        if kind == "lost" and lost.get(tid, 0) < MAX_LOST:
            lost[tid] = lost.get(tid, 0) + 1
            self.journal.write(tid, "lost", error=error, lost=lost[tid])
            log.warning("%s lost with its worker (%s); re-running", tid, error)
            return time.monotonic()
        charged[tid] = charged.get(tid, 0) + 1
        if kind == "deterministic" or charged[tid] > ex.retries:
            self.journal.write(tid, "failed", error=error, attempt=charged[tid], kind=kind)
            log.error("%s failed (%s, attempt %d): %s", tid, kind, charged[tid], error)
            outcome["failed"] += 1
            return None
        delay = min(ex.backoff_cap_s, ex.backoff_base_s * 2 ** (charged[tid] - 1))
        self.journal.write(tid, "timeout" if kind == "timeout" else "retry", error=error,
                           attempt=charged[tid], delay_s=delay)  # fmt: skip
        log.warning("%s %s (attempt %d), retrying in %.1f s: %s", tid, kind, charged[tid], delay,
                    error)  # fmt: skip
        return time.monotonic() + delay


def _driver_log(directory: Path) -> logging.Handler:
    """Copy the driver's log records to ``logs/driver.log``."""
    from covmocks.cli import quiet_libraries

    (directory / "logs").mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(directory / "logs" / "driver.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    handler.addFilter(quiet_libraries)  # Parsl's own DEBUG/INFO stay in logs/parsl/
    logging.getLogger().addHandler(handler)
    return handler


class RunHandle:
    """A campaign driver running in its own process, for notebooks (``Campaign.run(block=False)``).

    The driver is the same ``python -m covmocks.run``; the notebook only reads state from disk,
    so closing the notebook does not stop the campaign, and ``status()`` works from anywhere.
    """

    def __init__(self, campaign, *, monitoring: bool = True):
        self.campaign = campaign
        cmd = [sys.executable, "-m", "covmocks.run", str(campaign.path)]
        if not monitoring:
            cmd.append("--no-monitoring")
        logs = campaign.directory / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self._console = open(logs / "driver.console", "a")
        self.process = subprocess.Popen(cmd, stdout=self._console, stderr=subprocess.STDOUT)

    def status(self):
        """Counts by state per snapshot (rows: redshift, plus 'all') as a pandas DataFrame."""
        import pandas as pd

        st = state.campaign_status(self.campaign)
        frame = pd.DataFrame.from_dict(st.by_snapshot, orient="index").sort_index()
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
                bar.n = state.campaign_status(self.campaign).counts["done"]
                bar.refresh()
                time.sleep(1.0)
            bar.n = state.campaign_status(self.campaign).counts["done"]
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


def _stop_on_sigterm() -> None:
    """Let SIGTERM unwind the driver like Ctrl-C, so Parsl shuts its workers down."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def run_command(args: argparse.Namespace, retry: list[str] | None = None) -> int:
    from covmocks.campaign import Campaign

    _stop_on_sigterm()
    campaign = Campaign.load(args.campaign)
    if args.dry_run:
        from covmocks.dryrun import dry_run

        return dry_run(campaign, monitoring=not args.no_monitoring, retry=retry)
    outcome = Runner(campaign, monitoring=not args.no_monitoring, retry=retry).run()
    status = state.campaign_status(campaign)
    print(" ".join(f"{k}={v}" for k, v in status.counts.items() if v))
    return 1 if outcome["failed"] else 0


def main(argv=None) -> int:
    from covmocks.cli import main as cli_main

    return cli_main(["run", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
