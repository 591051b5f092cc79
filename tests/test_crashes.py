"""Crashes lose nothing: ``kill -9`` of the driver, of a worker and of an MPI rank at random
(seeded) points of a campaign, round after round, each round a fresh driver
(``python -m covmocks.run``) as a user would restart it; then a clean run finishes it.

A round starts the driver and, once a share of the campaign is done, kills one of:

- the driver, by its pid alone (a login node's OOM killer; not its process group), while it
  starts up or with a box in flight. Parsl's interchange must die with it
  (``covmocks.apps.lifeline``: an orphaned interchange could answer a later driver that drew the
  same ports); its worker pool and busy worker outlive it; the round records them and in turn kills
  them before the restart (a user who looks first) or leaves them running through the next round
  (one who just restarts), so that orphaned workers race the new driver's workers for the same
  boxes;
- a worker in a box (the process with a ``covmocks.apps.box_task`` watchdog child), or one MPI rank
  (``covmocks.cli.generate_mpi``), at a moment drawn from ``AIMS``: any time, or while the catalog,
  its statistics or the ranks' shards are written, or between the catalog's rename and its QA
  record. The driver must see the loss; then it is stopped with SIGTERM, which must leave
  nothing running (nor may a killed worker leave its MPI launcher and ranks running: they
  die with it, ``covmocks.apps.lifeline``).

After every round: every file under a final name (``catalogs/r*/mock_z*.hdf5``,
``qa/<task>.json``, ``qa/<task>.stats.hdf5``, ``qa/<task>.samples.hdf5``, the metadata JSON)
is complete (catalogs pass ``validation.check_file``; the others read back), no other file
sits under ``catalogs/`` beside the tasks' catalogs but hidden temporaries, a QA record
quotes its catalog's SHA-256, a catalog never changes once its task is done and is never
published twice (nothing finished is recomputed), no task is given up ("failed"), and the
journal and ``covmocks status`` read. At the end no temporary is left and every task is done.

Each round's driver runs in a directory of its own (``round-NNN``), and so does everything
it starts: that working directory is how workers, watchdogs, ranks and orphans are found and
ended (by pid). With ``COVMOCKS_RELIABILITY_OUT`` set, a JSON summary of every round (what
was killed, when, in which phase, tasks done before and after, tasks recomputed, orphans) is
merged into that file under the test's name, for a reliability table; ``COVMOCKS_CRASH_SEED``
draws other points.

Ten rounds in all (as the reliability issue asks): a 20-task campaign through seven rounds
(four driver kills, three worker kills), and a 4-task campaign of two-rank MPI boxes through
three (a rank, a worker, the driver), each then finished by a clean run.

The boxes are tiny (50 synthetic hosts, one kernel shape, a short ``sleep`` fault first so
that a warm worker's 0.1 s box can be caught), and the module's campaigns share one JAX
compilation cache (JAX puts the cache's path into its keys unless
``jax_persistent_cache_enable_xla_caches``, a GPU-only option, is off).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

from covmocks.catalog import validation
from covmocks.workflow.journal import Journal
from covmocks.workflow.plan import make_plan
from covmocks.workflow.status import campaign_status
from tests.conftest import LOCAL_RUN, write_campaign
from tests.reliability_out import merge_summary
from tests.test_mpi import MPIEXEC

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("COVMOCKS_CRASH_SEED", "20261128"))
FINAL = 999  # the round number of the final, clean run
# The drivers' environment (inherited by workers and ranks): JAX's cache keys without the
# cache's path, so that the module's campaigns share one cache (the option is GPU-only).
DRIVER_ENV = dict(os.environ, JAX_PERSISTENT_CACHE_ENABLE_XLA_CACHES="none")

# A layer over LOCAL_RUN (one worker, two tasks in flight, retries 2, backoff 1-4 s): boxes
# of 50 synthetic hosts, populated in batches of one shape (one compilation per kernel).
TINY = {
    "science": {"n_hosts": 50, "model_params": {"batch_min": 256, "batch_max": 256}},
    "execution": {"task_walltime_s": 300},
}
TWO_RANKS = {"resources": {"nodes": 1, "ranks": 2}}
# Moments of a box that a kill aims at, one drawn per round: "any time" is a random delay
# into the box; the others wait for the files that mark them (polled every 2 ms): the
# temporary catalog (populating and writing), the statistics' temporary file, the catalog
# under its final name before the QA record (validating), the MPI ranks' shard files.
AIMS = {
    "worker": (
        "any time",
        "catalog being written",
        "statistics being written",
        "catalog published, QA record not yet",
    ),
    "rank": ("any time", "shards being written", "catalog being assembled"),
}

# What a process of a campaign is, by its command line (first match).
ROLES = (
    ("lifeline.py watchdog", "watchdog"),  # covmocks.apps.lifeline's watchdog mode
    ("lifeline.py", "mpi supervisor"),  # covmocks.apps.lifeline over mpiexec (names mpibox too)
    ("covmocks.cli.generate_mpi", "rank"),
    ("hydra_pmi_proxy", "mpi launcher"),
    ("process_worker_pool", "worker pool"),
    ("interchange", "interchange"),  # its title: "parsl: HTEX interchange"
    ("covmocks.run", "driver"),
    ("resource_tracker", "pool helper"),
    ("multiprocessing", "worker"),  # Parsl's workers (and its manager's queue server)
)


def _role(cmdline: tuple[str, ...]) -> str:
    if cmdline and Path(cmdline[0]).name.startswith("mpiexec"):
        return "mpi launcher"
    if cmdline and Path(cmdline[0]).name == "bash":
        return "block shell"  # LocalProvider's wrapper of process_worker_pool.py
    text = " ".join(cmdline)
    return next((role for key, role in ROLES if key in text), "other")


def _proc_table() -> list[tuple[int, int]]:
    """(pid, ppid) of every process but zombies (Linux /proc)."""
    table = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()  # after "pid (comm) "
        if fields[0] != b"Z":
            table.append((int(name), int(fields[1])))
    return table


@dataclasses.dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    round: int
    role: str
    cmdline: tuple[str, ...]

    def brief(self) -> dict:
        return {"pid": self.pid, "role": self.role, "round": self.round,
                "cmd": " ".join(self.cmdline)[:100]}  # fmt: skip


def _wait_for(predicate, timeout: float, interval: float = 0.1):
    """``predicate()``'s first truthy value within ``timeout`` seconds, else None."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value or None
        time.sleep(interval)


