"""Exported kernels: the model's jitted kernels stored as serialized StableHLO (``jax.export``)
beside the compilation cache, so that a fresh process deserializes a kernel instead of
tracing and lowering it again.

A persistent compilation cache saves XLA's compile, but every new process (a ``covmocks
generate``, a new pilot block's worker, an MPI rank) still traces each kernel's Python and
lowers it to StableHLO before it can look the compiled kernel up: about 0.3 s per padded shape
of the draw kernels on a small CPU, 14 shapes in a 1e5-host box. ``StoredKernel`` wraps a
jitted kernel: the first call with a new signature (argument structure, shapes and dtypes)
loads ``<cache>/exported/<signature_key>.jaxexport`` where it exists, else exports the kernel
and writes that file (atomically: a concurrent writer's file is whole or absent). Every call
then runs the exported program (``Exported.call``), whose compiled form the compilation cache
keeps; the first process and every later one run the same program, so catalogs are the same
bits.

The file's key (``signature_key``) holds what the exported program depends on and JAX's own
cache key cannot see, since no tracing happens: the kernel's name and build arguments, the
signature, the jax and jaxlib versions, the backend, the JAX settings that change a trace
(64-bit mode, the PRNG implementation and its partitioning, dtype promotion, default matmul
precision) and a SHA-256 of the source of every module a kernel can run (``source_digest``:
``covmocks.galaxies`` and the diffmah, diffstar, diffsky and dsps packages). Editing any of
them, or installing another version, makes new files; stale ones are never loaded. Without a
compilation cache (``jax_compilation_cache_dir`` unset), or for a kernel ``jax.export`` cannot
serialize, kernels are plain jitted functions; a file that cannot be written (a read-only
shared cache, a full disk) is said in a warning and the kernel runs unstored.

What is left of a fresh process's first box is loading the compiled kernels from the cache:
``preload`` does that in a background thread while the process imports and sets up.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import functools
import hashlib
import logging
import threading
from pathlib import Path

from covmocks.core import files, remembered

log = logging.getLogger(__name__)

SUBDIR = "exported"
SUFFIX = ".jaxexport"
# Packages whose Python a kernel runs while it is traced.
TRACED_PACKAGES = ("covmocks.galaxies", *remembered.STACK)
# JAX settings that change what a trace produces.
TRACE_SETTINGS = ("jax_enable_x64", "jax_default_prng_impl", "jax_threefry_partitionable",
                  "jax_numpy_dtype_promotion", "jax_default_matmul_precision")  # fmt: skip


def source_digest() -> str:
    """SHA-256 of every ``.py`` file of ``TRACED_PACKAGES`` (``remembered.package_digest``)."""
    return remembered.package_digest(TRACED_PACKAGES)


@functools.cache
def version_prefix() -> str:
    """The first 16 hex digits of a SHA-256 of jax's and jaxlib's versions, the backend and
    ``source_digest``: what every file this process may load starts with (``preload``)."""
    import jax
    import jaxlib

    parts = [jax.__version__, jaxlib.__version__, jax.default_backend(), source_digest()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def signature_key(name: str, leaves, in_tree) -> str:
    """The stored file's name for kernel ``name`` called with ``leaves`` (the flattened
    arguments) of structure ``in_tree``: ``version_prefix``, 64-bit mode (0 or 1), the batch
    length (the first array argument's leading axis) and a SHA-256 of the rest,
    ``<prefix>-<x64>-<length>-<sha256>``."""
    import jax

    parts = [name, str(in_tree), version_prefix(),
             *(f"{k}={getattr(jax.config, k)}" for k in TRACE_SETTINGS),
             *map(str, map(_aval, leaves))]  # fmt: skip
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()
    rows = next((x.shape[0] for x in leaves if len(x.shape)), 0)  # the padded batch length
    return f"{version_prefix()}-{int(jax.config.jax_enable_x64)}-{rows}-{digest}"


def _aval(x) -> tuple:
    """(shape, dtype, weak_type) of an argument: a weakly typed scalar promotes differently
    from a strongly typed one, so the two trace to different programs."""
    return (tuple(x.shape), x.dtype, bool(getattr(x, "weak_type", False)))


def store_dir() -> Path | None:
    """``<compilation cache>/exported``, or None where this process has no compilation cache."""
    import jax

    cache = jax.config.jax_compilation_cache_dir
    return Path(cache) / SUBDIR if cache else None


def _write_atomically(path: Path, data: bytes) -> None:
    with files.replaced(path) as tmp:
        tmp.write_bytes(data)


# Compiled kernels the preloader holds, by file path, until a StoredKernel takes them.
_PRELOADED: dict[str, concurrent.futures.Future] = {}
# Most files preloaded: a 1e5-host box with the default batches uses 14 shapes.
PRELOAD_MAX = 16
_started = threading.Event()


def preload(lengths, limit: int = PRELOAD_MAX) -> int:
    """Load the ``limit`` most recently used exported kernels of this version whose batch
    length is one of ``lengths`` (what the process's boxes will call) and compile them (from
    the compilation cache) in a background thread, while the process goes on importing and
    setting up; a ``StoredKernel`` whose file is among them takes the compiled kernel instead
    of loading it. Once per process (a warm worker has its kernels); returns how many are
    queued.

    Loading a compiled kernel (about 0.16 s each on a small CPU) runs in XLA without Python's
    lock, so it overlaps the imports and set-up of a fresh process. At exit the thread stops
    after the kernel it is loading."""
    if _started.is_set():  # the process's kernels are loaded, or it exported them itself
        return 0
    _started.set()
    directory = store_dir()
    if directory is None or not directory.is_dir():
        return 0
    wanted = {str(n) for n in lengths}
    files = [(max(s.st_atime, s.st_mtime), p) for p in directory.glob(f"{version_prefix()}-*")
             if p.name.endswith(SUFFIX) and p.name.split("-")[2] in wanted
             and (s := p.stat())]  # fmt: skip
    queued = [p for _, p in sorted(files, reverse=True)[:limit]]
    futures = [_PRELOADED.setdefault(str(p), concurrent.futures.Future()) for p in queued]
    stop = threading.Event()
    thread = threading.Thread(target=_load_files, args=(queued, futures, stop),
                              name="covmocks-preload", daemon=True)  # fmt: skip
    thread.start()
    atexit.register(lambda: (stop.set(), thread.join()))
    return len(queued)


def _load_files(paths, futures, stop) -> None:
    import jax

    for path, future in zip(paths, futures, strict=True):
        if stop.is_set() or not future.set_running_or_notify_cancel():
            continue
        try:
            exported = jax.export.deserialize(bytearray(path.read_bytes()))
            with jax.enable_x64(path.name.split("-")[1] == "1"):  # as it was exported
                future.set_result(jax.jit(exported.call).lower(*exported.in_avals).compile())
        except Exception as err:  # the caller loads it itself
            future.set_exception(err)


class StoredKernel:
    """A jitted kernel whose exported form is stored per signature (module docstring).

    ``name`` names the kernel and its build arguments (e.g. ``sfh/36/float32``); ``build()``
    returns the jitted kernel, and is called only to trace it (it may import the model stack,
    which a process whose kernels are all stored never needs); calls take and return what the
    jitted kernel does."""

    def __init__(self, name: str, build):
        self.name, self.build = name, build
        self._loaded = {}  # signature -> jitted Exported.call

    def __call__(self, *args, **kwargs):
        import jax

        leaves, in_tree = jax.tree.flatten((args, kwargs))
        # a Python scalar is what jit makes of it: a weakly typed array
        leaves = [x if hasattr(x, "shape") else jax.numpy.asarray(x) for x in leaves]
        signature = (in_tree, jax.config.jax_enable_x64, *map(_aval, leaves))
        call = self._loaded.get(signature)
        if call is None:
            call = self._loaded[signature] = self._load(leaves, in_tree)
        return call(*leaves)

    def _traced(self, in_tree):
        """The jitted kernel as a function of the flattened arguments (built here, outside
        any trace: a kernel's build makes constant arrays)."""
        import jax

        fn = self.build()

        def unflattened(*flat):
            args, kwargs = jax.tree.unflatten(in_tree, flat)
            return fn(*args, **kwargs)

        return unflattened

    def _load(self, leaves, in_tree):
        """A jitted callable of the flattened arguments: the stored export, or a new one."""
        import jax

        directory = store_dir()
        if directory is None:
            return self._traced(in_tree)
        path = directory / f"{signature_key(self.name, leaves, in_tree)}{SUFFIX}"
        future = _PRELOADED.pop(str(path), None)
        if future is not None and not future.cancel():
            try:
                return future.result()
            except Exception as err:
                log.warning("preloading %s failed (%s): loading it now", path, err)
        exported = None
        if path.exists():
            try:
                exported = jax.export.deserialize(bytearray(path.read_bytes()))
            except Exception as err:  # a file this jax cannot read: export it again
                log.warning("exported kernel %s unreadable (%s): exporting it again", path, err)
        if exported is None:
            flat_fn = jax.jit(self._traced(in_tree))
            avals = [jax.ShapeDtypeStruct(s, d, weak_type=w) for s, d, w in map(_aval, leaves)]
            try:
                exported = jax.export.export(flat_fn)(*avals)
            except ValueError as err:  # e.g. a backend's custom call jax.export cannot keep
                log.warning("kernel %s cannot be exported (%s): every process traces it",
                            self.name, err)  # fmt: skip
                return self._traced(in_tree)
            try:
                _write_atomically(path, bytes(exported.serialize()))
                log.debug("exported kernel %s to %s", self.name, path)
            except OSError as err:  # a read-only shared cache, a full disk: run it unstored
                log.warning("exported kernel %s not stored (%s)", path, err)
        return jax.jit(exported.call)
