"""Benchmark: load, plan and write the 40,000-task production campaign.

Usage: python bench/plan.py [campaign.yaml] [--repeat N]

Prints wall time (best of N) of ``Campaign.load``, ``make_plan`` (states included: every
input is checked) and ``write_plan`` (plan, manifest and metadata, into a temporary
directory given as $SCRATCH), the peak Python heap of each (tracemalloc), and the peak
resident memory of the process.
"""

import argparse
import logging
import os
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

import psutil

from covmocks.campaign import Campaign
from covmocks.workflow.metadata import write_plan
from covmocks.workflow.plan import make_plan

ROMAN = Path(__file__).resolve().parents[1] / "campaigns" / "roman_grs_covariance.yaml"


def best_of(repeat: int, fn):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def heap_peak(fn) -> int:
    """Peak bytes of Python heap allocated while ``fn`` runs."""
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("campaign", nargs="?", type=Path, default=ROMAN)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    process = psutil.Process()
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["SCRATCH"] = scratch
        rss0 = process.memory_info().rss
        held = make_plan(Campaign.load(args.campaign))
        rss_held = process.memory_info().rss - rss0
        del held
        t_load, campaign = best_of(args.repeat, lambda: Campaign.load(args.campaign))
        t_plan, plan = best_of(args.repeat, lambda: make_plan(campaign))
        t_write, _ = best_of(args.repeat, lambda: write_plan(campaign))
        manifest = campaign.layout.manifest
        manifest_mb = manifest.stat().st_size / 1e6

        rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
        heap_plan = heap_peak(lambda: make_plan(campaign))
        heap_write = heap_peak(lambda: write_plan(campaign))

    print(f"campaign   {args.campaign.name}: {len(plan.tasks)} tasks, {plan.counts}")
    print(f"load       {t_load * 1e3:8.1f} ms")
    print(f"make_plan  {t_plan * 1e3:8.1f} ms")
    print(f"write_plan {t_write * 1e3:8.1f} ms  (manifest {manifest_mb:.1f} MB)")
    print(f"heap peak  {heap_plan / 1e6:8.1f} MB make_plan, {heap_write / 1e6:.1f} MB write_plan "
          "(tracemalloc)")  # fmt: skip
    print(f"RSS        {rss0 / 1e6:8.1f} MB after imports, +{rss_held / 1e6:.1f} MB holding one "
          f"plan, {rss_peak / 1e6:.1f} MB peak over the timed runs")  # fmt: skip


if __name__ == "__main__":
    main()