def _sigkill(pid: int) -> bool:
    try:
        os.kill(pid, signal.SIGKILL)
        return True
    except ProcessLookupError:
        return False


def _identity(path: Path) -> tuple:
    st = path.stat()
    return (st.st_ino, st.st_size, st.st_mtime_ns, validation.sha256(path))


class Crashes:
    """One campaign driven through rounds of start, kill -9, check."""

    def __init__(self, campaign, workdir: Path, rng: random.Random):
        self.campaign = campaign
        self.layout = campaign.layout
        self.workdir = workdir
        self.rng = rng
        self.tasks = {t.task_id: t for t in make_plan(campaign).tasks}
        self.first_done: dict[str, tuple] = {}  # task -> catalog identity when first seen done
        self.problems: list[str] = []
        self.rounds: list[dict] = []
        self.left: list[Proc] = []  # orphans left running on purpose
        self._orphaned = 0  # rounds that left orphans
        self._failed_seen = 0  # "failed" events reported
        self._republished: dict[str, int] = {}  # task -> catalogs published, where > 1

    # --- processes -----------------------------------------------------------------------
    def rundir(self, round_no: int) -> Path:
        """The working directory of a round's driver, and so of everything it starts."""
        return self.workdir / f"round-{round_no:03d}"

    def processes(self, round_no: int | None = None) -> list[Proc]:
        """Live processes this campaign's drivers started (of one round, or of all): those
        whose working directory is a round's (``rundir``). Not the environment: Parsl's
        interchange sets its process title, which overwrites it in /proc."""
        found = []
        for pid, ppid in _proc_table():
            try:
                cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
                raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if cwd.parent != self.workdir or not cwd.name.startswith("round-"):
                continue
            rnd = int(cwd.name.removeprefix("round-"))
            if round_no is not None and rnd != round_no:
                continue
            cmd = tuple(a.decode(errors="replace") for a in raw.split(b"\0") if a)
            found.append(Proc(pid, ppid, rnd, _role(cmd), cmd))
        return found

    def kill_all(self, procs: list[Proc]) -> list[dict]:
        """SIGKILL each of ``procs`` by pid (a user ending what they found); wait them gone."""
        for p in procs:
            _sigkill(p.pid)
        pids = {p.pid for p in procs}
        _wait_for(lambda: not any(alive(pid) for pid in pids), 10)
        return [p.brief() for p in procs]

    def busy_workers(self, round_no: int) -> list[tuple[int, str, int]]:
        """(worker pid, task id, watchdog pid) of this round's workers in a box: each has a
        watchdog child (``lifeline.py watchdog PID WALLTIME_S <stem>.timeout``)."""
        busy = []
        for p in self.processes(round_no):
            if p.role == "watchdog" and len(p.cmdline) >= 6:
                tid = Path(p.cmdline[5]).name.removesuffix(".timeout")
                busy.append((int(p.cmdline[3]), tid, p.pid))
        return busy

    def ranks(self, round_no: int) -> dict[str, list[int]]:
        """Task id -> pids of this round's ``covmocks.cli.generate_mpi`` ranks."""
        by_task: dict[str, list[int]] = {}
        for p in self.processes(round_no):
            if p.role == "rank" and "--output" in p.cmdline:
                out = Path(p.cmdline[p.cmdline.index("--output") + 1])
                tid = next((t for t, task in self.tasks.items() if task.output == out), str(out))
                by_task.setdefault(tid, []).append(p.pid)
        return by_task

    # --- campaign state ------------------------------------------------------------------
    def done(self) -> set[str]:
        return {t.task_id for t in make_plan(self.campaign).select("done")}

    def events(self) -> list[dict]:
        return Journal(self.layout.journal).read()

    def start(self, round_no: int) -> subprocess.Popen:
        """``python -m covmocks.run`` in the round's directory, its output in driver.log."""
        cwd = self.rundir(round_no)
        cwd.mkdir()
        cmd = [sys.executable, "-m", "covmocks.run", str(self.campaign.path), "--no-monitoring"]
        with open(cwd / "driver.log", "wb") as log:
            return subprocess.Popen(cmd, env=DRIVER_ENV, cwd=cwd, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip

    def phase(self, task_id: str) -> str:
        """Where a box was when it was killed, from its files and the last line of its log."""
        task = self.tasks[task_id]
        out = task.output
        qa = self.layout.qa
        if out.exists() and task.qa_record.exists():
            return "finished"
        if list(qa.glob(f".{task_id}.json.tmp-*")):
            return "writing QA record"
        if out.exists():
            return "validating"
        if list(qa.glob(f".{task_id}.stats.hdf5.tmp-*")):
            return "writing statistics"
        if list(out.parent.glob(f".{out.name}.tmp-*")):
            return "populating into the temporary catalog"
        if list(out.parent.glob(f".{out.name}.mpi-*")):
            return "ranks populating (shards)"
        try:
            lines = Path(f"{task.log_stem}.err").read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "not started"
        last = lines[-1] if lines else ""
        if "launching" in last:
            return "ranks starting"
        if "chunk" in last or "unit" in last:
            return "populating"
        return "starting (fault sleep, imports, kernels)"

    # --- checks --------------------------------------------------------------------------
    def _log_counts(self, needle) -> dict[str, int]:
        """Per task: occurrences of ``needle(task_id, task)`` in the task's .err log."""
        counts = {}
        for tid, task in self.tasks.items():
            try:
                text = Path(f"{task.log_stem}.err").read_text(errors="replace")
            except FileNotFoundError:
                text = ""
            counts[tid] = text.count(needle(tid, task))
        return counts

    def publishes(self) -> dict[str, int]:
        """Catalogs published per task, from the tasks' logs (``wrote <output>`` follows the
        rename under the final name, in generate_box and on rank 0 of mpibox)."""
        return self._log_counts(lambda tid, task: f" wrote {task.output}:")

    def attempts(self) -> dict[str, int]:
        """Starts of each task on a worker (``task <id> on <host> pid``), any driver's."""
        return self._log_counts(lambda tid, task: f"task {tid} on ")

    def check(self, when: str) -> dict:
        """Every invariant of the campaign directory now; problems are recorded (not raised)
        with ``when``. Returns counts for the round's record."""
        bad = []
        layout = self.layout
        by_output = {t.output: tid for tid, t in self.tasks.items()}
        leftovers = []
        rdirs = list(layout.catalogs.iterdir()) if layout.catalogs.exists() else []
        for path in sorted(p for rdir in rdirs for p in rdir.iterdir()):
            if path.name.startswith("."):  # a temporary file or an MPI shard directory
                leftovers.append(str(path.relative_to(layout.root)))
                continue
            if path not in by_output:
                bad.append(f"unexpected file under catalogs/: {path.name} in {path.parent.name}")
                continue
            failed = validation.check_file(path)
            if failed:
                bad.append(f"{path.relative_to(layout.root)} fails validation: {failed}")
        for path in sorted(layout.qa.glob("*")):  # none before the first plan
            if path.name.startswith("."):
                leftovers.append(str(path.relative_to(layout.root)))
            elif path.suffix == ".json":
                bad += self._check_record(path)
            elif path.name.endswith((".stats.hdf5", ".samples.hdf5")):
                try:
                    with h5py.File(path, "r") as f:
                        assert "catalog" in f.attrs and len(f) > 0
                except Exception as exc:  # noqa: BLE001 -- any failure to read is the finding
                    bad.append(f"{path.name} unreadable: {type(exc).__name__}: {exc}")
        for path in (layout.plan_summary, layout.science, layout.config, layout.provenance):
            try:
                json.loads(path.read_text())
            except FileNotFoundError:  # a driver killed before it planned
                pass
            except Exception as exc:  # noqa: BLE001
                bad.append(f"{path.name} unreadable: {type(exc).__name__}: {exc}")
        try:
            rows = [json.loads(line) for line in layout.manifest.read_text().splitlines()]
            if len(rows) != len(self.tasks):
                bad.append(f"plan.jsonl holds {len(rows)} tasks, not {len(self.tasks)}")
        except FileNotFoundError:
            pass
        except Exception as exc:  # noqa: BLE001
            bad.append(f"plan.jsonl unreadable: {type(exc).__name__}: {exc}")
        try:
            events = self.events()
            campaign_status(self.campaign)
        except Exception as exc:  # noqa: BLE001
            bad.append(f"journal or status unreadable: {type(exc).__name__}: {exc}")
            events = []
        done = self.done()
        changed = 0
        for tid in sorted(done):
            ident = _identity(self.tasks[tid].output)
            if self.tasks[tid].output.with_name(f"{self.tasks[tid].output.name}.invalid").exists():
                bad.append(f"{tid}: a catalog was found invalid and set aside")
            if self.first_done.setdefault(tid, ident) != ident:
                changed += 1
                bad.append(f"{tid}: catalog changed after its task was done "
                           f"({self.first_done[tid]} -> {ident})")  # fmt: skip
                self.first_done[tid] = ident
        failed = [e for e in events if e["event"] == "failed"]
        for e in failed[self._failed_seen :]:  # no kill may make the driver give a task up
            bad.append(f"{e['task']}: failed ({e.get('kind')}): {e.get('error')}")
        self._failed_seen = len(failed)
        republished = {tid: n for tid, n in self.publishes().items() if n > 1}
        new = {tid: n for tid, n in republished.items() if self._republished.get(tid) != n}
        for tid, n in new.items():
            bad.append(f"{tid}: catalog published {n} times")
        self._republished.update(new)
        self.problems += [f"{when}: {line}" for line in bad]
        return {
            "done": len(done),
            # finished work done again: a catalog changed once its task was done, or a
            # catalog published a second time
            "recomputed": changed + len(new),
            "leftovers": leftovers,
            "failed_events": len(failed),
            "problems": bad,
        }

    def _check_record(self, path: Path) -> list[str]:
        tid = path.stem
        if tid not in self.tasks:
            return [] if path.name == "report.html" else [f"unexpected QA file {path.name}"]
        try:
            record = json.loads(path.read_text())
        except Exception as exc:  # noqa: BLE001
            return [f"{path.name} unreadable: {type(exc).__name__}: {exc}"]
        task = self.tasks[tid]
        bad = []
        if record.get("task_id") != tid or record.get("output") != str(task.output):
            bad.append(f"{path.name} names another task or file")
        if not (record.get("checks") and all(record["checks"].values())):
            bad.append(f"{path.name}: checks not all passed")
        if not task.output.exists():
            bad.append(f"{path.name} exists without its catalog")
        elif record.get("sha256") != validation.sha256(task.output):
            bad.append(f"{path.name}: sha256 is not the catalog's (catalog replaced?)")
        if not task.layout.statistics(tid).exists():
            bad.append(f"{tid}: done without its statistics file")
        return bad

    # --- rounds --------------------------------------------------------------------------
    def quota(self, round_no: int, n_rounds: int) -> int:
        """Tasks that should be done before this round's kill: spreads the campaign over the
        rounds, leaving some for the final clean run."""
        n = len(self.tasks)
        return min(n - 1, math.ceil(n * (round_no + 1) / (n_rounds + 2)))

    def wait_progress(self, driver, round_no: int, quota: int, timeout: float) -> bool:
        """Until ``quota`` tasks are done (or the driver exits); False, and the stall recorded
        as a problem, on timeout."""
        if _wait_for(lambda: driver.poll() is not None or len(self.done()) >= quota, timeout, 0.2):
            return True
        why = self.stall_reason() or "no diagnosis"
        self.problems.append(f"round {round_no}: driver stalled: not {quota} done in {timeout} s "
                             f"({why})")  # fmt: skip
        return False

    def stall_reason(self) -> str | None:
        """Why the latest driver's workers never got a task, if it is this: its block was
        told another port than the one its interchange bound (its request for that port was
        answered by another interchange, an orphan of a killed driver still connecting to
        the ports its own driver had, which the new driver drew again)."""
        runs = sorted(self.layout.parsl_runs.glob("[0-9]*"))
        if not runs:
            return None
        try:
            log = (runs[-1] / "covmocks" / "interchange.log").read_text(errors="replace")
            script = next((runs[-1] / "submit_scripts").glob("*.sh")).read_text()
        except (OSError, StopIteration):
            return None
        bound = re.findall(r"Bound to port (\d+) for incoming worker", log)
        told = re.findall(r"--port=(\d+)", script)
        if bound and told and bound[-1] != told[-1]:
            return (
                f"hijacked: its block was sent to port {told[-1]}, its interchange listens "
                f"on {bound[-1]}; another interchange answered its WORKER_BINDS"
            )
        return None

    def round(self, round_no: int, target: str, n_rounds: int) -> dict:
        before = self.done()
        n_events = len(self.events())
        record = {"round": round_no, "target": target, "done_before": len(before),
                  "started": time.strftime("%H:%M:%S")}  # fmt: skip
        t0 = time.monotonic()
        driver = self.start(round_no)
        record["driver_pid"] = driver.pid
        quota = self.quota(round_no, n_rounds)
        warm_up = 240 if not before else 150  # the first round compiles the kernels
        if target == "driver":
            self._kill_driver(driver, round_no, quota, warm_up, record, t0)
        else:
            self._kill_in_box(driver, round_no, quota, warm_up, target, record, t0)
        if any(p.round < round_no for p in self.left):
            old = [p for p in self.left if p.round < round_no]
            self.left = [p for p in self.left if p.round >= round_no]
            record["orphans_of_earlier_rounds_killed"] = self.kill_all(old)
        new_events = self.events()[n_events:]
        record["events"] = _event_counts(new_events)
        record.update(self.check(f"round {round_no} ({target})"))
        record["done_after"] = record.pop("done")
        record["wall_s"] = round(time.monotonic() - t0, 2)
        self.rounds.append(record)
        return record

    def _kill_driver(self, driver, round_no, quota, warm_up, record, t0) -> None:
        rng = self.rng
        if rng.random() < 0.25:  # while it plans, loads Parsl, starts its block
            record["trigger"] = "startup"
            time.sleep(rng.uniform(0.3, 5.0))
        else:  # with a box in flight
            record["trigger"] = f"{quota} done, a box in flight, then a random delay"
            if self.wait_progress(driver, round_no, quota, warm_up):
                _wait_for(lambda: driver.poll() is not None or self.busy_workers(round_no), 60)
            time.sleep(rng.uniform(0.0, 2.0))
        record["kill_at_s"] = round(time.monotonic() - t0, 2)
        busy = [tid for _, tid, _ in self.busy_workers(round_no)]
        if driver.poll() is not None:
            record["killed"] = None
            self.problems.append(f"round {round_no}: the driver exited ({driver.returncode}) "
                                 "before its kill")  # fmt: skip
        else:
            _sigkill(driver.pid)
            record["killed"] = {"component": "driver", "pid": driver.pid}
            record["in_flight_at_kill"] = {tid: self.phase(tid) for tid in busy}
        driver.wait()
        record["driver_rc"] = driver.returncode
        time.sleep(0.5)
        if not _wait_for(lambda: not self._interchanges(round_no), 5):
            self.problems.append(f"round {round_no}: the interchange outlived its driver")
        self._orphans(self.processes(round_no), record)

    def _interchanges(self, round_no: int) -> list[Proc]:
        return [p for p in self.processes(round_no) if p.role == "interchange"]

    def _kill_in_box(self, driver, round_no, quota, warm_up, target, record, t0) -> None:
        """Kill a worker or one MPI rank in the middle of a box, at a moment drawn from
        ``AIMS``; wait for the driver to see it; stop the driver with SIGTERM (the next
        round's driver re-runs the box)."""
        rng = self.rng
        aim = rng.choice(AIMS[target])
        record["trigger"] = f"{quota} done, then a box: {aim}"
        progress = self.wait_progress(driver, round_no, quota, warm_up)
        delay = rng.uniform(0.0, 2.5 if target == "worker" else 12.0)
        record["boxes_missed"] = 0
        victim = None
        deadline = time.monotonic() + (warm_up if progress else 30)
        while victim is None and driver.poll() is None and time.monotonic() < deadline:
            found = self._victims(round_no, target)
            if not found:
                time.sleep(0.05)
                continue
            tid, pids, guards = found[0]
            if not self._await(self.tasks[tid], aim, delay, guards):
                record["boxes_missed"] += 1  # the box ended first: the next one
                delay /= 2
                continue
            living = [pid for pid in pids if alive(pid)]
            if living and _sigkill(pid := rng.choice(living)):
                victim = (tid, pid)
                record["kill_at_s"] = round(time.monotonic() - t0, 2)
                if aim == "any time":
                    record["delay_s"] = round(delay, 3)
                record["phase"] = self.phase(tid)  # the killed process moves no more
        if victim is None:
            record["killed"] = None
            self.problems.append(f"round {round_no}: no {target} in a box to kill "
                                 f"(driver rc {driver.poll()})")  # fmt: skip
        else:
            tid, pid = victim
            record["killed"] = {"component": target, "pid": pid, "task": tid}
            # The driver sees the loss (a worker: within Parsl's heartbeat period, "lost";
            # ranks: at once, a failed MPI run, "retry") and re-runs the box.
            t_kill = time.time()
            wanted = ("lost", "retry", "timeout", "failed")
            if record["phase"] == "finished":  # the box ended just before the kill landed
                seen = "nothing to see: the box had just finished"
            else:
                seen = _wait_for(lambda: self._events_after(tid, t_kill, wanted), 60, 0.3)
            record["driver_saw"] = seen or "nothing in 60 s"
            if seen is None:
                self.problems.append(f"round {round_no}: the driver did not react to the kill of "
                                     f"{tid}'s {target}")  # fmt: skip
            record["reaction_s"] = round(time.time() - t_kill, 2)
        self._stop(driver, round_no, record)

    def _await(self, task, aim: str, delay: float, guards: list[int]) -> bool:
        """Wait for the moment ``aim`` of ``task``'s box (``delay`` seconds into it for
        "any time"); False when the box ended first (none of ``guards`` alive)."""
        in_box = lambda: any(alive(pid) for pid in guards)  # noqa: E731
        if aim == "any time":
            end = time.monotonic() + delay
            while time.monotonic() < end and in_box():
                time.sleep(0.01)
            return in_box()
        out = task.output
        while in_box():
            names = _listdir(out.parent)
            if aim in ("catalog being written", "catalog being assembled"):
                if any(n.startswith(f".{out.name}.tmp-") for n in names):
                    time.sleep(self.rng.uniform(0.0, 0.15))  # somewhere in the writing
                    return in_box()
            elif aim == "statistics being written":
                stats = f".{task.task_id}.stats.hdf5.tmp-"
                if any(n.startswith(stats) for n in _listdir(self.layout.qa)):
                    return True
            elif aim == "shards being written":
                shards = [n for n in names if n.startswith(f".{out.name}.mpi-")]
                if any(_listdir(out.parent / n) for n in shards):
                    return True
            elif out.name in names and not task.qa_record.exists():  # published, not validated
                return True
            time.sleep(0.002)
        return False

    def _victims(self, round_no: int, target: str) -> list[tuple[str, list[int], list[int]]]:
        """(task, pids to kill one of, pids alive while the box runs) of this round's boxes."""
        if target == "worker":
            return [(tid, [pid], [dog]) for pid, tid, dog in self.busy_workers(round_no)]
        return [(tid, pids, pids) for tid, pids in sorted(self.ranks(round_no).items())]

    def _events_after(self, tid: str, t_kill: float, wanted: tuple) -> str | None:
        """The journal's events of ``tid`` since ``t_kill`` (``a > b > c``) once one of them
        is one of ``wanted``; None before."""
        kinds = [e["event"] for e in self.events() if e["task"] == tid and e["t"] >= t_kill]
        return " > ".join(kinds) if set(kinds) & set(wanted) else None

    def _stop(self, driver, round_no: int, record: dict) -> None:
        """SIGTERM (Ctrl-C for the driver): Parsl must shut its workers down. What a killed
        worker started in a session of its own (an MPI box's mpiexec and ranks) outlives it:
        those orphans are killed or left running like a killed driver's."""
        if driver.poll() is None:
            driver.send_signal(signal.SIGTERM)
            try:
                driver.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.problems.append(f"round {round_no}: driver still running 90 s after SIGTERM")
                _sigkill(driver.pid)
                driver.wait()
        record["driver_rc"] = driver.returncode
        if _wait_for(lambda: not self.processes(round_no), 15, 0.5):
            return
        stray = self.processes(round_no)
        record["left_after_stop"] = sorted({p.role for p in stray})
        self.problems.append(f"round {round_no}: processes left after the driver stopped: "
                             f"{record['left_after_stop']}")  # fmt: skip
        self.kill_all(stray)

    def _orphans(self, orphans: list[Proc], record: dict) -> None:
        """Leave ``orphans`` running through the next round (a user who just restarts) or
        kill them now (one who looks first), in turn."""
        record["orphans"] = [p.brief() for p in orphans]
        if not orphans:
            return
        self._orphaned += 1
        if self._orphaned % 2 == 0:
            record["orphan_policy"] = "killed before the restart"
            self.kill_all(orphans)
        else:
            record["orphan_policy"] = "left running through the next round"
            self.left += orphans

    def finish(self) -> dict:
        """The user ends every orphan, then runs the campaign to completion."""
        stray = self.processes()
        killed = self.kill_all(stray)
        before = self.done()
        n_events = len(self.events())
        t0 = time.monotonic()
        driver = self.start(FINAL)
        try:
            driver.wait(timeout=420)
        except subprocess.TimeoutExpired:
            self.problems.append("final run: not finished in 420 s")
            _sigkill(driver.pid)
            driver.wait()
        log = (self.rundir(FINAL) / "driver.log").read_text(errors="replace")
        record = {"round": "final", "target": None, "done_before": len(before),
                  "orphans_killed_first": killed, "driver_rc": driver.returncode,
                  "events": _event_counts(self.events()[n_events:])}  # fmt: skip
        if driver.returncode != 0:
            self.problems.append(f"final run: exit status {driver.returncode}: {log[-1000:]}")
        record.update(self.check("final run"))
        record["done_after"] = record.pop("done")
        record["wall_s"] = round(time.monotonic() - t0, 2)
        if record["done_after"] != len(self.tasks):
            self.problems.append(f"final run: {record['done_after']} of {len(self.tasks)} done")
        if record["leftovers"]:
            self.problems.append(f"final run: temporaries never removed: {record['leftovers']}")
        if not _wait_for(lambda: not self.processes(), 15, 0.5):
            left = sorted({p.role for p in self.processes()})
            self.problems.append(f"final run: processes left after the campaign finished: {left}")
        self.rounds.append(record)
        return record

    def summary(self, name: str, seed: int) -> dict:
        attempts = self.attempts()
        killed = collections.Counter(
            r["killed"]["component"] for r in self.rounds if r.get("killed")
        )
        return {
            "test": name,
            "kind": "crashes",
            "campaign": str(self.layout.root),
            "tasks": len(self.tasks),
            "seed": seed,
            "rounds": self.rounds,
            "killed": dict(killed),
            "tasks_recomputed": sum(r["recomputed"] for r in self.rounds),
            # boxes started again after a kill (lost work: the killed attempts themselves)
            "attempts_per_task": attempts,
            "extra_attempts": sum(max(0, n - 1) for n in attempts.values()),
            "problems": self.problems,
        }


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] != b"Z"


