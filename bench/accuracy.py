"""Benchmark: the accuracy of the star-formation-history settings (time steps, precision).

Usage: python bench/accuracy.py [--hosts 1e4] [--redshifts 0,1,3] [--steps 400,200,...]
       [--tolerance 0.01] [--quantile 0.999] [--ssfr-floor -14]

For each redshift, one synthetic host catalog is populated once (every random draw: the
``central`` and ``satellite`` kernels); then the star-formation histories of all its galaxies
are evaluated with each number of time steps (``n_t_table``) in float64 and float32, and
compared galaxy by galaxy with a 400-step float64 reference (the same draws: only the
integration changes). Prints a Markdown table per redshift: the quantiles of |d log10 M*|,
the fraction of galaxies beyond the tolerance, the largest |d log10 SFR| among galaxies whose
reference sSFR is above the floor (and among all), how many galaxies change ``is_quenched``,
and the warm evaluation time per galaxy; then the cheapest setting whose 99.9th percentile
stays within the tolerance divided by a safety margin (default 2: other host populations
than these synthetic ones have other tails) at every redshift.

The SFR is the history at t_obs, the table's last time, so the number of steps does not
change it; precision does, by float rounding. Galaxies below the sSFR floor are those at
diffstar's SFR floor (1e-14 Msun/yr) or a deep quenching drop: their log SFR is reported
separately (column "all").
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from covmocks.box import spec
from covmocks.core import limits
from covmocks.galaxies import diffsky, registry
from covmocks.halos import sources

REFERENCE = (400, "float64")
SFR_TOLERANCE = 1e-3  # dex, log10 SFR of galaxies above the sSFR floor


def evaluate(draws, n_t, precision):
    """(log10 M*, log10 SFR, warm seconds) of every galaxy of ``draws`` with one setting."""
    mdl = registry.get_model("diffsky_sfh", {"n_t_table": n_t, "precision": precision})
    mdl.histories(draws)  # compile
    t0 = time.perf_counter()
    out = mdl.histories(draws)
    return out["log10_mstar"], out["log10_sfr"], time.perf_counter() - t0


def galaxies(mdl, n_hosts, redshift, seed):
    """Every draw of one box's galaxies (``DiffskySFH.draw``), and the snapshot."""
    source = sources.open_source("synthetic", n_hosts=n_hosts, seed=seed, redshift=redshift,
                                 log10_mhost_min_msun=limits.SYNTHETIC_MHOST_MIN)  # fmt: skip
    snap = diffsky.CosmicTimes.from_header(source.header)
    hosts = next(iter(source.iter_blocks(n_hosts)))
    return mdl.draw(hosts, snap, diffsky.snapshot_key(seed, 0, spec.snapshot_id(redshift))), snap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=float, default=1e4)
    parser.add_argument("--redshifts", default="0,1,3")
    parser.add_argument("--steps", default="400,200,100,64,48,40,36,32,28,24,20,16,12,8")
    parser.add_argument("--tolerance", type=float, default=0.01, help="dex")
    parser.add_argument("--quantile", type=float, default=0.999)
    parser.add_argument(
        "--margin",
        type=float,
        default=2.0,
        help="choose the cheapest setting within tolerance / margin",
    )
    parser.add_argument("--ssfr-floor", type=float, default=-14.0, help="log10 1/yr")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    mdl = registry.get_model("diffsky_sfh", {})
    q = args.quantile
    holds: dict[tuple, list[bool]] = {}
    print("## Star-formation-history accuracy: time steps and precision\n")
    print(
        f"- {int(args.hosts):,} synthetic hosts (log10 M > {limits.SYNTHETIC_MHOST_MIN}) per "
        f"redshift, seed {args.seed}; reference: {REFERENCE[0]} steps, {REFERENCE[1]}; "
        f"tolerance {args.tolerance} dex for {q:.1%} of galaxies"
    )
    print(
        f"- log SFR compared for galaxies with reference log sSFR > {args.ssfr_floor} "
        "(column 'SFR > floor'), and for all; 'flips': galaxies whose is_quenched changes"
    )
    print(
        f"- CPUs usable: {len(os.sched_getaffinity(0))}, load average {os.getloadavg()[0]:.1f}; "
        "times: warm evaluation of every galaxy's history (noisy on a shared machine)\n"
    )
    for z in (float(s) for s in args.redshifts.split(",")):
        draws, snap = galaxies(mdl, int(args.hosts), z, args.seed)
        ref_m, ref_s, _ = evaluate(draws, *REFERENCE)
        above = ref_s - ref_m > args.ssfr_floor
        ref_q = diffsky.quenched_at_snapshot(ref_s, ref_m, snap.t_obs)
        print(
            f"### z = {z:g} (t_obs {snap.t_obs:.2f} Gyr): {len(ref_m):,} galaxies, "
            f"{(~above).mean():.1%} below the sSFR floor\n"
        )
        print(f"| steps | precision | median dM* dex | p{q * 100:g} dM* dex | max dM* dex "
              f"| > tol | max dSFR dex (SFR > floor) | max dSFR dex (all) | flips "
              f"| us / galaxy |")  # fmt: skip
        print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for n_t in steps:
            for precision in ("float64", "float32"):
                lgm, lgs, sec = evaluate(draws, n_t, precision)
                dm, ds = np.abs(lgm - ref_m), np.abs(lgs - ref_s)
                flips = int(np.sum(diffsky.quenched_at_snapshot(lgs, lgm, snap.t_obs) != ref_q))
                dm_q, ds_above = np.quantile(dm, q), ds[above].max()
                ok = bool(dm_q <= args.tolerance / args.margin and ds_above <= SFR_TOLERANCE)
                holds.setdefault((n_t, precision), []).append(ok)
                print(f"| {n_t} | {precision} | {np.median(dm):.2e} | {dm_q:.2e} "
                      f"| {dm.max():.2e} | {np.mean(dm > args.tolerance):.2%} "
                      f"| {ds_above:.1e} | {ds.max():.1e} | {flips} "
                      f"| {sec / len(lgm) * 1e6:.2f} |")  # fmt: skip
        print()
    good = [(n, p) for (n, p), oks in holds.items() if all(oks)]
    cheapest = min(good, key=lambda s: (s[0], s[1] != "float32")) if good else None
    print(
        f"Cheapest setting within {args.tolerance} dex / {args.margin:g} in log10 M* for "
        f"{q:.1%} of galaxies (and log SFR within {SFR_TOLERANCE:g} dex above the sSFR floor) "
        "at every redshift: "
        f"{cheapest[0]} steps, {cheapest[1]}"
        if cheapest
        else "none"
    )


if __name__ == "__main__":
    main()
