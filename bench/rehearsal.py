"""The production rehearsal: the 40,000-task plan through the local Slurm cluster's pilot
blocks with a REHEARSAL stand-in box, faults injected, the driver killed once; then a
100,000-task plan planned and its status read.

The stand-in (``rehearsal_box``) fires the task's planned fault (``covmocks.apps.faults``), sleeps
``--sleep`` s and writes what ``bench/orchestration.py``'s stand-in writes (a tiny file where
the catalog goes, the QA record): never a catalog, never a default; only this script passes
it to the runner. Faults: ``--fail`` of the tasks (seeded) raise once (a retry, charged);
pilot blocks have a ``--walltime`` of a few minutes, so they end by walltime while tasks run
(their tasks are lost and re-run for free); the driver is SIGKILLed once at ``--kill-at`` of
the tasks done and started again. It must finish with no manual step.

Prints a Markdown table (wall time, tasks per second, driver peak memory, monitoring
database size, ``status`` and ``report`` latency at the end, tasks re-run for free and
charged a retry) and, with ``--json``, writes the figures there.

Usage (as root, with slurm-wlm installed)::

    scripts/slurm-cluster.sh start && eval "$(scripts/slurm-cluster.sh env)"
    nice .venv/bin/python bench/rehearsal.py                      # 40,000 tasks
    .venv/bin/python bench/rehearsal.py --realizations 100 --redshifts 20 --walltime 00:01:00
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from orchestration import du, mb

NAME = "rehearsal"
VENV_BIN = Path(sys.executable).parent
BENCH = Path(__file__).resolve().parent  # workers import covmocks from this tree, too


def rehearsal_box(job) -> dict:
    """REHEARSAL STAND-IN for the box function: the task's planned fault, a short sleep
    (``$COVMOCKS_REHEARSAL_SLEEP_S``), then ``orchestration.stand_in_box``. Imports inside
    the body: Parsl ships this function to the workers by value, without its globals (the
    workers find ``orchestration`` on the PYTHONPATH that the pilot's worker_init sets)."""
    import os
    import time

    from orchestration import stand_in_box

    from covmocks.apps import faults

    faults.inject(job.faults, job.task_id, job.log_stem)
    time.sleep(float(os.environ.get("COVMOCKS_REHEARSAL_SLEEP_S", "0.05")))
    return stand_in_box(job)


def campaign_text(args, base: Path, realizations: int) -> str:
    redshifts = ", ".join(f"{0.5 + 0.075 * i:.3f}" for i in range(args.redshifts))
    conf = os.environ.get("SLURM_CONF", "")
    return f"""\
# Written by bench/rehearsal.py: a REHEARSAL with a stand-in box function; no catalog is real.
campaign: {{name: {NAME}, version: 1, seed: 1, tags: [rehearsal],
           description: "rehearsal: stand-in box, faults injected"}}
science:
  source: synthetic
  n_hosts: 1000
  realizations: {{first: 0, last: {realizations - 1}}}
  redshifts: [{redshifts}]
execution:
  profile: slurm
  max_in_flight: {args.max_in_flight}
  retries: 2
  backoff_base_s: 1
  backoff_cap_s: 4
  executor: {{workers_per_node: {args.workers_per_node}}}
  provider:
    partition: debug
    walltime: "{args.walltime}"
    status_polling_s: 5
    init_blocks: 1
    max_blocks: 1
    worker_init: "export SLURM_CONF={conf} PYTHONPATH={BENCH}:{BENCH.parent}"
outputs: {{base: "{base}"}}
"""


def drive(path: Path) -> int:
    """The driver process: the campaign through ``Runner`` with the stand-in."""
    from covmocks.campaign import Campaign
    from covmocks.workflow.driver import Runner

    outcome = Runner(Campaign.load(path), progress=False, box_function=rehearsal_box).run()
    print(json.dumps(outcome), flush=True)
    return 0


def count_done(journal: Path) -> int:
    try:
        return journal.read_bytes().count(b'"event": "done"')
    except FileNotFoundError:
        return 0


def run_driver(path: Path, log, kill_after: int | None) -> tuple[int, float]:
    """Start a driver; SIGKILL it once ``kill_after`` tasks are done (None: let it finish).
    Returns (exit status, wall seconds)."""
    from covmocks.campaign import Campaign

    journal = Campaign.load(path).layout.journal
    cmd = [sys.executable, __file__, "--drive", str(path)]
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    while proc.poll() is None:
        if kill_after is not None and count_done(journal) >= kill_after:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            # the interchange dies with its driver (covmocks/lifeline.py); end whatever else
            # the dead driver started in its session (Parsl's monitoring processes) too, so
            # that the restarted driver runs alone, as after a user's cleanup
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.5)
    return proc.returncode, time.time() - t0


