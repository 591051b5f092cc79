"""Benchmark: a 40,000-task campaign through the runner and local Parsl HTEX workers.

The campaign is synthetic (2,000 realizations x 20 redshifts by default), uses the ``local``
machine profile, and runs every task through ``covmocks.workflow.driver.Runner`` with
``stand_in_box``, a trivial box function defined here that writes a tiny file where the catalog
goes and a QA record, so the campaign's on-disk state is real (``done`` = QA record + catalog)
while the science is skipped. It is a benchmark stand-in, never a default: the runner uses it only
because this script passes it as ``box_function``.

Measured and printed as a Markdown table: campaign load and plan time (``write_plan`` on a
fresh directory and again on the finished one, as a resume does), submit rate (from the
``submitted`` events of ``metadata/events.jsonl``: the first ``max_in_flight`` submissions,
then overall), completed tasks per second (overall and between 10% and 90% done), the
driver's peak RSS (``getrusage``) and its RSS sampled during the run at 10%, 50% and 90%
done, the child processes' RSS (interchange, monitoring, worker pool), the size of the
journal, the Parsl logs and the monitoring database, and the time of ``campaign_status``
and of the ``covmocks status --json`` command on the finished campaign.

Usage::

    nice .venv/bin/python bench/orchestration.py --realizations 100 --redshifts 5
    nice .venv/bin/python bench/orchestration.py            # 40,000 tasks
    nice .venv/bin/python bench/orchestration.py --no-monitoring --out /tmp/orch --keep

Without ``--out`` the campaign directory is a temporary directory, removed at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

VENV_BIN = Path(sys.executable).parent
NAME = "bench_orchestration"


def stand_in_box(job) -> dict:
    """BENCHMARK STAND-IN for the box function (``covmocks.apps.box_task.generate_and_validate``):
    no halos, no galaxies, no validation. Never a default; only this benchmark passes it.

    Takes the task's ``covmocks.apps.box_task.BoxJob`` and does what a box leaves on disk, in the
    same order: touches the task's ``.out``/``.err`` logs, writes a tiny file at
    ``job.box.output`` (temporary name, then rename), then the QA record at
    ``job.qa_record`` (likewise), which marks the task done. Returns the QA record (no
    checks: nothing was validated). Imports inside the body: Parsl ships this function to
    the workers by value.
    """
    import json
    import os
    import time
    from pathlib import Path

    start = time.perf_counter()
    log_stem = job.log_stem
    os.makedirs(os.path.dirname(log_stem), exist_ok=True)
    with open(f"{log_stem}.out", "a"), open(f"{log_stem}.err", "a") as err:
        err.write(f"stand-in box {job.task_id} (benchmark, not a catalog)\n")
    output = Path(job.box.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    tmp.write_bytes(f"benchmark stand-in for {job.task_id}\n".encode())
    os.replace(tmp, output)
    record = {
        "task_id": job.task_id,
        "output": str(output),
        "checks": {},
        "wall_s": time.perf_counter() - start,
        "file_bytes": output.stat().st_size,
        "stand_in": "bench/orchestration.py",
    }
    qa = Path(job.qa_record)
    qa.parent.mkdir(parents=True, exist_ok=True)
    tmp = qa.with_name(f".{qa.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, qa)
    return record


def campaign_text(args: argparse.Namespace, base: Path) -> str:
    """The benchmark campaign file: synthetic source, local profile."""
    redshifts = ", ".join(f"{0.5 + 0.075 * i:.3f}" for i in range(args.redshifts))
    return f"""\
# Written by bench/orchestration.py: a runner benchmark with a stand-in box function.
campaign:
  name: {NAME}
  version: 1
  description: runner benchmark; the box function is a stand-in, no catalog is real
  tags: [benchmark]
  seed: 1

science:
  source: synthetic
  n_hosts: 1000
  realizations: {{first: 0, last: {args.realizations - 1}}}
  redshifts: [{redshifts}]

execution:
  profile: local
  max_in_flight: {args.max_in_flight}
  retries: 1
  backoff_base_s: 1
  executor:
    workers_per_node: {args.workers_per_node}

outputs:
  base: "{base}"
  directory: "{{name}}_{{version}}"
