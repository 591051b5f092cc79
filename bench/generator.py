"""Benchmark: the single-box generator on synthetic hosts, first (cold) and warm calls.

Usage: python bench/generator.py [--sizes 1e3,1e4,1e5,1e6] [--out DIR] [--chunk-hosts N]
       [--log10-mhost-min-msun 11.0]

For each number of synthetic hosts, in one process and in ascending order, runs
``generate_box`` twice on the same host catalog (one ``box.BoxSpec`` per call; the halos are
opened once, with ``--host-seed``): a first call (JIT compilation of any
new batch shape included) and a warm call with a new seed (so new satellite counts,
hence possibly new padded satellite batch shapes). Prints a Markdown table of galaxies
produced, wall times, warm galaxies per second, peak RSS and the XLA compilations each
call triggered, then the padded kernel batch shapes each call used.

Compilations are counted with a JAX monitoring listener on the backend-compile event
(``/jax/core/compile/backend_compile_duration``, recorded once per XLA compilation or
persistent-cache load). Kernels are cached per process, so only the first size pays for
compiling the shapes it needs; later sizes compile only the shapes they add.

Peak RSS: on Linux the high-water mark is reset before each call (``/proc/self/clear_refs``)
so the per-call columns are that call's own peak; ``ru_maxrss`` otherwise counts from process
start. Either way sizes run ascending, so a process-lifetime peak is also the peak of the
largest size so far.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# covmocks sets XLA_FLAGS on import, so jax is imported only inside functions, after it.
from covmocks import box, generator, model, provenance, sources

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"
KERNEL_NAMES = ("central", "satellite")
GIB = 1024**3


class CompileCounter:
    """Counts XLA compilations (by jitted function name) between ``start`` and ``stop``."""

    def __init__(self):
        from jax import monitoring

        self.names: collections.Counter = collections.Counter()
        self.seconds = 0.0
        self.cache_hits = 0
        monitoring.register_event_duration_secs_listener(self._on_duration)
        monitoring.register_event_listener(self._on_event)

    def _on_duration(self, event, duration, **kwargs):
        if event == BACKEND_COMPILE_EVENT:
            self.names[kwargs.get("fun_name", "?")] += 1
            self.seconds += duration

    def _on_event(self, event, **kwargs):
        if event == CACHE_HIT_EVENT:
            self.cache_hits += 1

    def reset(self):
        self.names.clear()
        self.seconds = 0.0
        self.cache_hits = 0

    def kernels(self) -> int:
        return sum(n for name, n in self.names.items() if any(k in name for k in KERNEL_NAMES))

    def total(self) -> int:
        return sum(self.names.values())


def rss_peak_bytes() -> int:
    """Peak resident set size: since the last reset (Linux) or since process start."""
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024  # Linux reports KiB


def reset_rss_peak() -> bool:
    """Reset the kernel's RSS high-water mark (Linux >= 4.0); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def kernel_shapes(n: int, smallest: int, largest: int) -> list[int]:
    """The padded batch lengths ``model.padded_map`` uses for ``n`` objects."""
    return [
        model.bucket_size(min(start + largest, n) - start, smallest, largest)
        for start in range(0, n, largest)
    ]


def batch_shapes(path: Path, chunk_hosts: int, mdl) -> tuple[set, set]:
    """(central, satellite) padded batch shapes a written catalog needed, per host chunk."""
    from covmocks import catalog

    is_central = catalog.read_catalog(path, ["is_central"]).data["is_central"]
    central_rows = np.flatnonzero(is_central)
    n_hosts = len(central_rows)
    cen, sat = set(), set()
    for start in range(0, n_hosts, chunk_hosts):
        stop = min(start + chunk_hosts, n_hosts)
        first = central_rows[start]
        end = central_rows[stop] if stop < n_hosts else len(is_central)
        n_sat = (end - first) - (stop - start)
        cen.update(kernel_shapes(stop - start, mdl.batch_min, mdl.batch_max))
        sat.update(kernel_shapes(int(n_sat), mdl.batch_min, mdl.batch_max))
    return cen, sat


