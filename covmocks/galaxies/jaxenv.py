"""Process-wide JAX settings that must be in place before ``import jax``.

XLA's concurrency-optimized CPU scheduler can deadlock when one jitted function holds two
batched ``jax.random.multivariate_normal`` draws (diffmahpop and diffstarpop both do):
both Eigen threads spin forever in the batched Cholesky loop. Turning that scheduler off
leaves results bitwise unchanged. Every process that runs the model (CLI, Parsl workers,
MPI ranks, tests) imports covmocks first, so the flag is set here.
"""

import os

SAFE_XLA_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def configure(environ=os.environ) -> None:
    """Add the safe-scheduler flag to XLA_FLAGS, keeping any flags the user set."""
    flags = environ.get("XLA_FLAGS", "")
    if "xla_cpu_enable_concurrency_optimized_scheduler" not in flags:
        environ["XLA_FLAGS"] = f"{flags} {SAFE_XLA_FLAG}".strip()


CACHE_VARIABLE = "JAX_COMPILATION_CACHE_DIR"


def cache_dir(campaign_default, environ=os.environ) -> str:
    """The compilation cache a campaign task uses: ``$JAX_COMPILATION_CACHE_DIR`` where it is
    set (one directory shared by campaigns, e.g. on $SCRATCH, set in the profile's
    ``worker_init``), else the campaign's own ``campaign_default`` (metadata/jax-cache). JAX's
    cache keys hold its version, the backend and the compile options, so campaigns can share."""
    return environ.get(CACHE_VARIABLE) or str(campaign_default)


def enable_compilation_cache(cache_dir) -> None:
    """Persist compiled kernels in ``cache_dir`` so a new process skips most compile time."""
    import jax

    jax.config.update("jax_compilation_cache_dir", str(cache_dir))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
