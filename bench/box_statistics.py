"""Benchmark: what the per-box statistics cost, as a fraction of the box.

Usage: python bench/box_statistics.py [--n-hosts 100000] [--chunk-hosts 65536] [--repeat 2]

Generates one synthetic box at z = 0.5 per repeat (new seed each time, after one warm-up box
that pays the compilation) and times, inside the same run, the whole ``generate_box`` and
the ``BoxStatistics.add`` calls it makes (wrapped with a timer), plus writing the statistics
file. Prints the box time, the statistics time and their ratio, and the file's size.
"""

import argparse
import logging
import tempfile
import time
from pathlib import Path

from timing import timed

from covmocks.box import populate
from covmocks.box.spec import BoxSpec
from covmocks.catalog.summary import BoxStatistics
from covmocks.galaxies import registry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-hosts", type=int, default=100_000)
    parser.add_argument("--chunk-hosts", type=int, default=65536)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    timer = {"add": 0.0, "write": 0.0}

    BoxStatistics.add = timed(timer, "add", BoxStatistics.add)
    BoxStatistics.write = timed(timer, "write", BoxStatistics.write)
    galaxy_model = registry.get_model("diffsky_sfh", {})
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat + 1):
            spec = BoxSpec(source="synthetic", n_hosts=args.n_hosts, redshift=0.5, seed=i,
                           chunk_hosts=args.chunk_hosts, output=Path(tmp) / f"box{i}.hdf5",
                           statistics=Path(tmp) / f"box{i}.stats.hdf5")  # fmt: skip
            timer.update(add=0.0, write=0.0)
            source = spec.open_source()
            t0 = time.perf_counter()
            summary = populate.generate_box(source, galaxy_model, spec.resolved(source.header))
            box_s = time.perf_counter() - t0
            stats_s = timer["add"] + timer["write"]
            label = "warm-up (compiles)" if i == 0 else f"box {i}"
            print(f"{label}: {args.n_hosts} hosts, {summary['n_galaxies']} galaxies; box "
                  f"{box_s:.2f} s, statistics {stats_s:.3f} s (add {timer['add']:.3f} s, "
                  f"write {timer['write']:.3f} s) = {100 * stats_s / box_s:.2f}% of the box; "
                  f"file {spec.statistics.stat().st_size / 1e3:.1f} kB")  # fmt: skip


if __name__ == "__main__":
    main()