"""


class Sampler(threading.Thread):
    """Every ``period`` s: the driver's RSS, its children's RSS, and the journal's counts of
    ``submitted`` and ``done`` events (read incrementally)."""

    def __init__(self, journal: Path, period: float = 0.5):
        super().__init__(daemon=True)
        self.journal, self.period = journal, period
        self.samples: list[tuple[float, int, int, int, int]] = []  # t, sub, done, rss, kids
        self.stop = threading.Event()
        self.proc = psutil.Process()

    def children_rss(self) -> int:
        total = 0
        for child in self.proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        return total

    def run(self) -> None:
        submitted = done = 0
        offset, rest = 0, b""
        while not self.stop.is_set():
            if self.journal.exists():
                with open(self.journal, "rb") as f:
                    f.seek(offset)
                    chunk = f.read()
                offset += len(chunk)
                lines = (rest + chunk).split(b"\n")
                rest = lines.pop()
                for line in lines:
                    if b'"event": "submitted"' in line:
                        submitted += 1
                    elif b'"event": "done"' in line:
                        done += 1
            rss = self.proc.memory_info().rss
            self.samples.append((time.time(), submitted, done, rss, self.children_rss()))
            self.stop.wait(self.period)

    def at_fraction(self, fraction: float, total: int):
        """The first sample with at least ``fraction`` of the tasks done, or None."""
        for sample in self.samples:
            if sample[2] >= fraction * total:
                return sample
        return None


def cpu_s() -> float:
    """CPU seconds of this process and its waited-for children (user + system)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def timed(fn, repeat: int = 1):
    """(best wall time, best CPU time of ``repeat`` calls, last result). On a shared
    machine the CPU time is the steadier figure."""
    best, best_cpu, result = float("inf"), float("inf"), None
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), cpu_s()
        result = fn()
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, cpu_s() - start_cpu)
    return best, best_cpu, result


def ms(wall: float, cpu: float) -> str:
    return f"{wall * 1e3:,.0f} ms (CPU {cpu * 1e3:,.0f} ms)"


def du(path: Path) -> int:
    """Bytes of the files under ``path`` (or of ``path``)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def journal_times(journal: Path) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}
    with open(journal) as f:
        for line in f:
            event = json.loads(line)
            times.setdefault(event["event"], []).append(event["t"])
    return {k: sorted(v) for k, v in times.items()}


def monitoring_counts(db: Path) -> dict[str, int]:
    """Rows of the monitoring database's main tables."""
    counts = {}
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        for table in ("task", "try", "status", "resource"):
            try:
                counts[table] = con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            except sqlite3.Error:
                counts[table] = -1
    return counts