def timed_call(source, mdl, spec, counter, rss_resettable):
    """One ``generate_box`` call: summary, compile counts, its wall time and peak RSS."""
    lifetime_before = rss_peak_bytes()
    if rss_resettable:
        reset_rss_peak()
    counter.reset()
    t0 = time.perf_counter()
    summary = generator.generate_box(source, mdl, spec)
    wall = time.perf_counter() - t0
    return {
        "summary": summary,
        "wall_s": wall,
        "compiles": counter.total(),
        "kernel_compiles": counter.kernels(),
        "compile_s": counter.seconds,
        "cache_hits": counter.cache_hits,
        "compiled": dict(counter.names),
        "rss_peak": rss_peak_bytes(),
        "lifetime_before": lifetime_before,
    }


def fmt_shapes(shapes: set) -> str:
    return ",".join(str(s) for s in sorted(shapes)) or "-"


def machine_lines(load_start: tuple) -> list[str]:
    import jax

    versions = provenance.software_versions()
    stack = ", ".join(
        f"{k} {versions[k]}" for k in ("covmocks", "jax", "jaxlib", "diffmah", "diffstar",
                                       "diffsky", "dsps", "numpy", "h5py", "python")
    )  # fmt: skip
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    return [
        f"- machine: {platform.node()}, {platform.platform()}, {platform.processor() or '?'}",
        f"- CPUs: {os.cpu_count()} (usable by this process: {affinity}); load average (1/5/15 min) "
        f"at start {fmt_load(load_start)}, at end {fmt_load(os.getloadavg())}",
        f"- jax backend: {provenance.jax_platform()}",
        f"- XLA_FLAGS: {os.environ.get('XLA_FLAGS', '')}",
        f"- persistent compilation cache: {jax.config.jax_compilation_cache_dir or 'off'}",
        f"- versions: {stack}",
    ]


def fmt_load(load: tuple) -> str:
    return "/".join(f"{x:.1f}" for x in load)


def parse_sizes(text: str) -> list[int]:
    sizes = sorted({int(float(s)) for s in text.split(",") if s.strip()})
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive integers: {text!r}")
    return sizes


