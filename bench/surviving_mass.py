"""Benchmark: the surviving stellar mass (model 1.3's ``log10_mstar_surviving``): its offset
from the mass formed, and what the star-formation-history evaluation costs.

Usage: python bench/surviving_mass.py [--hosts 1e5] [--redshifts 0,1,3] [--repeat 3]

For each redshift one synthetic host catalog is drawn once (``DiffskySFH.draw``); then the
histories of all its galaxies are evaluated warm (``DiffskySFH.histories``, the default
36 float32 steps) ``--repeat`` times and the fastest is reported per galaxy. Prints, per
redshift, the median of log10 M*_surviving - log10 M*_formed by bin of formed mass (0.5 dex,
bins of at least 100 galaxies) and over all galaxies. Run it on two checkouts (PYTHONPATH)
for the before/after cost: a checkout without the surviving mass prints its time only.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.accuracy import galaxies
from covmocks.galaxies import registry


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hosts", type=float, default=1e5)
    p.add_argument("--redshifts", default="0,1,3")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    mdl = registry.get_model("diffsky_sfh")
    for z in (float(x) for x in a.redshifts.split(",")):
        draws, _ = galaxies(mdl, int(a.hosts), z, a.seed)
        mdl.histories(draws)  # compile
        times = []
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            out = mdl.histories(draws)
            times.append(time.perf_counter() - t0)
        n = len(out["log10_mstar"])
        print(f"z={z:g}: {n} galaxies, histories {min(times) / n * 1e6:.2f} us/galaxy "
              f"(fastest of {a.repeat}: {min(times):.2f} s)")  # fmt: skip
        if "log10_mstar_surviving" not in out:
            continue
        formed = out["log10_mstar"]
        offset = out["log10_mstar_surviving"] - formed
        print(f"  median offset, all galaxies: {np.median(offset):+.3f} dex")
        print("  | log10 M*_formed | galaxies | median offset [dex] | 16-84% |")
        print("  |---|---|---|---|")
        for lo in np.arange(7.0, 12.0, 0.5):
            sel = (formed >= lo) & (formed < lo + 0.5)
            if sel.sum() >= 100:
                q16, q50, q84 = np.percentile(offset[sel], [16, 50, 84])
                print(f"  | {lo:.1f}-{lo + 0.5:.1f} | {sel.sum()} | {q50:+.3f} | "
                      f"{q16:+.3f} to {q84:+.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
