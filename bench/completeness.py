"""Benchmark: a box's completeness limits (its in-box probe of the halos below the host cut)
against the direct measurement, the same halos populated with the host cut 0.5 dex lower,
and against the old limit (the 95th percentile of M* or SFR at the cut).

Usage: python bench/completeness.py [--out DIR] [--n-hosts 2000] [--redshifts 0 0.5 1]
       [--seed 20240611] [--abacus PATH --abacus-cut 12.3]

Synthetic boxes: the demo campaign's box (``--n-hosts`` hosts above 10^11 Msun at each
redshift) with its hosts drawn down to 10^10.5 and written to an HDF5 halo file, so that the
box (cut 11) and the direct box (cut 10.5) hold the same halos above 11. ``--abacus``: an
AbacusSummit catalog with the cut ``--abacus-cut`` and 0.5 dex lower. For each box and
selection variable it prints the old limit, the new one with its estimated missing fraction,
the directly measured missing fraction at both, the direct limit, and the probe's added
cost (its populate time over the box's). Writes ``completeness.json`` under ``--out``.
"""

import argparse
import dataclasses
import json
import logging
import tempfile
from pathlib import Path

import numpy as np

from covmocks.box import populate
from covmocks.box.spec import BoxSpec
from covmocks.catalog import completeness
from covmocks.catalog import summary as statistics
from covmocks.core.limits import PROBE_DEX
from covmocks.galaxies import registry
from covmocks.halos import blocks
from covmocks.halos.synthetic import SyntheticSource, box_sizes

MODEL_PARAMS = {"batch_min": 256, "batch_max": 4096}
OLD_QUANTILE = 0.95  # the old definition, the baseline


def old_limit(stats: dict, cut: float, msub: float, select: str) -> float:
    """The old limit: the larger of the 95th percentiles of ``select`` of the centrals in the
    0.1 dex host-mass bin at ``cut`` and of the satellites in the Mpeak bin at ``msub``."""
    found = []
    for key, at in ((f"centrals_mhalo_{select}", cut), (f"satellites_mpeak_{select}", msub)):
        counts = stats[key]
        populated = np.flatnonzero(counts.sum(axis=1))
        row = max(int(np.searchsorted(statistics.MHALO_EDGES, at, side="right")) - 1, 0)
        rows = populated[populated >= row]
        if len(rows):
            cum = np.cumsum(counts[rows[0]])
            i = int(np.searchsorted(cum, OLD_QUANTILE * cum[-1])) + 1
            found.append(float(statistics.EDGES[select][i]))
    return max(found) if found else float("nan")


def _box(spec: BoxSpec) -> tuple[dict, dict]:
    source = spec.open_source()
    model = registry.get_model(spec.model, spec.model_params)
    result = populate.generate_box(source, model, spec.resolved(source.header))
    return result, statistics.read(spec.statistics)


def compare(name: str, spec: BoxSpec, out: Path) -> dict:
    """Run ``spec`` (the box) and its direct twin (cut ``PROBE_DEX`` lower, no samples)."""
    cut = spec.log10_mhost_min_msun
    low_spec = dataclasses.replace(spec, log10_mhost_min_msun=cut - PROBE_DEX,
                                   output=out / f"{name}_low.hdf5",
                                   statistics=out / f"{name}_low.stats.hdf5")  # fmt: skip
    _, low = _box(low_spec)  # first: it pays the compilation
    result, stats = _box(spec)
    a = stats["attrs"]
    row = {"box": name, "redshift": a["redshift"], "n_hosts": result["n_hosts"],
           "n_galaxies": result["n_galaxies"], "probe_hosts": result["probe"]["n_hosts"],
           "probe_fraction": result["probe"]["fraction"],
           "box_s": result["wall_s"] - result["probe"]["wall_s"],
           "probe_s": result["probe"]["wall_s"]}  # fmt: skip
    for select, (main_key, probe_key) in completeness.HISTOGRAM_OF.items():
        edges = statistics.EDGES[select]
        added = low[main_key] - stats[main_key]
        direct, _ = completeness.missing_fraction(stats[main_key], added, 1.0)
        estimate, error = completeness.missing_fraction(
            stats[main_key], stats[probe_key], a["completeness_probe_fraction"]
        )
        old = old_limit(stats, cut, a["log10_msub_min_msun"], select)
        new = a[completeness.limit_name(select)]
        at = {"old": _edge(edges, old), "new": _edge(edges, new)}
        row[select] = {
            "old_limit": old,
            "new_limit": new,
            "direct_limit": completeness.limit(stats[main_key], added, 1.0, edges)["value"],
            **{f"{k}_missing_direct": _at(direct, i) for k, i in at.items()},
            **{f"{k}_missing_probe": _at(estimate, i) for k, i in at.items()},
            **{f"{k}_missing_probe_err": _at(error, i) for k, i in at.items()},
        }
    return row


