"""Process-wide JAX settings: the XLA flag that must be in place before ``import jax``, and the
persistent compilation cache.

XLA's concurrency-optimized CPU scheduler can deadlock when one jitted function holds two
batched ``jax.random.multivariate_normal`` draws (diffmahpop and diffstarpop both do):
both Eigen threads spin forever in the batched Cholesky loop. Turning that scheduler off
leaves results bitwise unchanged. Every process that runs the model (CLI, Parsl workers,
MPI ranks, tests) imports covmocks first, so the flag is set here.

The compilation cache is one directory per user, shared by every campaign and every
``covmocks generate`` (``cache_dir``). JAX keys each entry by a SHA-256 of the lowered program
(StableHLO), the jaxlib version, the backend and its version, the XLA flags in ``$XLA_FLAGS``,
the compile options and the devices: a new jax, diffsky or covmocks version, another backend
or other XLA flags make new entries and never load stale ones. The keys also hold the
directory's path: JAX puts XLA's GPU autotuning cache (``jax_persistent_cache_enable_xla_caches``)
in a subdirectory and its path in the compile options, on every backend, so a cache copied or
moved to another path is not found (measured: a copied directory compiled every kernel
again). The keys do not hold the host CPU's instruction set: a directory shared by machines of
different CPU generations should be one per generation. Past ``CACHE_MAX_BYTES`` the least
recently used entries are removed (``prune``). JAX's own bound
(``jax_compilation_cache_max_size``) is not used: in jax 0.10 it needs an ``-atime`` file
beside every entry, and one entry written without it (by a process without the bound: an
older covmocks, any JAX user of the directory) makes every later write fail ("Error writing
persistent compilation cache entry").
"""

import os
from pathlib import Path

from covmocks.core import remembered
from covmocks.galaxies import exported

SAFE_XLA_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def configure(environ=os.environ) -> None:
    """Add the safe-scheduler flag to XLA_FLAGS, keeping any flags the user set."""
    flags = environ.get("XLA_FLAGS", "")
    if "xla_cpu_enable_concurrency_optimized_scheduler" not in flags:
        environ["XLA_FLAGS"] = f"{flags} {SAFE_XLA_FLAG}".strip()


CACHE_VARIABLE = "JAX_COMPILATION_CACHE_DIR"
# The cache's bound (bytes): the diffsky kernels of a few model and jax versions, for every
# padded shape, fit in well under it.
CACHE_MAX_BYTES = 2 * 1000**3


def user_cache_dir(environ=os.environ) -> Path:
    """The per-user default: ``$XDG_CACHE_HOME/covmocks/jax`` (``~/.cache/covmocks/jax``)."""
    home = environ.get("HOME") or os.path.expanduser("~")
    base = environ.get("XDG_CACHE_HOME") or os.path.join(home, ".cache")
    return Path(base) / "covmocks" / "jax"


def cache_dir(configured=None, environ=os.environ) -> str:
    """The compilation cache a process uses: ``$JAX_COMPILATION_CACHE_DIR`` where it is set,
    else ``configured`` (a campaign's ``execution.compilation_cache``, e.g. a directory on
    $SCRATCH the collaboration shares), else ``user_cache_dir``."""
    return environ.get(CACHE_VARIABLE) or str(configured or user_cache_dir(environ))


def enable_compilation_cache(cache_dir) -> None:
    """Persist compiled kernels in ``cache_dir`` (every kernel, however quick to compile), so
    a new process loads rather than compiles them. The directory is named by its real path:
    JAX's keys hold it (below), so a link or a relative name reaches the same kernels."""
    import jax

    jax.config.update("jax_compilation_cache_dir", os.path.realpath(cache_dir))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _entries(cache_dir) -> list[Path]:
    """The files of ``cache_dir``: compiled kernels, the exported ones in ``exported/`` and the
    model stack's values in ``remembered/`` (``core.remembered``)."""
    path = Path(cache_dir)
    dirs = (path, path / exported.SUBDIR, path / remembered.SUBDIR)
    return [p for d in dirs if d.is_dir() for p in d.iterdir() if p.is_file()]


def prune(cache_dir, max_bytes: int = CACHE_MAX_BYTES) -> int:
    """Remove the least recently used files of ``cache_dir`` (``_entries``; last access
    or change, whichever is later) until they hold at most ``max_bytes``; returns the bytes
    removed. A process that meanwhile misses a removed kernel compiles or exports it again."""
    files = [(max(s.st_atime, s.st_mtime), s.st_size, p) for p in _entries(cache_dir)
             if (s := p.stat())]  # fmt: skip
    excess, removed = sum(size for _, size, _ in files) - max_bytes, 0
    for _, size, p in sorted(files):
        if removed >= excess:
            break
        p.unlink(missing_ok=True)
        removed += size
    return removed


def cache_usage(cache_dir) -> tuple[int, int, int]:
    """(compiled kernels, exported kernels, bytes) held in ``cache_dir`` (zeros where it does
    not exist)."""
    files = _entries(cache_dir)
    compiled = sum(p.name.endswith("-cache") for p in files)
    stored = sum(p.name.endswith(exported.SUFFIX) for p in files)
    return compiled, stored, sum(p.stat().st_size for p in files)


def describe(cache_dir) -> str:
    """``DIR: N kernels, M exported, X MB`` (what a run's last lines and ``covmocks status``
    say)."""
    compiled, stored, size = cache_usage(cache_dir)
    return f"{cache_dir}: {compiled} kernels, {stored} exported, {size / 1e6:.3g} MB"


def use_cache(configured=None, lengths=()) -> str:
    """Enable the compilation cache ``cache_dir(configured)`` in this process, ``prune`` it, start
    preloading its exported kernels of batch ``lengths`` (``exported.preload``; a box's
    ``BoxSpec.batch_lengths``) and log what it holds (an empty one: the kernels are compiled now,
    once); returns it."""
    import logging

    cache = cache_dir(configured)
    prune(cache)
    enable_compilation_cache(cache)
    logging.getLogger(__name__).info("compilation cache %s (%d kernels preloading)",
                                     describe(cache), exported.preload(lengths))  # fmt: skip
    return cache