def _event_counts(events: list[dict]) -> dict:
    return dict(collections.Counter(e["event"] for e in events))


def _write_summary(summary: dict, workdir: Path) -> None:
    """Into the test's directory, and merged into $COVMOCKS_RELIABILITY_OUT under the test's
    name when set."""
    (workdir / "reliability.json").write_text(json.dumps(summary, indent=1))
    merge_summary(summary)


@pytest.fixture(scope="module")
def jax_cache(tmp_path_factory):
    """One JAX compilation cache for the campaigns of this module (compiled once)."""
    return tmp_path_factory.mktemp("jax-cache")


def _campaign(tmp_path, jax_cache, rng, *layers, sleep_s=(0.5, 2.0), **sections):
    """A tiny campaign sharing the module's JAX cache. Each box first sleeps a random
    ``sleep_s`` (a ``sleep`` fault, ``covmocks.apps.faults``: its first attempt only), so that a
    warm worker's boxes (0.1 s) last long enough to be found and killed."""
    cache = {"execution": {"compilation_cache": str(jax_cache)}}
    campaign = write_campaign(tmp_path, LOCAL_RUN, TINY, cache, *layers, **sections)
    layout = campaign.layout
    layout.metadata.mkdir(parents=True, exist_ok=True)
    if sleep_s:
        faults = {t.task_id: {"action": "sleep", "seconds": round(rng.uniform(*sleep_s), 2)}
                  for t in make_plan(campaign).tasks}  # fmt: skip
        layout.faults.write_text(json.dumps(faults))
    return campaign