def _edge(edges: np.ndarray, value: float) -> int | None:
    """Index of the bin edge ``value`` (None: NaN)."""
    return int(np.searchsorted(edges, value - 1e-9)) if np.isfinite(value) else None


def _at(values: np.ndarray, i: int | None) -> float:
    """``values`` (per bin's lower edge) at edge ``i``: NaN for none, 0 at the top edge."""
    return float("nan") if i is None else float(values[i]) if i < len(values) else 0.0


def synthetic_spec(out: Path, n_hosts: int, redshift: float, seed: int) -> BoxSpec:
    """The demo box at ``redshift`` as an HDF5 halo file holding its hosts down to 10^10.5."""
    cut = 11.0
    box = box_sizes(n_hosts, cut, [redshift])[0]
    halos = SyntheticSource(None, cut - PROBE_DEX, redshift, seed, box_size=box)
    path = out / f"hosts_z{redshift:g}.hdf5"
    blocks.write_hdf5_halos(path, next(halos.read_blocks(halos.n_hosts)), halos.header)
    return BoxSpec(source="hdf5", input=str(path), log10_mhost_min_msun=cut, seed=seed,
                   redshift=redshift, model_params=MODEL_PARAMS, overwrite=True,
                   output=out / f"syn_z{redshift:g}.hdf5",
                   statistics=out / f"syn_z{redshift:g}.stats.hdf5")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--n-hosts", type=int, default=2000)
    parser.add_argument("--redshifts", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    parser.add_argument("--seed", type=int, default=20240611)
    parser.add_argument("--abacus", default=None)
    parser.add_argument("--abacus-cut", type=float, default=12.3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-completeness-"))
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for z in args.redshifts:
        rows.append(compare(f"syn_z{z:g}", synthetic_spec(out, args.n_hosts, z, args.seed), out))
    if args.abacus:
        spec = BoxSpec(source="abacus", input=args.abacus, log10_mhost_min_msun=args.abacus_cut,
                       seed=args.seed, model_params=MODEL_PARAMS, overwrite=True,
                       output=out / "abacus.hdf5",
                       statistics=out / "abacus.stats.hdf5")  # fmt: skip
        rows.append(compare("abacus", spec, out))
    (out / "completeness.json").write_text(json.dumps(rows, indent=1))
    for r in rows:
        print(f"{r['box']} z={r['redshift']:g}: {r['n_hosts']} hosts, {r['n_galaxies']} "
              f"galaxies; probe {r['probe_hosts']} halos (fraction {r['probe_fraction']:.3g}): "
              f"{r['probe_s']:.1f} s over the box's {r['box_s']:.1f} s")  # fmt: skip
        for select in completeness.HISTOGRAM_OF:
            s = r[select]
            print(
                f"  {select}: old {s['old_limit']:.1f} (missing: direct "
                f"{s['old_missing_direct']:.2%}, probe {s['old_missing_probe']:.2%} +- "
                f"{s['old_missing_probe_err']:.2%}); new {s['new_limit']:.1f} (direct "
                f"{s['new_missing_direct']:.2%}, probe {s['new_missing_probe']:.2%} +- "
                f"{s['new_missing_probe_err']:.2%}); direct limit {s['direct_limit']:.1f}"
            )
    print(f"written: {out / 'completeness.json'}")


if __name__ == "__main__":
    main()
