"""Benchmark: a fresh process's start-up, split into its parts, for several trees side by side.

Usage: python bench/startup.py --tree main=/work/main --tree branch=. [--cli-tree
       old=/work/wt-4c95:covmocks.cli] [--sizes 1e3 1e5] [--out results.json]

For each number of synthetic hosts (redshift 0.5, chunks of 65,536 hosts, the model's default
batches) and each tree, in turn, with an empty compilation cache of the tree's own (cold) and
then the same cache again (warm; ``--shared-cache``: one cache for the ``--tree`` trees, whose
kernels are the same, filled by the first one's cold run):

- a split child (``--tree``; PYTHONPATH names the tree, the child checks ``covmocks.__file__``)
  times its imports (covmocks, the box and model modules, jax), the model's set-up (the
  cache enabled (``jaxenv.use_cache``: exported kernels preload in a background thread, whose
  JAX events count where they fall), ``registry.get_model``, the synthetic source opened),
  a first ``populate.generate_box`` (every kernel traced, lowered, and compiled or loaded from
  the cache) and a second one with another seed (the box itself, warm). JAX's monitoring
  events split the first call's overhead into tracing, lowering to StableHLO, XLA compiling
  and cache loading; every distinct padded batch (``padded_map`` call site and length) is
  counted, with the first call's time minus the warm call's (what that shape cost);
- a CLI child runs ``covmocks generate`` of the same box as a user would (the whole process,
  and the box's own reported wall time). ``--cli-tree NAME=PATH:MODULE`` adds a tree with its
  own CLI module (an older package layout) that only this child runs.

Prints Markdown tables and writes every figure to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EVENTS = {
    "/jax/core/compile/jaxpr_trace_duration": "trace",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
    "/jax/core/compile/backend_compile_duration": "compile",
    "/jax/compilation_cache/cache_retrieval_time_sec": "cache_load",
}


def child(tree: str, n_hosts: int, cache: str, work: str) -> dict:
    """One fresh process's split (run in the child, before anything imported covmocks)."""
    t0 = time.perf_counter()
    import covmocks
    from covmocks.box import populate
    from covmocks.box.spec import BoxSpec
    from covmocks.galaxies import diffsky, jaxenv, registry

    assert Path(covmocks.__file__).resolve().is_relative_to(Path(tree).resolve()), tree
    import jax  # after covmocks, which sets XLA_FLAGS

    t_imports = time.perf_counter()
    events: dict[str, float] = {}

    def listen(name, seconds, **kwargs):
        if name in EVENTS:
            events[EVENTS[name]] = events.get(EVENTS[name], 0.0) + seconds

    jax.monitoring.register_event_duration_secs_listener(listen)
    jaxenv.use_cache(cache)  # as every box does: enabled, pruned, preloading
    model = registry.get_model("diffsky_sfh", {})
    spec = BoxSpec(source="synthetic", n_hosts=n_hosts, redshift=0.5, seed=1,
                   output=Path(work) / "first.hdf5")  # fmt: skip
    source = spec.open_source()
    spec = spec.resolved(source.header)
    t_setup = time.perf_counter()
    setup_events = dict(events)
    calls: dict[tuple, list[float]] = {}
    padded_map = diffsky.padded_map

    def timed_map(fn, arrays, smallest, largest):
        site = sys._getframe(1).f_lineno

        def timed(**batch):
            t = time.perf_counter()
            out = fn(**batch)
            jax.block_until_ready(out)
            size = len(next(iter(batch.values())))
            calls.setdefault((site, size), []).append(time.perf_counter() - t)
            return out

        return padded_map(timed, arrays, smallest, largest)

    diffsky.padded_map = timed_map
    populate.generate_box(source, model, spec)
    t_first = time.perf_counter()
    first_calls = {k: v[:] for k, v in calls.items()}
    second = dataclasses.replace(spec, seed=2, output=Path(work) / "second.hdf5")
    populate.generate_box(source, model, second.resolved(source.header))
    t_second = time.perf_counter()
    first_events = {k: v - setup_events.get(k, 0.0) for k, v in events.items()}
    shapes = []
    for key, times in sorted(first_calls.items()):
        warm = calls[key][len(times) :] or times[1:]
        shapes.append({"site": key[0], "size": key[1],
                       "first_s": times[0], "warm_s": min(warm) if warm else None})  # fmt: skip
    return {
        "imports_s": t_imports - t0,
        "setup_s": t_setup - t_imports,
        "first_box_s": t_first - t_setup,
        "warm_box_s": t_second - t_first,
        "setup_events": setup_events,
        "first_events": first_events,
        "shapes": shapes,
        "cache_kernels": len([p for p in Path(cache).iterdir() if p.name.endswith("-cache")]),
    }