def _run_rounds(crashes: Crashes, targets: list[str], name: str, seed: int, workdir: Path):
    try:
        for i, target in enumerate(targets):
            crashes.round(i, target, len(targets))
        crashes.finish()
    finally:
        crashes.kill_all(crashes.processes())
        summary = crashes.summary(name, seed)
        _write_summary(summary, workdir)
    assert not summary["problems"], "\n".join(summary["problems"])
    assert summary["tasks_recomputed"] == 0
    assert summary["rounds"][-1]["done_after"] == len(crashes.tasks)
    return summary


def test_driver_and_worker_killed_at_random_points_of_a_20_task_campaign(tmp_path, jax_cache):
    rng = random.Random(SEED)
    campaign = _campaign(
        tmp_path,
        jax_cache,
        rng,
        campaign={"name": "crashes"},
        science={"realizations": list(range(10)), "redshifts": [0.0, 1.0]},
    )
    targets = ["driver"] * 4 + ["worker"] * 3
    rng.shuffle(targets)
    crashes = Crashes(campaign, tmp_path, rng)
    summary = _run_rounds(crashes, targets, "htex_driver_worker", SEED, tmp_path)
    assert summary["killed"] == {"driver": 4, "worker": 3}


@pytest.mark.mpi
@pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not found beside python or on PATH")
def test_mpi_rank_driver_and_worker_killed_at_random_points(tmp_path, jax_cache):
    rng = random.Random(SEED + 1)
    campaign = _campaign(tmp_path, jax_cache, rng, TWO_RANKS, campaign={"name": "crashesmpi"},
                         science={"realizations": [0, 1], "redshifts": [0.0, 1.0]},
                         sleep_s=None)  # fmt: skip
    targets = ["rank", "worker", "driver"]
    crashes = Crashes(campaign, tmp_path, rng)
    summary = _run_rounds(crashes, targets, "mpi_rank_driver_worker", SEED + 1, tmp_path)
    assert summary["killed"] == {"rank": 1, "worker": 1, "driver": 1}
