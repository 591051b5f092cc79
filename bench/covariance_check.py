"""Benchmark: the covariance's physics checks at larger N than the tests.

The helpers are tests/test_covariance_physics.py's.

Usage: python bench/covariance_check.py [--realizations 10000] [--bins 16] [--boxes 400]

1. Gaussian field drawn on the lattice, linear Kaiser (b = 1.5, f = 0.87) along each axis:
   Var(three-axis mean) / Var(one line of sight) per multipole, pooled over the bins above
   6 k_f, measured against the lattice's linear theory and the continuum; the single
   line-of-sight variances over the lattice sum; covariance_gaussian over the lattice sum.
2. Poisson boxes through calc_power (500 Mpc/h, 5e4 points, nmesh 32, 7 bins k_f wide):
   measured / analytic Gaussian variance ((2l + 1)^2 <L_l^2>_bin / n^2 / N_k) per pole, and
   the reference covariance.statistics stores (from the mean multipoles) over the analytic
   one in the lowest bins.
"""

import argparse
import gc
import os
import sys
import time
from pathlib import Path

import numpy as np

# numba's OpenMP threads spin-wait by default: on a loaded 2-core machine a 32^3 calc_power
# call then takes 0.13-0.26 s instead of 8-14 ms
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from covmocks.covariance import gaussian  # noqa: E402
from tests import test_covariance_physics as t  # noqa: E402


def field(n: int, nb: int, seed: int) -> None:
    t0 = time.perf_counter()
    f = t.gaussian_field(n, seed, nb)
    a, high = f["a"], slice(6, None)
    mean, cov = t.theory(a, 1, nb)
    measured = np.diag(f["mean3"]["covariance"]) / np.diag(f["single"]["covariance"])
    measured = measured.reshape(3, nb)
    want, rel = t.mean3_ratios(a, 1, nb, n)
    continuum = t.continuum_ratios(t.BIAS, t.GROWTH)
    print(f"Gaussian lattice field: {n} realizations, bins k_f..{nb} k_f, "
          f"{time.perf_counter() - t0:.1f} s")  # fmt: skip
    print(f"  Var(mean3)/Var(single), bins 7..{nb} k_f: measured, lattice theory, continuum")
    for ell in range(3):
        sigma = np.sqrt(np.sum((want[ell, high] * rel[ell, high]) ** 2)) / len(want[ell, high])
        got, th = measured[ell, high].mean(), want[ell, high].mean()
        print(f"  P{2 * ell}: {got:.4f} +- {sigma:.4f}  {th:.4f}  {continuum[ell]:.4f}  "
              f"(measured - theory: {(got - th) / sigma:+.1f} sigma)")  # fmt: skip
    z = (measured - want) / (want * rel)
    print(f"  per bin: |z| max {np.nanmax(np.abs(z)):.2f}, rms {np.sqrt(np.nanmean(z**2)):.2f}")
    ratio = (np.diag(f["single"]["covariance"]) / np.diag(t.z_covariance(cov))).reshape(3, nb)
    sigma = np.sqrt(np.einsum("bii->ib", t.diag_ratio_cov(a, 1, nb, n)))
    for ell in range(3):
        z = (ratio[ell] - 1) / sigma[ell]
        print(f"  single-LOS variance / lattice sum, P{2 * ell}: mean {ratio[ell].mean():.4f}, "
              f"|z| max {np.abs(z).max():.2f}, rms {np.sqrt(np.mean(z**2)):.2f}")  # fmt: skip
    reference = gaussian.covariance(mean[:, 2], 2 * t.half_lattice(1, nb)[2], 1)
    worst = np.abs(np.diag(reference) / np.diag(t.z_covariance(cov)) - 1).max()
    print(f"  covariance_gaussian of the expected binned multipoles / lattice sum: "
          f"largest |ratio - 1| {worst:.1e}")  # fmt: skip


def poisson(boxes: int, seed: int) -> None:
    t0 = time.perf_counter()
    t.multipoles(np.random.default_rng(0).random((100, 3)) * t.BOX, t.BOX, t.DK1)
    gc.freeze()  # calc_power calls gc.collect three times a call: ~0.15 s each otherwise
    t1 = time.perf_counter()
    p = t.poisson_ensemble(boxes, seed)
    print(f"Poisson boxes: {boxes} x {t.N_OBJECTS} points, nmesh {t.NMESH}, compile "
          f"{t1 - t0:.1f} s, ensemble {time.perf_counter() - t1:.1f} s")  # fmt: skip
    nb, group = t.NB1, p["stats"]["real"]
    want = np.diag(t.z_covariance(t.theory(t.loadings(1, nb, t.SHOT), 1, nb)[1]))
    ratio = (np.diag(group["covariance"]) / want).reshape(3, nb)
    sigma = np.sqrt(np.einsum("bii->ib", t.diag_ratio_cov(t.loadings(1, nb, t.SHOT)[:, 2], 1, nb,
                                                          boxes)))  # fmt: skip
    for ell in range(3):
        z = (ratio[ell] - 1) / sigma[ell]
        print(f"  measured / Gaussian variance, P{2 * ell}: mean {ratio[ell].mean():.4f} "
              f"(expected noise of the mean {np.sqrt(np.sum(sigma[ell] ** 2)) / nb:.4f}), "
              f"|z| max {np.abs(z).max():.2f}, rms {np.sqrt(np.mean(z**2)):.2f}")  # fmt: skip
    stored = (np.diag(group["gaussian_covariance"]) / want).reshape(3, nb)
    print("  stored reference (from the mean multipoles) / analytic variance, bins 1..4 k_f:")
    for ell in range(3):
        print(f"    P{2 * ell}: " + " ".join(f"{x:.3f}" for x in stored[ell, :4]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realizations", type=int, default=10000)
    parser.add_argument("--bins", type=int, default=16, help="Gaussian field: bins k_f wide")
    parser.add_argument("--boxes", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    field(args.realizations, args.bins, args.seed)
    poisson(args.boxes, args.seed)


if __name__ == "__main__":
    main()