def run(args, out_dir: Path) -> None:
    load_start = os.getloadavg()
    counter = CompileCounter()
    rss_resettable = reset_rss_peak()
    t0 = time.perf_counter()
    mdl = model.get_model("diffsky_sfh", {"batch_min": args.batch_min, "batch_max": args.batch_max})
    setup_s = time.perf_counter() - t0
    rows, shapes = [], []
    lifetime_peak = rss_peak_bytes()
    for n_hosts in args.sizes:
        source = sources.open_source(
            "synthetic", n_hosts=n_hosts, seed=args.host_seed,
            log10_mhost_min_msun=args.log10_mhost_min_msun,
        )  # fmt: skip
        path = out_dir / f"bench_synthetic_{n_hosts}.h5"
        calls = {}
        for label, seed in (("first", args.seed), ("warm", args.seed + 1)):
            spec = box.BoxSpec(
                source="synthetic", n_hosts=n_hosts, output=path, seed=seed, realization=0,
                redshift=0.0, log10_mhost_min_msun=args.log10_mhost_min_msun,
                chunk_hosts=args.chunk_hosts, overwrite=True,
            )  # fmt: skip
            call = timed_call(source, mdl, spec, counter, rss_resettable)
            call["shapes"] = batch_shapes(path, args.chunk_hosts, mdl)
            lifetime_peak = max(lifetime_peak, call["lifetime_before"], call["rss_peak"])
            calls[label] = call
            logging.info(
                "%d hosts, %s call: %d galaxies in %.2f s, %d compiles (%s)",
                n_hosts, label, call["summary"]["n_galaxies"], call["wall_s"],
                call["compiles"], call["compiled"],
            )  # fmt: skip
        rows.append((n_hosts, calls, lifetime_peak))
        shapes.append((n_hosts, calls))

    print("## covmocks generator benchmark (synthetic hosts)\n")
    print("\n".join(machine_lines(load_start)))
    print(
        f"- model diffsky_sfh {mdl.version}: batch {mdl.batch_min}..{mdl.batch_max} (powers of "
        f"two), {args.chunk_hosts} hosts per chunk; hosts log10 M > "
        f"{args.log10_mhost_min_msun} Msun, "
        f"host seed {args.host_seed}; first call seed {args.seed}, warm call seed "
        f"{args.seed + 1}; model setup (imports, jit wrappers) {setup_s:.1f} s"
    )
    print(f"- output: {out_dir} (gzip HDF5; the write is inside the timed call)\n")
    print(
        "| hosts | galaxies first | galaxies warm | first call s | compiles first (kernels) "
        "| warm call s | compiles warm (kernels) | warm galaxies/s | peak RSS first GiB "
        "| peak RSS warm GiB | process peak GiB |"
    )
    print("|" + "---:|" * 11)
    for n_hosts, calls, peak in rows:
        first, warm = calls["first"], calls["warm"]
        rate = warm["summary"]["n_galaxies"] / warm["wall_s"]
        print(
            f"| {n_hosts:,} | {first['summary']['n_galaxies']:,} "
            f"| {warm['summary']['n_galaxies']:,} | {first['wall_s']:.2f} "
            f"| {first['compiles']} ({first['kernel_compiles']}) | {warm['wall_s']:.2f} "
            f"| {warm['compiles']} ({warm['kernel_compiles']}) | {rate:,.0f} "
            f"| {first['rss_peak'] / GIB:.2f} | {warm['rss_peak'] / GIB:.2f} | {peak / GIB:.2f} |"
        )
    print(
        "\nPadded kernel batch shapes (central; satellite) and compile time per call. Kernels "
        "are cached per process: a size compiles only the shapes no earlier call used.\n"
    )
    print("| hosts | first: shapes | first: compile s | warm: shapes | warm: compile s "
          "| warm compiled |")  # fmt: skip
    print("|---:|---|---:|---|---:|---|")
    for n_hosts, calls in shapes:
        first, warm = calls["first"], calls["warm"]
        compiled = ", ".join(f"{k} x{v}" for k, v in sorted(warm["compiled"].items())) or "nothing"
        print(
            f"| {n_hosts:,} | {fmt_shapes(first['shapes'][0])}; {fmt_shapes(first['shapes'][1])} "
            f"| {first['compile_s']:.1f} | {fmt_shapes(warm['shapes'][0])}; "
            f"{fmt_shapes(warm['shapes'][1])} | {warm['compile_s']:.1f} | {compiled} |"
        )
    hits = sum(c["cache_hits"] for _, calls in shapes for c in calls.values())
    peak_note = (
        "per call (high-water mark reset before each call via /proc/self/clear_refs)"
        if rss_resettable
        else "process-lifetime ru_maxrss (could not reset; each value includes earlier sizes)"
    )
    print(
        f"\nNotes: sizes ran ascending in one process. Peak RSS columns: {peak_note}; "
        "'process peak' is the process's peak so far (max of the peaks since start; "
        "monotone). The first size's first call compiles every kernel shape it needs, later "
        "sizes reuse shapes already compiled (a standalone run of a large size compiles more)."
        " Compiles count XLA backend compilations (kernels = the central/satellite "
        f"model kernels; the rest are small eager ops); persistent-cache hits: {hits}."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=parse_sizes("1e3,1e4,1e5,1e6"),
        help="comma-separated numbers of synthetic hosts (run ascending)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="directory for the catalogs (default: a temporary directory, deleted afterwards)",
    )
    parser.add_argument("--seed", type=int, default=1, help="first call's seed (warm: seed+1)")
    parser.add_argument("--host-seed", type=int, default=0, help="synthetic host catalog seed")
    parser.add_argument(
        "--log10-mhost-min-msun",
        type=float,
        default=box.SYNTHETIC_MHOST_MIN,
        help="host mass cut, log10 Msun",
    )
    parser.add_argument("--chunk-hosts", type=int, default=box.CHUNK_HOSTS, help="hosts per chunk")
    parser.add_argument("--batch-min", type=int, default=1024)
    parser.add_argument("--batch-max", type=int, default=65536)
    parser.add_argument("-v", "--verbose", action="store_true", help="log each call and chunk")
    args = parser.parse_args()  # fmt: skip
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(message)s",
    )
    if args.out is None:
        with tempfile.TemporaryDirectory(prefix="covmocks-bench-") as tmp:
            run(args, Path(tmp))
    else:
        args.out.mkdir(parents=True, exist_ok=True)
        run(args, args.out)


if __name__ == "__main__":
    main()
