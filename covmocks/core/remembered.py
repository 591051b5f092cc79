"""Values the model stack (diffmah, diffstar, diffsky, dsps) computes outside a kernel,
remembered on disk beside the compilation cache, so that a fresh process whose kernels are all
exported (``covmocks.galaxies.exported``) never imports that stack.

Importing diffsky costs a fresh process about 2.7 s on a small CPU, more than a 1,000-host box:
its package import runs 56 jitted functions and imports scipy.stats and scipy.optimize. What
covmocks needs of the stack outside its kernels is a few constants (the population parameters'
defaults, diffsky's subhalo table) and a few small computations per snapshot (cosmic times,
stellar mass-loss weights, the synthetic mass function's tables): ``remembered(name, compute,
*args)`` returns ``compute(*args)``, a dict of NumPy arrays, from
``<compilation cache>/remembered/<key>.npz`` where it exists, else computes it and stores it
(whole or absent: ``files.replaced``). The key holds the name, the arguments (their ``repr``,
so a float is exact), JAX's 64-bit mode, the jax and jaxlib versions, the backend and a SHA-256
of the stack's source (``package_digest``): another version of any of them computes anew. The
stored arrays are the computed ones, bit for bit (``.npz``, no pickles).

Without a compilation cache nothing is stored; a file that cannot be read is computed again and
one that cannot be written (a read-only shared cache, a full disk) is said in a warning.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from covmocks.core import files

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

STACK = ("diffmah", "diffstar", "diffsky", "dsps")
SUBDIR = "remembered"
SUFFIX = ".npz"


def package_digest(packages: tuple[str, ...]) -> str:
    """SHA-256 of the ``_source_digest`` of each of ``packages``, in order; found without
    importing them (the stack: about 400 files, 35 ms once per process)."""
    parts = (f"{package}={_source_digest(package)}" for package in packages)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@functools.cache
def _source_digest(package: str) -> str:
    """SHA-256 of the path and bytes of every ``.py`` file of ``package`` (its tests excluded),
    in path order: once per process, whichever digests ask for it."""
    digest = hashlib.sha256()
    root = Path(importlib.util.find_spec(package).origin).parent
    for path in sorted(root.rglob("*.py")):
        if "tests" not in path.relative_to(root).parts:
            digest.update(f"{path.relative_to(root)}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def store_dir() -> Path | None:
    """``<compilation cache>/remembered``, or None where this process has no compilation
    cache (``jax_compilation_cache_dir`` unset)."""
    import jax

    cache = jax.config.jax_compilation_cache_dir
    return Path(cache) / SUBDIR if cache else None


def key(name: str, args: tuple) -> str:
    """The stored file's name (without suffix) of ``name`` computed on ``args``."""
    import jax
    import jaxlib

    parts = [name, repr(args), f"x64={jax.config.jax_enable_x64}", jax.__version__,
             jaxlib.__version__, jax.default_backend(), package_digest(STACK)]  # fmt: skip
    return f"{name.replace('/', '-')}-{hashlib.sha256(chr(10).join(parts).encode()).hexdigest()}"


_MEMORY: dict[tuple, dict[str, np.ndarray]] = {}


def remembered(name: str, compute, *args) -> dict[str, np.ndarray]:
    """``compute(*args)`` (a dict of arrays, read-only), from this process's memory, the store,
    or computed and stored (module docstring). ``args`` must be hashable and have an exact
    ``repr`` (floats, ints, strings, tuples of them)."""
    import numpy as np

    if (name, args) in _MEMORY:
        return _MEMORY[name, args]
    directory = store_dir()
    path = directory / f"{key(name, args)}{SUFFIX}" if directory else None
    values = _load(path) if path is not None and path.exists() else None
    if values is None:
        values = {k: np.asarray(v) for k, v in compute(*args).items()}
        if path is not None:
            _store(path, values)
    for v in values.values():
        v.flags.writeable = False
    _MEMORY[name, args] = values
    return values


def _load(path: Path) -> dict[str, np.ndarray] | None:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as stored:
            return {k: stored[k] for k in stored.files}
    except Exception as err:  # a file this numpy cannot read: compute it again
        log.warning("remembered value %s unreadable (%s): computing it again", path, err)
        return None


def _store(path: Path, values: dict[str, np.ndarray]) -> None:
    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **values)
    try:
        with files.replaced(path) as tmp:
            tmp.write_bytes(buffer.getvalue())
    except OSError as err:  # a read-only shared cache, a full disk: keep it in memory
        log.warning("remembered value %s not stored (%s)", path, err)
