"""Time of one box with 1, 2 and 4 MPI ranks (``python -m covmocks.cli.generate_mpi``).

Two boxes: a synthetic one (``--n-hosts``, shared in blocks of ``--chunk-hosts`` hosts) and
the Mini_N64_L32 AbacusSummit-format test catalog (3 slab files, so at most 3 busy ranks).
Each is also run once through the single-process ``python -m covmocks.generate`` as the
baseline, and every MPI output is checked bit for bit against it. Each box is one
``box.BoxSpec``, turned into the arguments of both commands by ``BoxSpec.to_argv``.

Two times per run: ``wall``, the whole command (MPI start-up, imports, JAX, writing), and
``box``, the generation itself as reported by the command (``wall_s`` of its summary).
JAX's persistent compilation cache is warmed by one untimed run first, so that every
timed run loads the same compiled kernels (as tasks of a campaign do); ``--cold`` times
runs that compile for themselves instead.

Usage::

    .venv/bin/python bench/mpi_scaling.py [--n-hosts 20000] [--chunk-hosts 2500]
        [--ranks 1 2 4] [--repeat 1] [--cold]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from covmocks.box.spec import BoxSpec

REPO = Path(__file__).resolve().parents[1]
MINI = Path(
    os.environ.get("COVMOCKS_TEST_DATA", REPO.parent / "shared" / "data" / "Mini_N64_L32")
) / "halos" / "z0.000"  # fmt: skip


def mpiexec() -> str:
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if found is None:
        sys.exit("mpiexec not found beside python or on PATH (pip install mpi4py mpich)")
    return found


def run(cmd: list, env: dict) -> tuple[float, dict]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")
    return wall, json.loads(proc.stdout.strip().splitlines()[-1])


def same_datasets(a: Path, b: Path) -> bool:
    import h5py

    with h5py.File(a, "r") as f, h5py.File(b, "r") as g:
        return sorted(f) == sorted(g) and all(f[k][...].tobytes() == g[k][...].tobytes() for k in f)


def box_argv(spec: BoxSpec, output: Path) -> list[str]:
    """``spec``'s arguments, writing to ``output`` (replaced if there), quietly."""
    return [*dataclasses.replace(spec, output=output, overwrite=True).to_argv(), "-q"]


def bench_case(name: str, spec: BoxSpec, ranks: list, repeat: int, env: dict, work: Path) -> list:
    generate = [sys.executable, "-m", "covmocks.generate"]
    baseline = work / f"{name}-generate.hdf5"
    rows = []
    walls, boxes = [], []
    for _ in range(repeat):
        wall, summary = run([*generate, *box_argv(spec, baseline)], env)
        walls.append(wall)
        boxes.append(summary["wall_s"])
    rows.append((name, "generate", min(walls), min(boxes), summary["n_galaxies"], True))
    for n in ranks:
        out = work / f"{name}-mpi{n}.hdf5"
        cmd = [mpiexec(), "-n", str(n), sys.executable, "-m", "covmocks.cli.generate_mpi"]
        walls, boxes = [], []
        for _ in range(repeat):
            wall, summary = run([*cmd, *box_argv(spec, out)], env)
            walls.append(wall)
            boxes.append(summary["wall_s"])
        rows.append((name, n, min(walls), min(boxes), summary["n_galaxies"],
                     same_datasets(out, baseline)))  # fmt: skip
        print(f"  {name}: {n} ranks done ({min(walls):.1f} s)", file=sys.stderr)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-hosts", type=int, default=20000, help="synthetic box: host halos")
    p.add_argument("--chunk-hosts", type=int, default=2500, help="synthetic box: hosts per unit")
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--repeat", type=int, default=1, help="runs per point (the fastest counts)")
    p.add_argument("--cold", action="store_true", help="no shared JAX compilation cache")
    args = p.parse_args(argv)

    env = dict(os.environ)
    unset = Path("unset.hdf5")  # each run writes its own output
    cases = [("synthetic", BoxSpec(source="synthetic", output=unset, n_hosts=args.n_hosts,
                                   chunk_hosts=args.chunk_hosts, seed=1))]  # fmt: skip
    if (MINI / "halo_info").is_dir():
        cases.append(("mini_abacus", BoxSpec(source="abacus", output=unset, input=MINI, seed=7)))
    else:
        print(f"skipping the mini catalog: not found at {MINI}", file=sys.stderr)

    rows = []
    with tempfile.TemporaryDirectory(prefix="covmocks-mpi-bench-") as tmp:
        work = Path(tmp)
        if not args.cold:
            env["JAX_COMPILATION_CACHE_DIR"] = str(work / "jax-cache")
            env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
            for name, spec in cases:  # warm the cache: compile every kernel shape once
                warm = work / f"{name}-warm.hdf5"
                run([sys.executable, "-m", "covmocks.generate", *box_argv(spec, warm)], env)
        for name, spec in cases:
            rows += bench_case(name, spec, args.ranks, args.repeat, env, work)

    cpus = os.cpu_count()
    print(f"\none box, {cpus} CPUs, JAX cache {'cold' if args.cold else 'warm'}, "
          f"best of {args.repeat}; speedups vs 1 rank")  # fmt: skip
    print(f"{'box':<12} {'ranks':>8} {'galaxies':>9} {'wall s':>8} {'box s':>8} "
          f"{'wall x':>7} {'box x':>7}  identical")  # fmt: skip
    one = {name: (wall, box) for name, n, wall, box, _, _ in rows if n == 1}
    for name, n, wall, box, n_gal, same in rows:
        w1, b1 = one.get(name, (float("nan"), float("nan")))
        print(f"{name:<12} {n!s:>8} {n_gal:>9} {wall:>8.1f} {box:>8.1f} "
              f"{w1 / wall:>7.2f} {b1 / box:>7.2f}  {'yes' if same else 'NO'}")  # fmt: skip
    return 0 if all(row[-1] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