def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def run_benchmark(args: argparse.Namespace, base: Path) -> list[tuple[str, str, str]]:
    from covmocks.campaign import Campaign
    from covmocks.workflow.driver import Runner
    from covmocks.workflow.journal import Journal
    from covmocks.workflow.metadata import write_plan
    from covmocks.workflow.plan import make_plan
    from covmocks.workflow.status import campaign_status

    total = args.realizations * args.redshifts
    path = base / f"{NAME}.yaml"
    path.write_text(campaign_text(args, base))
    rows: list[tuple[str, str, str]] = []

    def row(metric: str, value: str, note: str = "") -> None:
        rows.append((metric, value, note))
        print(f"  {metric}: {value} {note}", file=sys.stderr, flush=True)

    load0 = os.getloadavg()[0]
    t_load, _, campaign = timed(lambda: Campaign.load(path))
    if campaign.directory.exists():
        sys.exit(f"{campaign.directory} exists; give an empty --out")
    row("tasks", f"{total:,}", f"{args.realizations} realizations x {args.redshifts} redshifts")
    row("setup", f"local HTEX, {args.workers_per_node} workers, max_in_flight "
        f"{args.max_in_flight}, monitoring {'on' if args.monitoring else 'off'}",
        f"{os.cpu_count()} CPUs")  # fmt: skip
    row("Campaign.load", f"{t_load * 1e3:.0f} ms")
    t_plan, _, plan = timed(lambda: write_plan(campaign))
    assert plan.counts["todo"] == total, plan.counts
    del plan  # the runner plans again; the driver should hold one plan, not two
    layout = campaign.layout
    row("write_plan (fresh directory)", f"{t_plan:.2f} s", f"manifest "
        f"{mb(du(layout.manifest))}")  # fmt: skip

    # Run as a script, Parsl ships stand_in_box by value (dill, functions of __main__);
    # imported as ``orchestration`` it ships a reference, which workers resolve from here.
    here = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    journal = layout.journal
    sampler = Sampler(journal)
    rss_before = psutil.Process().memory_info().rss
    sampler.start()
    runner = Runner(campaign, monitoring=args.monitoring, progress=False,
                    box_function=stand_in_box)  # fmt: skip
    t0 = time.time()
    outcome = runner.run()
    t_run = time.time() - t0
    sampler.stop.set()
    sampler.join()
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    if outcome["done"] != total:
        print(f"WARNING: {outcome} of {total} tasks", file=sys.stderr)

    times = journal_times(journal)
    sub, done = times.get("submitted", []), times.get("done", [])
    k = min(args.max_in_flight, len(sub))
    burst = (k - 1) / (sub[k - 1] - sub[0]) if k > 1 and sub[k - 1] > sub[0] else float("nan")
    row("Runner.run wall", f"{t_run:.1f} s", f"{outcome['done']:,} done, "
        f"{outcome['failed']} failed; includes re-plan, parsl.load and cleanup")  # fmt: skip
    if done:
        row("first task done after", f"{done[0] - t0:.1f} s", "parsl.load + worker start")
    row("submit rate, first max_in_flight", f"{burst:,.0f} tasks/s",
        f"{k} submissions in {sub[k - 1] - sub[0]:.2f} s")  # fmt: skip
    if len(sub) > 1:
        row("submit rate, overall", f"{(len(sub) - 1) / (sub[-1] - sub[0]):,.1f} tasks/s",
            f"{len(sub):,} submitted events; backpressure ties it to completions")  # fmt: skip
    row("completed, overall", f"{outcome['done'] / t_run:,.1f} tasks/s", "done / Runner.run wall")
    if len(done) >= 10:
        lo, hi = done[len(done) // 10], done[(9 * len(done)) // 10]
        steady = (9 * len(done)) // 10 - len(done) // 10
        row("completed, 10%..90% done", f"{steady / (hi - lo):,.1f} tasks/s",
            "steady state, from the journal")  # fmt: skip
    for fraction in (0.1, 0.5, 0.9):
        sample = sampler.at_fraction(fraction, total)
        if sample:
            row(f"driver RSS at {fraction:.0%} done", mb(sample[3]),
                f"children {mb(sample[4])} (interchange, monitoring, workers)")  # fmt: skip
    lo, hi = sampler.at_fraction(0.1, total), sampler.at_fraction(0.9, total)
    if lo and hi and hi[2] > lo[2]:
        per_task = (hi[3] - lo[3]) / (hi[2] - lo[2])
        row("driver RSS growth, 10%..90% done", f"{per_task:+,.0f} bytes per task",
            f"{mb(hi[3] - lo[3])} over {hi[2] - lo[2]:,} tasks")  # fmt: skip
    row("driver RSS before run", mb(rss_before), "after imports and plan")
    row("driver peak RSS", mb(peak_rss), "getrusage ru_maxrss, whole process life")
    kids = [s[4] for s in sampler.samples]
    if kids:
        row("children peak RSS (sampled)", mb(max(kids)))

    row("journal events.jsonl", mb(du(journal)), f"{sum(map(len, times.values())):,} events")
    row("Parsl run_dir logs/parsl", mb(du(layout.parsl_runs)))
    row("driver log logs/driver.log", mb(du(layout.driver_log)))
    db = layout.monitoring_db
    if db.exists():
        counts = monitoring_counts(db)
        row("monitoring.db", mb(du(db)), ", ".join(f"{k} {v:,}" for k, v in counts.items()))

    t_replan, _, replan = timed(lambda: write_plan(campaign))
    row("write_plan (finished campaign)", f"{t_replan:.2f} s",
        f"{replan.counts['done']:,} done, as a resume re-plans")  # fmt: skip
    del replan
    n = args.repeat
    t, c, _ = timed(lambda: make_plan(campaign), n)
    row("make_plan (finished campaign)", ms(t, c), f"best of {n}; part of status")
    t, c, _ = timed(lambda: Journal(layout.journal).read(), n)
    row("journal read", ms(t, c), f"best of {n}; part of status")
    t, c, st = timed(lambda: campaign_status(Campaign.load(path)), n)
    counts = {k: v for k, v in st.counts.items() if v}
    row("campaign_status (load + status)", ms(t, c), f"best of {n}; {counts}")
    cli = [str(VENV_BIN / "covmocks"), "status", "--json", str(path)]
    t, c, proc = timed(lambda: subprocess.run(cli, capture_output=True, text=True), n)
    if proc.returncode == 0:
        note = f"best of {n}, new process; done {json.loads(proc.stdout)['counts']['done']:,}"
    else:
        note = f"FAILED rc {proc.returncode}: {proc.stderr.strip()[-200:]}"
    row("covmocks status --json", ms(t, c), note)
    t, c, _ = timed(lambda: subprocess.run([sys.executable, "-c", "import covmocks.cli.main"]), n)
    row("  of which start-up + import covmocks.cli.main", ms(t, c))
    row("load average (1 min)", f"{load0:.1f} at start, {os.getloadavg()[0]:.1f} at end",
        "other processes on this machine inflate wall times")  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realizations", type=int, default=2000)
    parser.add_argument("--redshifts", type=int, default=20)
    parser.add_argument("--workers-per-node", type=int, default=2)
    parser.add_argument("--max-in-flight", type=int, default=256)
    parser.add_argument("--monitoring", action=argparse.BooleanOptionalAction, default=True,
                        help="Parsl monitoring database (default: on)")  # fmt: skip
    parser.add_argument("--out", type=Path, help="where to write (default: a temporary dir)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--repeat", type=int, default=3, help="status timings: best of N")
    args = parser.parse_args()
    console = logging.StreamHandler()
    console.setLevel(logging.WARNING)  # Parsl's loggers pass DEBUG records up to the root
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(console)

    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        rows = run_benchmark(args, args.out.resolve())
    else:
        base = Path(tempfile.mkdtemp(prefix="covmocks-orch-"))
        try:
            rows = run_benchmark(args, base)
        finally:
            if args.keep:
                print(f"kept {base}", file=sys.stderr)
            else:
                shutil.rmtree(base, ignore_errors=True)
    print("| metric | value | note |")
    print("|---|---|---|")
    for metric, value, note in rows:
        print(f"| {metric} | {value} | {note} |")


if __name__ == "__main__":
    main()
