"""Benchmark: build the campaign report over 40,000 finished boxes' records.

Usage: python bench/report.py [--realizations 10000] [--redshifts 0.5 1.0 1.5 2.0]
       [--galaxies 50000] [--workers N ...] [--keep DIR]

Makes a synthetic campaign (realizations x redshifts tasks) in a temporary directory (or
DIR), writes one statistics file from ``--galaxies`` random galaxies and copies it for every
task, with a QA record, an empty catalog file (the plan's "done") and journal events; then
times ``load_records`` alone for each ``--workers`` value (1: serial) and ``build_report``
(default workers), wall and CPU seconds (this process and the pool's). The files were just
written, so they are in the page cache: a cold parallel file system adds its metadata
latency per open.
"""

import argparse
import json
import logging
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from covmocks.campaign import Campaign
from covmocks.catalog.summary import BoxStatistics
from covmocks.report import page
from covmocks.report.records import load_records
from covmocks.workflow.metadata import write_plan
from covmocks.workflow.plan import make_plan


def box_statistics(n: int) -> BoxStatistics:
    rng = np.random.default_rng(0)
    is_central = rng.random(n) < 0.6
    is_central[0] = True
    host = np.maximum.accumulate(np.where(is_central, np.arange(n), 0))
    mhalo = rng.normal(11.8, 0.6, n).astype("f4")
    mstar = np.clip(mhalo - 2.0 + rng.normal(0, 0.25, n), 6, 12.5).astype("f4")
    sfr = (mstar - 10.0 + rng.normal(0, 0.6, n)).astype("f4")
    stats = BoxStatistics()
    stats.add({"log10_mstar": mstar + np.float32(0.2), "log10_mstar_surviving": mstar,
               "log10_sfr": sfr, "log10_ssfr": sfr - mstar,
               "log10_mhalo": mhalo, "log10_mpeak": mhalo, "is_central": is_central,
               "host_index": host, "is_quenched": rng.random(n) < 0.3}, 0)  # fmt: skip
    return stats


def make_records(root: Path, realizations: int, redshifts: list[float], galaxies: int):
    path = root / "bench.yaml"
    path.write_text(yaml.safe_dump({
        "campaign": {"name": "bench", "seed": 1},
        "science": {"source": "synthetic", "n_hosts": 1000,
                    "realizations": {"first": 0, "last": realizations - 1},
                    "redshifts": redshifts},
    }, sort_keys=False))  # fmt: skip
    campaign = Campaign.load(path)
    plan = write_plan(campaign)
    layout = campaign.layout
    stats = box_statistics(galaxies)
    summary = stats.summary(box_size=1000.0, h=0.6736, log10_mhost_min_msun=11.0,
                            log10_msub_min_msun=10.5, probe_fraction=float("nan"))  # fmt: skip
    template = root / "template.stats.hdf5"
    stats.write(template, {**summary, "realization": 0, "snapshot": 1, "redshift": 0.5,
                           "snapshot_redshift": 0.5, "seed": 1, "model_name": "diffsky_sfh",
                           "model_version": "0.3.11", "box_size": 1000.0, "h": 0.6736,
                           "Om0": 0.315, "t_obs_gyr": 8.6, "catalog": "x"})  # fmt: skip
    checks = {f"check_{i:02d}": True for i in range(20)}
    t0 = time.time() - 3600.0 * 24
    lines = []
    for i, task in enumerate(plan.tasks):
        shutil.copyfile(template, layout.statistics(task.task_id))
        record = {"task_id": task.task_id, "wall_s": 300.0 + i % 97, "file_bytes": 10**9,
                  "checks": checks, "summary": {"n_galaxies": galaxies}}  # fmt: skip
        layout.qa_record(task.task_id).write_text(json.dumps(record, indent=1))
        task.output.parent.mkdir(parents=True, exist_ok=True)
        task.output.touch()
        t = t0 + i * 2.0
        lines += [json.dumps({"t": t - 300, "task": task.task_id, "event": "submitted"}),
                  json.dumps({"t": t, "task": task.task_id, "event": "done"})]  # fmt: skip
    layout.journal.write_text("\n".join(lines) + "\n")
    return campaign, template.stat().st_size


def cpu_s() -> float:
    """CPU seconds of this process and its finished children (the pool's workers)."""
    own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realizations", type=int, default=10_000)
    parser.add_argument("--redshifts", type=float, nargs="+", default=[0.5, 1.0, 1.5, 2.0])
    parser.add_argument("--galaxies", type=int, default=50_000)
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--keep", type=Path, help="make the campaign here and keep it")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        campaign, size = make_records(root, args.realizations, args.redshifts, args.galaxies)
        n = args.realizations * len(args.redshifts)
        print(f"{n} boxes' records written in {time.perf_counter() - t0:.1f} s "
              f"(statistics file {size / 1e3:.1f} kB)")  # fmt: skip
        plan = make_plan(campaign)
        for workers in args.workers:
            t0, c0 = time.perf_counter(), cpu_s()
            records, skipped = load_records(campaign, plan, workers=workers)
            print(f"load_records, workers={workers}: {len(records)} records "
                  f"({len(skipped)} skipped) in {time.perf_counter() - t0:.1f} s "
                  f"(CPU {cpu_s() - c0:.1f} s)")  # fmt: skip
        t0, c0 = time.perf_counter(), cpu_s()
        path = page.build_report(campaign)
        print(f"build_report (default workers): {time.perf_counter() - t0:.1f} s "
              f"(CPU {cpu_s() - c0:.1f} s), {path.stat().st_size / 1e6:.2f} MB page")  # fmt: skip


if __name__ == "__main__":
    main()
