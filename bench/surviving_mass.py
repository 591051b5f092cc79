"""Benchmark: the surviving stellar mass (model 1.3's ``log10_mstar_surviving``): its offset
from the mass formed, and what the star-formation-history evaluation costs.

Usage: python bench/surviving_mass.py [--hosts 1e5] [--redshifts 0,1,3] [--repeat 3]
       [--before /work/main/covmocks/galaxies/kernels.py]

For each redshift one synthetic host catalog is drawn once (``DiffskySFH.draw``); then the
histories of all its galaxies are evaluated warm (``DiffskySFH.histories``, the default
36 float32 steps) ``--repeat`` times and the fastest is reported per galaxy. Prints, per
redshift, the median of log10 M*_surviving - log10 M*_formed by bin of formed mass (0.5 dex,
bins of at least 100 galaxies) and over all galaxies. ``--before``: the ``kernels.py`` of
an earlier version (loaded under another name), whose ``evaluate_sfh`` is timed on the same
galaxies in the same process, alternating with this version's, for the cost the surviving
mass adds.
"""

from __future__ import annotations

import argparse
import importlib.util
import time

import numpy as np

from bench.accuracy import galaxies
from covmocks.galaxies import registry


def fastest(fn, repeat: int) -> float:
    """The fastest of ``repeat`` warm calls of ``fn`` (s)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def sfh_call(kernels, mdl, draws):
    """``kernels.evaluate_sfh`` on every galaxy of ``draws`` in the model's batches."""
    from covmocks.galaxies.batching import padded_map

    mah = np.concatenate([draws["cen"]["mah"], draws["sat"]["mah"]])
    params = np.concatenate([draws["cen"]["sfh_params"], draws["sat"]["sfh_params"]])
    t_obs, lgt0, fb = (float(draws["ctx"][k]) for k in ("t_obs", "lgt0", "fb"))

    def run():
        return padded_map(
            lambda mah, sfh_params: kernels.evaluate_sfh(
                mdl.n_t_table, mdl.precision, mah, sfh_params, t_obs, lgt0, fb
            ),
            {"mah": mah, "sfh_params": params}, mdl.batch_min, mdl.batch_max,
        )  # fmt: skip

    run()  # compile
    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hosts", type=float, default=1e5)
    p.add_argument("--redshifts", default="0,1,3")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--before", help="kernels.py of an earlier version, timed alongside")
    a = p.parse_args()
    from covmocks.galaxies import kernels

    before = None
    if a.before:
        spec = importlib.util.spec_from_file_location("kernels_before", a.before)
        before = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(before)
    mdl = registry.get_model("diffsky_sfh")
    for z in (float(x) for x in a.redshifts.split(",")):
        draws, _ = galaxies(mdl, int(a.hosts), z, a.seed)
        out = mdl.histories(draws)
        n = len(out["log10_mstar"])
        now = sfh_call(kernels, mdl, draws)
        if before is None:
            t_now = fastest(now, a.repeat)
            print(f"z={z:g}: {n} galaxies, histories {t_now / n * 1e6:.2f} us/galaxy")
        else:
            then = sfh_call(before, mdl, draws)
            t_then = t_now = np.inf
            for _ in range(a.repeat):  # alternated: the machine's load hits both alike
                t_then, t_now = min(t_then, fastest(then, 1)), min(t_now, fastest(now, 1))
            print(f"z={z:g}: {n} galaxies, histories {t_now / n * 1e6:.2f} us/galaxy, "
                  f"before {t_then / n * 1e6:.2f} us/galaxy "
                  f"({t_now / t_then - 1:+.1%}; fastest of {a.repeat} each)")  # fmt: skip
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
