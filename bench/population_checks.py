"""Benchmark: the scatter of the population-level checks over good boxes
(``covmocks.catalog.population``), from which their tolerances are chosen.

Usage: python bench/population_checks.py smhm [--hosts 8000] [--redshifts 0,0.5,1,1.5,2,3]
           [--between 0.25,0.75,2.5] [--out DIR]
       python bench/population_checks.py satellites --catalogs A.hdf5,B.hdf5 [--draws 1000]
           [--fractions 1,0.1,0.01] [--halos A.hdf5=ABACUS_DIR]

The figures in ``catalog.population`` and docs/schema.md came from (2 shared cores, about
25 minutes in all):
    smhm --hosts 2000 --redshifts 0,0.5,1,2,3 --between 0.25,0.75,1.5,2.5 --out ref
    satellites --draws 300 --fractions 1,0.1 --halos mini.hdf5=.../Mini_N64_L32/halos/z0.000
        --catalogs mini.hdf5,syn05.hdf5,ref/smhm_z*.hdf5 (comma-separated)
mini.hdf5: the Mini box (seed 7, z = 0); syn05.hdf5: 30,000 synthetic hosts above 10^11 Msun
at z = 0.5 (seed 3); the table's redshifts are then the grid and the ``--between`` ones.
A catalog whose input radius is not R200m (AbacusSummit) needs its halos (``--halos``).

``smhm``: generates one synthetic box per redshift (``--hosts`` hosts above 10^11.7 Msun,
the default model) and prints the median log10(M*/M_halo) of the centrals in the peak bin
(``population.SMHM_BIN``), the table ``population.SMHM_REFERENCE`` holds; then the same at
the ``--between`` redshifts against the table's interpolation (its systematic error); then
the per-central scatter of that median: the standard deviation of the median over 1000
random subsets of n centrals of each box, times sqrt(n) (centrals are drawn independently,
host by host, so subsets of one box are independent boxes of fewer hosts).

``satellites``: for each good catalog, redraws every satellite's phase space ``--draws``
times with the model's own code (``galaxies.phase_space.satellite_phase_space``, new
uniforms and normals; hosts, radii and satellite counts as the catalog's input had them),
each draw a good box, also cut to a random ``--fraction`` of its hosts (smaller boxes); and
prints, per catalog and size, the mean and standard deviation (times sqrt(n)) of the
statistics the checks judge: the largest r/R200m, the median log10(r / r_med) and
log10(rms dv / V_vir).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from covmocks.catalog import checks, hdf5, population
from covmocks.core import units

log = logging.getLogger("bench.population_checks")
SUBSETS = 1000  # random subsets per size (smhm)


def smhm_median(path) -> tuple[float, int, np.ndarray]:
    """(median log10(M*/M_halo) of the centrals in the peak bin, their number, the values)."""
    d = hdf5.read_catalog(path).data
    cen = d["is_central"]
    lgm = d["log10_mhalo"][cen].astype(np.float64)
    ratio = d["log10_mstar"][cen] - lgm
    lo, hi = population.SMHM_BIN
    ratio = ratio[(lgm >= lo) & (lgm < hi)]
    return float(np.median(ratio)), len(ratio), ratio


def generate(out: Path, hosts: int, z: float) -> Path:
    from covmocks.box import populate
    from covmocks.box.spec import BoxSpec
    from covmocks.galaxies.diffsky import DiffskySFH

    path = out / f"smhm_z{z:g}.hdf5"
    if not path.exists():
        spec = BoxSpec(source="synthetic", n_hosts=hosts, output=path, seed=11, redshift=z,
                       log10_mhost_min_msun=11.7, chunk_hosts=hosts)  # fmt: skip
        populate.generate_box(spec.open_source(), DiffskySFH(), spec)
    return path


def run_smhm(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    grid = [float(z) for z in args.redshifts.split(",")]
    print("| z | centrals in bin | median log10(M*/M_halo) |\n|---|---|---|")
    pools = {}
    for z in grid:
        med, n, pools[z] = smhm_median(generate(out, args.hosts, z))
        print(f"| {z:g} | {n} | {med:.4f} |")
    print("\n| z | median | table's interpolation | difference (dex) |\n|---|---|---|---|")
    for z in (float(z) for z in args.between.split(",") if z):
        med, _, pools[z] = smhm_median(generate(out, args.hosts, z))
        ref = population.smhm_reference(z)[0]
        print(f"| {z:g} | {med:.4f} | {ref:.4f} | {med - ref:+.4f} |")
    rng = np.random.default_rng(0)
    print("\n| z | n | std of median x sqrt(n) (dex) |\n|---|---|---|")
    for z, pool in pools.items():
        for n in (n for n in (30, 100, 300, 1000) if 3 * n <= len(pool)):
            meds = [np.median(rng.choice(pool, n, replace=False)) for _ in range(SUBSETS)]
            print(f"| {z:g} | {n} | {np.std(meds) * np.sqrt(n):.3f} |")


def _hosts(path, halos):
    """(catalog attrs, host table: pos, vel, mass Msun/h, radius Mpc/h; satellites' host rows
    in it) of a catalog; radius from the source at ``halos`` (AbacusSummit) or R200m."""
    cat = hdf5.read_catalog(path)
    d, a = cat.data, cat.attrs
    cen = np.flatnonzero(d["is_central"])
    h, om0 = float(a["h"]), float(a["Om0"])
    mass = 10 ** units.log_mass_msun_to_h(d["log10_mhalo"][cen].astype(np.float64), h)
    if halos:
        from covmocks.halos.abacus import AbacusSource

        blocks = list(AbacusSource(halos).iter_blocks(10**7))
        ids = np.concatenate([b.ids for b in blocks])
        order = np.argsort(ids)
        radius = np.concatenate([b.radius for b in blocks])[order]
        radius = radius[np.searchsorted(ids[order], d["halo_id"][cen])]
    else:
        radius = units.r200m_h(mass, om0)
    sat = ~d["is_central"]
    at = np.searchsorted(cen, d["host_index"][sat])
    table = {"pos": d["pos"][cen].astype(np.float64), "vel": d["vel"][cen].astype(np.float64),
             "mass": mass, "radius": radius}  # fmt: skip
    return a, table, at


class _Hosts(SimpleNamespace):
    """A host table as ``phase_space.satellite_phase_space`` reads it."""

    def __len__(self) -> int:
        return len(self.mass)


def run_satellites(args) -> None:
    from covmocks.galaxies import phase_space

    rng = np.random.default_rng(1)
    halos = dict(kv.split("=", 1) for kv in args.halos.split(",") if kv)
    print("| catalog | z | fraction | satellites | largest r/R200m (max over draws) | "
          "median log10(r/r_med): mean, std*sqrt(n) | log10 rms dv/V_vir: mean, std*sqrt(n) |\n"
          "|---|---|---|---|---|---|---|")  # fmt: skip
    for path in args.catalogs.split(","):
        a, table, at = _hosts(path, halos.get(Path(path).name))
        h, om0, z, box = (float(a[k]) for k in ("h", "Om0", "redshift", "box_size"))
        header = SimpleNamespace(cosmology=SimpleNamespace(h=h), redshift=z, box_size=box)
        lgm = units.log_mass_h_to_msun(np.log10(table["mass"]), h)
        for fraction in (float(f) for f in args.fractions.split(",")):
            stats = []
            for _ in range(args.draws):
                keep = rng.random(len(lgm)) < fraction
                sat = at[keep[at]]
                hosts = _Hosts(**table)
                pos, vel = phase_space.satellite_phase_space(
                    hosts, sat, rng.random((len(sat), 3)), rng.standard_normal((len(sat), 3)),
                    header)  # fmt: skip
                delta = pos - table["pos"][sat]
                delta -= box * np.round(delta / box)
                x = np.linalg.norm(delta, axis=1) / checks.r200m_comoving(lgm[sat], h, om0)
                v = np.linalg.norm(vel - table["vel"][sat], axis=1) / \
                    checks.virial_velocity_r200m(lgm[sat], h, om0, z)  # fmt: skip
                p = population.PopulationChecks(h, z, None, None, False)
                p.add_satellites(x, v, lgm[sat])
                stats.append((len(sat), p.largest, p.radius_median(),
                              0.5 * np.log10(p.speed2 / p.n_vel)))  # fmt: skip
            n, largest, med, rms = np.array(stats).T
            root_n = np.sqrt(n.mean())
            print(
                f"| {Path(path).name} | {z:g} | {fraction:g} | {n.mean():.0f} | "
                f"{largest.max():.3f} | {med.mean():+.4f}, {med.std() * root_n:.3f} | "
                f"{rms.mean():+.4f}, {rms.std() * root_n:.3f} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("smhm")
    s.add_argument("--hosts", type=int, default=8000)
    s.add_argument("--redshifts", default="0,0.5,1,1.5,2,3")
    s.add_argument("--between", default="0.25,0.75,2.5")
    s.add_argument("--out", default="bench_population")
    s.set_defaults(func=run_smhm)
    s = sub.add_parser("satellites")
    s.add_argument("--catalogs", required=True)
    s.add_argument("--halos", default="", help="NAME=DIR,...: AbacusSummit halos of a catalog")
    s.add_argument("--draws", type=int, default=1000)
    s.add_argument("--fractions", default="1,0.1,0.01")
    s.set_defaults(func=run_satellites)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.func(args)


if __name__ == "__main__":
    main()