def timed(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    return time.perf_counter() - t0, done


def rehearse(args, base: Path) -> dict:
    from covmocks.campaign import Campaign
    from covmocks.workflow.journal import Journal
    from covmocks.workflow.metadata import write_plan

    total = args.realizations * args.redshifts
    path = base / f"{NAME}.yaml"
    path.write_text(campaign_text(args, base, args.realizations))
    campaign = Campaign.load(path)
    layout = campaign.layout
    t0 = time.perf_counter()
    plan = write_plan(campaign)
    plan_s = time.perf_counter() - t0
    rng = random.Random(7)
    failing = rng.sample([t.task_id for t in plan.tasks], round(args.fail * total))
    layout.faults.write_text(json.dumps({t: {"action": "raise", "times": 1} for t in failing}))
    os.environ["COVMOCKS_REHEARSAL_SLEEP_S"] = str(args.sleep)
    figures = {"tasks": total, "plan_s": plan_s, "faults_planned": len(failing)}
    with open(base / "drivers.log", "ab") as log:
        rc1, wall1 = run_driver(path, log, kill_after=int(args.kill_at * total))
        done_at_kill = count_done(layout.journal)
        rc2, wall2 = run_driver(path, log, kill_after=None)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    events = Journal(layout.journal).read()
    kinds = [e["event"] for e in events]
    covmocks = str(VENV_BIN / "covmocks")
    status_s, status = timed([covmocks, "status", "--json", str(path)])
    report_s, report = timed([covmocks, "report", "-q", str(path)])
    counts = json.loads(status.stdout)["counts"] if status.returncode == 0 else {}
    db = layout.monitoring_db
    figures |= {
        "first_driver_exit": rc1, "done_when_killed": done_at_kill, "second_driver_exit": rc2,
        "wall_s": wall1 + wall2, "tasks_per_s": total / (wall1 + wall2),
        "done": counts.get("done"), "failed": counts.get("failed"),
        "retried_charged": kinds.count("retry"), "lost_rerun_free": kinds.count("lost"),
        "timeouts": kinds.count("timeout"), "driver_peak_rss_bytes": peak,
        "monitoring_db_bytes": db.stat().st_size if db.exists() else 0,
        "journal_bytes": du(layout.journal), "status_s": status_s, "report_s": report_s,
        "report_ok": report.returncode == 0,
    }  # fmt: skip
    big = base / "lifetime"
    big.mkdir()
    text = campaign_text(args, big, args.lifetime // args.redshifts)
    (big / f"{NAME}.yaml").write_text(text)
    lifetime = Campaign.load(big / f"{NAME}.yaml")
    t0 = time.perf_counter()
    figures["lifetime_tasks"] = len(write_plan(lifetime).tasks)
    figures["lifetime_plan_s"] = time.perf_counter() - t0
    figures["lifetime_status_s"], _ = timed([covmocks, "status", str(big / f"{NAME}.yaml")])
    return figures


def table(f: dict) -> str:
    rows = [
        ("tasks", f"{f['tasks']:,}", f"done {f['done']}, failed {f['failed']}"),
        ("wall time", f"{f['wall_s']:.0f} s", f"{f['tasks_per_s']:.1f} tasks/s, both drivers"),
        ("driver killed (SIGKILL)", f"at {f['done_when_killed']:,} done",
         f"exit {f['first_driver_exit']}; restarted, exit {f['second_driver_exit']}"),
        ("faults planned (raise once)", f"{f['faults_planned']:,}", ""),
        ("retries charged", f"{f['retried_charged']:,}", "journal 'retry' events"),
        ("re-run for free", f"{f['lost_rerun_free']:,}", "journal 'lost': blocks ended"),
        ("driver peak RSS", mb(f["driver_peak_rss_bytes"]), "largest driver process"),
        ("monitoring.db", mb(f["monitoring_db_bytes"]), ""),
        ("journal", mb(f["journal_bytes"]), ""),
        ("covmocks status --json", f"{f['status_s']:.2f} s", "at the end, new process"),
        ("covmocks report", f"{f['report_s']:.2f} s", f"ok: {f['report_ok']}"),
        ("plan", f"{f['plan_s']:.2f} s", "write_plan, fresh directory"),
        (f"lifetime plan ({f['lifetime_tasks']:,} tasks)", f"{f['lifetime_plan_s']:.2f} s",
         f"status {f['lifetime_status_s']:.2f} s"),
    ]  # fmt: skip
    lines = ["| figure | value | note |", "|---|---|---|"]
    return "\n".join([*lines, *(f"| {a} | {b} | {c} |" for a, b, c in rows)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drive", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--realizations", type=int, default=2000)
    parser.add_argument("--redshifts", type=int, default=20)
    parser.add_argument("--lifetime", type=int, default=100_000, help="tasks of the lifetime plan")
    parser.add_argument("--workers-per-node", type=int, default=8)
    parser.add_argument("--max-in-flight", type=int, default=256)
    parser.add_argument("--walltime", default="00:03:00", help="pilot blocks' Slurm walltime")
    parser.add_argument("--sleep", type=float, default=0.05, help="stand-in box seconds")
    parser.add_argument("--fail", type=float, default=0.02, help="fraction failing once")
    parser.add_argument("--kill-at", type=float, default=0.4, help="done fraction: SIGKILL")
    parser.add_argument("--out", type=Path, help="directory (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    if args.drive:
        return drive(args.drive)
    if not os.environ.get("SLURM_CONF"):
        sys.exit('no cluster: eval "$(scripts/slurm-cluster.sh env)" first')
    base = (args.out or Path(tempfile.mkdtemp(prefix="covmocks-rehearsal-"))).resolve()
    base.mkdir(parents=True, exist_ok=True)
    figures = rehearse(args, base)
    commit = ["git", "-C", str(BENCH), "rev-parse", "--short", "HEAD"]
    figures["commit"] = subprocess.run(commit, capture_output=True, text=True).stdout.strip()
    figures["command"] = shlex.join([
        "bench/rehearsal.py", "--realizations", str(args.realizations), "--redshifts",
        str(args.redshifts), "--walltime", args.walltime, "--fail", str(args.fail),
        "--kill-at", str(args.kill_at), "--sleep", str(args.sleep)])  # fmt: skip
    print(table(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0 if figures["done"] == figures["tasks"] and not figures["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
