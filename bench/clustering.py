"""Benchmark: what clustering costs a box: keeping the samples' galaxies while the catalog
is written, and measuring the multipoles.

Usage: python bench/clustering.py [--n-hosts 100000] [--repeat 2] [--nmesh 256 512]

1. Extraction: one synthetic box at z = 0.5 per repeat (new seed, after a warm-up box that
   compiles), with the production campaign's two number-density samples (n = 1e-3 and
   5e-4 (h/Mpc)^3 in SFR, margin 1.5) and without any sample, in the same run: the box
   time both ways, the time of ``SampleCollector.add`` and ``write``, and the file's size.
2. Measurement: ``power.measure`` (real space and three lines of sight: four calc_power
   calls) of uniform points at the production samples' sizes in a 500 Mpc/h box, after a
   warm-up call that compiles, with the heap frozen as ``clustering.measure`` does.
"""

import argparse
import gc
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
from timing import timed

from covmocks.box import populate
from covmocks.box.spec import BoxSpec
from covmocks.clustering import power
from covmocks.clustering.samples import Rule, SampleCollector
from covmocks.galaxies import registry

RULES = (Rule("sfr_n1e-3", "sfr", density=1.5e-3), Rule("sfr_n5e-4", "sfr", density=7.5e-4))


def extraction(n_hosts: int, repeat: int) -> None:
    timer = {"add": 0.0, "write": 0.0}
    SampleCollector.add = timed(timer, "add", SampleCollector.add)
    SampleCollector.write = timed(timer, "write", SampleCollector.write)
    galaxy_model = registry.get_model("diffsky_sfh", {})
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeat + 1):
            times = {}
            for rules in ((), RULES):
                samples = Path(tmp) / f"box{i}.samples.hdf5" if rules else None
                spec = BoxSpec(source="synthetic", n_hosts=n_hosts, redshift=0.5, seed=i,
                               output=Path(tmp) / f"box{i}_{len(rules)}.hdf5", samples=samples,
                               sample_rules=rules)  # fmt: skip
                timer.update(add=0.0, write=0.0)
                source = spec.open_source()
                t0 = time.perf_counter()
                summary = populate.generate_box(source, galaxy_model, spec.resolved(source.header))
                times[bool(rules)] = time.perf_counter() - t0
            if i == 0:
                continue  # the warm-up box compiles
            kept = timer["add"] + timer["write"]
            size = spec.samples.stat().st_size
            print(
                f"box {i}: {n_hosts} hosts, {summary['n_galaxies']} galaxies; box "
                f"{times[False]:.2f} s without samples, {times[True]:.2f} s with "
                f"(ratio {times[True] / times[False]:.3f}); SampleCollector add "
                f"{timer['add']:.3f} s + write {timer['write']:.3f} s = "
                f"{100 * kept / times[True]:.2f}% of the box; file {size / 1e3:.1f} kB"
            )


def measurement(nmesh_values: list[int]) -> None:
    box = 500.0
    rng = np.random.default_rng(0)
    power.measure(
        rng.random((1000, 3)) * box,
        np.zeros((1000, 3)),
        box,
        1.0,
        1.79,
        power.PowerSettings(nmesh=nmesh_values[0]),
    )  # fmt: skip  (compiles)
    for nmesh in nmesh_values:
        settings = power.PowerSettings(nmesh=nmesh, k_max=0.4, dk=2)
        for n_target in (5e-4, 1e-3):
            n = int(n_target * box**3)
            pos, vel = rng.random((n, 3)) * box, rng.normal(0, 300, (n, 3))
            gc.freeze()
            t0 = time.perf_counter()
            power.measure(pos, vel, box, 1.0, 1.79, settings)
            elapsed = time.perf_counter() - t0
            gc.unfreeze()
            print(f"measure: nmesh {nmesh}, {n} galaxies (n = {n_target:g} (h/Mpc)^3): "
                  f"{elapsed:.2f} s for real space and three lines of sight")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-hosts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--nmesh", type=int, nargs="+", default=[256, 512])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    extraction(args.n_hosts, args.repeat)
    measurement(args.nmesh)


if __name__ == "__main__":
    main()
