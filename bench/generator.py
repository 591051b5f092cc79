"""Benchmark: where a box's time goes, stage by stage, today's main against this tree.

Usage: python bench/generator.py [--sizes 1e5] [--baseline /work/baseline] [--repeats 2]
       [--chunk-hosts N] [--model-params JSON] [--baseline-model-params JSON]

For each number of synthetic hosts, runs one child process per tree, interleaved (baseline,
this tree, baseline, this tree, ...): ``PYTHONPATH`` names the tree and the child checks that
``covmocks.__file__`` lies in it. A child opens the synthetic hosts once, runs
``generate_box`` a first time (compilation included; each tree has its own persistent
compilation cache under ``--cache``) and then a warm time with a new seed, the call measured.
The stages of the warm call are timed by wrapping, from outside, functions both trees have:

- read hosts: each ``next`` of the source's ``iter_blocks``;
- central draws: the ``central`` kernel (main: with the central's star-formation history);
- satellite draws: the ``satellite`` kernel (main: with the satellites' histories);
- star-formation histories: the ``sfh`` evaluation (this tree only);
- satellite phase space (``phase_space.satellite_phase_space``; main: inline, so the rest of
  ``model.populate``, assembly included) and the assembly of the columns (NumPy);
- catalog columns, statistics (``BoxStatistics.add``), writing (``CatalogWriter.append`` and
  closing, i.e. the last flush, fsync and rename).

Stages run in background threads where this tree overlaps I/O with compute, so its stage
times can add up to more than the wall time. Prints Markdown tables: per size, the stage
times of each tree (the repeat with the smaller warm wall time) and their ratio, then every
repeat's warm wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
STAGES = (
    ("read", "read hosts"),
    ("central", "central draws (main: + their SFH)"),
    ("satellite", "satellite draws (main: + their SFH)"),
    ("sfh", "star-formation histories"),
    ("phase", "satellite phase space (main: + assembly)"),
    ("assembly", "assembly of the galaxy columns"),
    ("columns", "catalog columns"),
    ("stats", "statistics"),
    ("write", "writing (append + close)"),
)


def parse_sizes(text: str) -> list[int]:
    sizes = sorted({int(float(s)) for s in text.split(",") if s.strip()})
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive integers: {text!r}")
    return sizes


# --- the child: one tree, one size --------------------------------------------------------


class Stages:
    """Seconds per stage, from wrappers around functions every tree has."""

    def __init__(self):
        self.s = dict.fromkeys([k for k, _ in STAGES] + ["populate"], 0.0)
        self.on = False

    def timed(self, name, fn, block=False):
        import jax

        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            if block:
                out = jax.block_until_ready(out)
            if self.on:
                self.s[name] += time.perf_counter() - t0
            return out

        return wrapper

    def timed_iter(self, name, gen_fn):
        def wrapper(*args, **kwargs):
            it = iter(gen_fn(*args, **kwargs))
            while True:
                t0 = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    return
                finally:
                    if self.on:
                        self.s[name] += time.perf_counter() - t0
                yield item

        return wrapper


def child(args) -> None:
    import covmocks
    from covmocks.box import populate
    from covmocks.box import spec as box
    from covmocks.catalog import hdf5
    from covmocks.catalog import summary as statistics
    from covmocks.galaxies import registry
    from covmocks.halos import sources

    tree = Path(args.tree).resolve()
    if not Path(covmocks.__file__).resolve().is_relative_to(tree):
        sys.exit(f"covmocks from {covmocks.__file__}, not from {tree}")
    st = Stages()
    mdl = registry.get_model("diffsky_sfh", json.loads(args.model_params))
    mdl._central = st.timed("central", mdl._central, block=True)
    mdl._satellite = st.timed("satellite", mdl._satellite, block=True)
    for name in ("_subhalo_cdf", "_satellite_uniform"):  # this tree: the satellites' draws
        if hasattr(mdl, name):
            setattr(mdl, name, st.timed("satellite", getattr(mdl, name), block=True))
    if hasattr(mdl, "histories"):
        mdl.histories = st.timed("sfh", mdl.histories)
    with contextlib.suppress(ImportError):
        from covmocks.galaxies import phase_space

        phase_space.satellite_phase_space = st.timed("phase", phase_space.satellite_phase_space)
    mdl.populate = st.timed("populate", mdl.populate)
    populate.catalog_columns = st.timed("columns", populate.catalog_columns)
    statistics.BoxStatistics.add = st.timed("stats", statistics.BoxStatistics.add)
    hdf5.CatalogWriter.append = st.timed("write", hdf5.CatalogWriter.append)
    hdf5.CatalogWriter.__exit__ = st.timed("write", hdf5.CatalogWriter.__exit__)
    source = sources.open_source("synthetic", n_hosts=args.size, seed=args.host_seed,
                                 log10_mhost_min_msun=box.SYNTHETIC_MHOST_MIN)  # fmt: skip
    source.iter_blocks = st.timed_iter("read", source.iter_blocks)
    out = {"tree": str(tree), "covmocks": covmocks.__file__, "model_params": mdl.params}
    with tempfile.TemporaryDirectory(prefix="covmocks-bench-", dir=args.out) as tmp:
        for label, seed in (("first", args.seed), ("warm", args.seed + 1)):
            spec = box.BoxSpec(source="synthetic", n_hosts=args.size, output=Path(tmp) / "b.h5",
                               seed=seed, realization=0, redshift=0.0,
                               log10_mhost_min_msun=box.SYNTHETIC_MHOST_MIN,
                               chunk_hosts=args.chunk_hosts, overwrite=True)  # fmt: skip
            st.s = dict.fromkeys(st.s, 0.0)
            st.on = label == "warm"
            t0 = time.perf_counter()
            summary = populate.generate_box(source, mdl, spec)
            out[label] = {"wall": time.perf_counter() - t0, "galaxies": summary["n_galaxies"]}
        stages = dict(st.s)
        kernels = stages["central"] + stages["satellite"] + stages["sfh"]
        if stages["phase"] > 0:  # this tree: phase space timed, assembly is the rest
            stages["assembly"] = stages["populate"] - kernels - stages["phase"]
        else:  # main: phase space inline, with the assembly
            stages["phase"] = stages["populate"] - kernels
        out["stages"] = stages
    import resource

    out["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1024**3
    print("RESULT " + json.dumps(out))


# --- the parent: interleaved children, tables ---------------------------------------------


def run_child(tree: Path, size: int, params: str, args) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    cache = Path(args.cache) / tree.name
    env.update(JAX_COMPILATION_CACHE_DIR=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")  # fmt: skip
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--tree", str(tree),
           "--size", str(size), "--model-params", params, "--seed", str(args.seed),
           "--host-seed", str(args.host_seed), "--chunk-hosts", str(args.chunk_hosts)]  # fmt: skip
    if args.out:
        cmd += ["--out", str(args.out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tree)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.exit(f"child for {tree} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def parent(args) -> None:
    trees = {"main": Path(args.baseline).resolve(), "this": HERE}
    params = {"main": args.baseline_model_params, "this": args.model_params}
    load_start = os.getloadavg()
    results = {}
    for size in args.sizes:
        for rep in range(args.repeats):
            for name in ("main", "this"):
                r = run_child(trees[name], size, params[name], args)
                results.setdefault(size, {}).setdefault(name, []).append(r)
                wall = r["warm"]["wall"]
                print(f"<!-- {size} hosts, repeat {rep}, {name}: warm {wall:.2f} s -->",
                      file=sys.stderr, flush=True)  # fmt: skip
    head = subprocess.run(["git", "-C", str(trees["main"]), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    print("## Stage profile of a warm box with a new seed: main against this tree\n")
    print(
        f"- machine: {platform.node()}, {os.cpu_count()} CPUs usable "
        f"{len(os.sched_getaffinity(0))}; load average at start {load_start[0]:.1f}, at end "
        f"{os.getloadavg()[0]:.1f} (a shared machine: compare ratios, not seconds)"
    )
    print(
        f"- main: {trees['main']} (commit {head}), model params {params['main']}; this tree: "
        f"{trees['this']}, model params {params['this']}"
    )
    print(
        f"- synthetic hosts (host seed {args.host_seed}), {args.chunk_hosts} hosts per chunk; "
        f"first call seed {args.seed}, warm call seed {args.seed + 1}; {args.repeats} "
        "repeats interleaved, the faster warm call of each tree shown\n"
    )
    for size, by_tree in results.items():
        best = {n: min(rs, key=lambda r: r["warm"]["wall"]) for n, rs in by_tree.items()}
        m, t = best["main"], best["this"]
        print(
            f"### {size:,} hosts: main {m['warm']['galaxies']:,} galaxies, this tree "
            f"{t['warm']['galaxies']:,}; recorded model params of this tree: "
            f"{json.dumps(t['model_params'])}\n"
        )
        print("| stage | main s | this tree s | main / this |")
        print("|---|---:|---:|---:|")
        for key, label in STAGES:
            a, b = m["stages"][key], t["stages"][key]
            ratio = f"{a / b:.1f}x" if a > 1e-3 and b > 1e-3 else "-"
            print(f"| {label} | {a:.2f} | {b:.2f} | {ratio} |")
        a, b = m["warm"]["wall"], t["warm"]["wall"]
        print(f"| **warm box, wall** | **{a:.2f}** | **{b:.2f}** | **{a / b:.2f}x** |")
        a, b = (r["warm"]["galaxies"] / r["warm"]["wall"] for r in (m, t))
        print(f"| warm galaxies per second | {a:,.0f} | {b:,.0f} | {b / a:.2f}x faster |")
        a, b = m["peak_rss_gib"], t["peak_rss_gib"]
        print(f"| process peak RSS, GiB | {a:.2f} | {b:.2f} | - |")
        a, b = m["first"]["wall"], t["first"]["wall"]
        print(f"| first box (compiles or loads kernels), wall | {a:.2f} | {b:.2f} | {a / b:.2f}x |")
        print()
    print(
        "Every repeat's warm wall time, s (in run order), and the ratio of each interleaved "
        "pair (main / this tree; its median is the speedup least affected by the load):\n"
    )
    print("| hosts | main | this tree | pair ratios | median ratio |")
    print("|---:|---|---|---|---:|")
    for size, by_tree in results.items():
        walls = {n: [r["warm"]["wall"] for r in by_tree[n]] for n in ("main", "this")}
        ratios = [a / b for a, b in zip(walls["main"], walls["this"], strict=True)]
        cols = [", ".join(f"{w:.2f}" for w in walls[n]) for n in ("main", "this")]
        print(
            f"| {size:,} | {cols[0]} | {cols[1]} | {', '.join(f'{r:.2f}' for r in ratios)} "
            f"| {statistics.median(ratios):.2f}x |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=parse_sizes, default=parse_sizes("1e5"))
    parser.add_argument("--baseline", default="/work/baseline", help="a worktree of main")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model-params", default="{}", help="this tree's model params (JSON)")
    parser.add_argument("--baseline-model-params", default="{}", help="main's (JSON)")
    parser.add_argument(
        "--cache", default=os.path.join(tempfile.gettempdir(), "covmocks-bench-jax")
    )
    parser.add_argument("--out", type=Path, default=None, help="where catalogs are written")
    parser.add_argument("--seed", type=int, default=1, help="first call's seed (warm: seed+1)")
    parser.add_argument("--host-seed", type=int, default=0)
    parser.add_argument("--chunk-hosts", type=int, default=65536)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tree", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
    else:
        parent(args)


if __name__ == "__main__":
    main()