def run_child(python: str, tree: Path, n_hosts: int, cache: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    with tempfile.TemporaryDirectory() as work:
        t = time.perf_counter()
        proc = subprocess.run([python, __file__, "--child", str(tree), str(n_hosts), str(cache),
                               work], env=env, capture_output=True, text=True)  # fmt: skip
        wall = time.perf_counter() - t
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.splitlines()[-1]) | {"process_s": wall}


def run_cli(python: str, tree: Path, module: str, n_hosts: int, cache: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "JAX_COMPILATION_CACHE_DIR": str(cache),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}  # fmt: skip
    with tempfile.TemporaryDirectory() as work:
        cmd = [python, "-m", module, "generate", "--source", "synthetic", "--n-hosts",
               str(n_hosts), "--redshift", "0.5", "--seed", "1",
               "--output", f"{work}/box.hdf5"]  # fmt: skip
        t = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=work)
        wall = time.perf_counter() - t
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"process_s": wall, "box_s": summary.get("wall_s", summary.get("wall_time_s"))}


def git_commit(tree: Path) -> str:
    out = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True)  # fmt: skip
    dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "covmocks"],
                           capture_output=True, text=True).stdout.strip()  # fmt: skip
    return out.stdout.strip() + ("+dirty" if dirty else "")


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        tree, n, cache, work = sys.argv[2:6]
        print(json.dumps(child(tree, int(n), cache, work)))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", action="append", default=[], help="NAME=PATH (split and CLI)")
    p.add_argument("--cli-tree", action="append", default=[], help="NAME=PATH:MODULE (CLI)")
    p.add_argument("--sizes", nargs="+", type=float, default=[1e3, 1e5])
    p.add_argument("--out", type=Path, default=Path("startup.json"))
    p.add_argument("--cache-root", type=Path, help="keep the caches here (default: a temporary "
                   "directory, removed); a cache found there is warm")  # fmt: skip
    p.add_argument("--shared-cache", action="store_true", help="the --tree trees share one cache "
                   "per size (same kernels): the first one's cold run fills it, the others "
                   "run warm only")  # fmt: skip
    args = p.parse_args()
    trees = [(n, Path(t).resolve(), "covmocks.cli.main", True)
             for n, t in (x.split("=", 1) for x in args.tree)]  # fmt: skip
    for name, spec in (x.split("=", 1) for x in args.cli_tree):
        path, module = spec.split(":")
        trees.append((name, Path(path).resolve(), module, False))
    results = {"machine": f"{platform.node()} {platform.processor() or platform.machine()} "
               f"{os.cpu_count()} cores", "commits": {n: git_commit(t) for n, t, *_ in trees},
               "runs": []}  # fmt: skip
    root = args.cache_root or Path(tempfile.mkdtemp(prefix="startup-bench-"))
    try:
        for size in map(int, args.sizes):
            for name, tree, module, split in trees:
                shared = args.shared_cache and split
                cache = root / f"{'shared' if shared else name}-{size}"
                states = ("warm",) if any(cache.glob("*-cache")) else ("cold", "warm")
                cache.mkdir(exist_ok=True)
                for state in states:
                    row = {"tree": name, "n_hosts": size, "cache": state}
                    if split:
                        row["split"] = run_child(sys.executable, tree, size, cache)
                    elif state == "cold":
                        row["cli_cold"] = run_cli(sys.executable, tree, module, size, cache)
                    if state == "warm":
                        row["cli"] = run_cli(sys.executable, tree, module, size, cache)
                    results["runs"].append(row)
                    print(json.dumps(row), flush=True)
    finally:
        if not args.cache_root:
            shutil.rmtree(root, ignore_errors=True)
    args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
