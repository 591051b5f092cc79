"""Benchmark: each model kernel's tracing, lowering and XLA compilation, per padded shape, cold.

Usage: JAX_COMPILATION_CACHE_DIR=$(mktemp -d) PYTHONPATH=TREE python bench/kernel_compile.py
       [--n-hosts 1e3] [--out kernels.json]

Makes one synthetic box (redshift 0.5, the model's default batches) in this process with every
kernel of ``covmocks.galaxies.kernels`` compiled ahead of time through JAX's stages
(``jit(...).trace``, ``.lower``, ``.compile``), once per kernel and input shape, and prints a
row per compiled shape: seconds of each stage, and the size of the program (StableHLO lines,
its ``while`` loops, XLA's optimized HLO lines). No persistent cache is enabled: every shape
compiles (point ``JAX_COMPILATION_CACHE_DIR`` at an empty directory all the same, since JAX
reads it). Run it on two trees in turn to compare shapes compiled and seconds per shape.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def aot(name: str, kernel, rows: list, compiled: dict):
    """``kernel`` called through its compiled form; the first call of each shape is timed."""
    import jax

    def call(*args, **kwargs):
        args = args + tuple(kwargs.values())
        shapes = jax.tree_util.tree_map(lambda a: getattr(a, "shape", ()), args)
        key = (name, str(shapes), jax.config.jax_enable_x64)
        if key not in compiled:
            t0 = time.perf_counter()
            traced = kernel.trace(*args)
            t1 = time.perf_counter()
            lowered = traced.lower()
            t2 = time.perf_counter()
            compiled[key] = lowered.compile()
            t3 = time.perf_counter()
            text = lowered.as_text()
            leaves = jax.tree_util.tree_leaves(args)
            rows.append({"kernel": name, "length": next(len(a) for a in leaves if a.ndim),
                         "trace_s": t1 - t0, "lower_s": t2 - t1, "compile_s": t3 - t2,
                         "stablehlo_lines": text.count("\n"),
                         "while_loops": text.count("stablehlo.while"),
                         "hlo_lines": compiled[key].as_text().count("\n")})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
        return compiled[key](*args)

    return call


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-hosts", type=float, default=1e3)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    from covmocks.box import populate
    from covmocks.box.spec import BoxSpec
    from covmocks.galaxies import kernels, registry

    rows: list = []
    compiled: dict = {}
    model = registry.get_model("diffsky_sfh", {})
    for attr in ("_central", "_subhalo_cdf", "_satellite_uniform", "_satellite"):
        setattr(model, attr, aot(attr[1:], getattr(model, attr), rows, compiled))
    build_sfh = kernels.build_sfh_kernel
    kernels.build_sfh_kernel = lambda n_t, precision: aot(
        "sfh", build_sfh(n_t, precision), rows, compiled
    )
    with tempfile.TemporaryDirectory() as work:
        spec = BoxSpec(source="synthetic", n_hosts=int(args.n_hosts), redshift=0.5, seed=1,
                       output=Path(work) / "box.hdf5")  # fmt: skip
        source = spec.open_source()
        t = time.perf_counter()
        populate.generate_box(source, model, spec.resolved(source.header))
        box_s = time.perf_counter() - t
    total = {k: round(sum(r[k] for r in rows), 2) for k in ("trace_s", "lower_s", "compile_s")}
    summary = {"n_hosts": int(args.n_hosts), "shapes": len(rows), "box_s": box_s, **total}
    print(json.dumps(summary), file=sys.stderr)
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "shapes": rows}, indent=1))


if __name__ == "__main__":
    main()
