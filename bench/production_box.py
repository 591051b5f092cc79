"""Benchmark: one box through the worker's stages, each in its own process: time and peak memory.

Usage: python bench/production_box.py [--n-hosts 200000] [--baseline DIR] [--nmesh 128]
       [--out DIR]

Stages (each a child process; its peak resident memory is ``ru_maxrss``, so a stage's figure
includes the interpreter and its imports):

- generate: ``populate.generate_box`` of ``--n-hosts`` synthetic hosts at z = 0.5, with the
  production campaign's two samples (n = 1e-3 and 5e-4 (h/Mpc)^3 in SFR, margin 1.5);
  production is 2e6 hosts (``--n-hosts 2e6``);
- validate: ``validation.validate`` of the catalog (the QA record), this tree (streaming);
- validate, before: the same with the tree at ``--baseline`` (e.g. a worktree of 934f1b1, the
  whole-file validation), where given;
- clustering: ``power.measure`` of each sample at the production settings (nmesh 128,
  k_max 0.4, dk 2; real space and three lines of sight).

Prints one line per stage and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def child(stage: str, args) -> dict:
    """One stage in this process: {"seconds", "peak_rss_bytes", ...}."""
    import covmocks  # noqa: F401  (XLA flag before jax)

    out = Path(args.out)
    catalog, samples = out / "box.hdf5", out / "box.samples.hdf5"
    t0 = time.perf_counter()
    extra = {}
    if stage == "generate":
        from covmocks.box import populate
        from covmocks.box.spec import BoxSpec
        from covmocks.clustering.samples import Rule
        from covmocks.galaxies import registry

        rules = (Rule("sfr_n1e-3", "sfr", density=1.5e-3), Rule("sfr_n5e-4", "sfr", density=7.5e-4))
        spec = BoxSpec(source="synthetic", n_hosts=args.n_hosts, redshift=0.5, seed=1,
                       output=catalog, samples=samples, sample_rules=rules)  # fmt: skip
        source = spec.open_source()
        model = registry.get_model("diffsky_sfh", {})
        t0 = time.perf_counter()
        summary = populate.generate_box(source, model, spec.resolved(source.header))
        extra = {"n_galaxies": summary["n_galaxies"], "file_bytes": catalog.stat().st_size}
    elif stage.startswith("validate"):
        from covmocks.catalog import validation

        if not Path(validation.__file__).resolve().is_relative_to(Path(args.tree).resolve()):
            sys.exit(f"validation from {validation.__file__}, not from {args.tree}")
        t0 = time.perf_counter()
        try:  # a box that fails its checks is still measured (the failure is printed)
            validation.validate(catalog, out / f"{stage}.json", task_id="bench")
            extra = {"passed": True}
        except validation.ValidationError as exc:
            extra = {"passed": False, "failed": str(exc).split("failed checks: ")[-1][:300]}
    elif stage == "clustering":
        import h5py
        import numpy as np

        from covmocks.catalog import hdf5
        from covmocks.clustering import power

        with h5py.File(catalog) as f:
            attrs = hdf5.read_attrs(f)
        box = float(attrs["box_size"])
        settings = power.PowerSettings(nmesh=args.nmesh, k_max=0.4, dk=2)
        sizes = []
        with h5py.File(samples) as f:  # the kept galaxies: each sample is its n highest SFRs
            pos, vel, sfr = (np.asarray(f[k]) for k in ("pos", "vel", "log10_sfr"))
        by_sfr = np.argsort(-sfr, kind="stable")
        for density in (1e-3, 5e-4):
            top = by_sfr[: int(density * box**3)]
            power.measure(pos[top], vel[top], box, 0.5, 1.32, settings)
            sizes.append(len(top))
        extra = {"box_size": box, "sample_sizes": sizes}
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"stage": stage, "seconds": seconds, "peak_rss_bytes": rss, **extra}


def run_stage(stage: str, tree: Path, args) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    argv = [sys.executable, __file__, "--child", stage, "--tree", str(tree), "--out", args.out,
            "--n-hosts", str(args.n_hosts), "--nmesh", str(args.nmesh)]  # fmt: skip
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"stage {stage} failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    rest = {k: v for k, v in result.items() if k not in ("stage", "seconds", "peak_rss_bytes")}
    rss = result["peak_rss_bytes"] / 2**20
    line = f"{stage}: {result['seconds']:.1f} s, peak RSS {rss:.0f} MiB {json.dumps(rest)}"
    print(line, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-hosts", type=lambda s: int(float(s)), default=200_000)
    parser.add_argument("--nmesh", type=int, default=128)
    parser.add_argument("--baseline", help="a tree with the whole-file validation (934f1b1)")
    parser.add_argument("--out", help="where the box goes (default: a temporary directory)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--tree", default=str(HERE), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        args.out = args.out or tmp
        results = [run_stage("generate", HERE, args)]
        if args.baseline:
            results.append(run_stage("validate_before", Path(args.baseline), args))
        results.append(run_stage("validate", HERE, args))
        results.append(run_stage("clustering", HERE, args))
    print(
        f"\n{args.n_hosts} hosts, {results[0]['n_galaxies']} galaxies, catalog "
        f"{results[0]['file_bytes'] / 2**20:.0f} MiB\n"
    )
    print("| stage | time (s) | peak RSS (MiB) |\n|---|---:|---:|")
    for r in results:
        print(f"| {r['stage']} | {r['seconds']:.1f} | {r['peak_rss_bytes'] / 2**20:.0f} |")


if __name__ == "__main__":
    main()
