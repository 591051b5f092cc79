"""Exported kernels (issue 25): a fresh process loads a kernel's stored StableHLO instead of
tracing it, runs the same program as the process that exported it, and never loads a file
made from other code, settings or shapes."""

from __future__ import annotations

import concurrent.futures
import os
import threading
from pathlib import Path

import jax
import numpy as np
import pytest
from jax import numpy as jnp

from covmocks.core import remembered
from covmocks.galaxies import diffsky, exported, jaxenv, kernels
from covmocks.halos import blocks

TRACES = []


def _kernel(x, scale, table):
    return {"y": jnp.sin(x) * scale + table["offset"], "n": jnp.sum(x > 0)}


def _fresh(name="toy"):
    """A kernel as a new process builds it: a new function (JAX has no trace of it), nothing
    loaded yet."""

    def kernel(x, scale, table):
        TRACES.append(x.shape)  # Python runs only when the function is traced
        return _kernel(x, scale, table)

    return exported.StoredKernel(name, lambda: jax.jit(kernel))


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setattr(exported, "store_dir", lambda: tmp_path / "exported")
    TRACES.clear()
    return tmp_path / "exported"


def test_a_second_process_loads_the_kernel_without_tracing_it(store):
    x = np.linspace(-1, 1, 16)
    first = _fresh()(x, 2.0, table={"offset": np.float32(0.5)})
    assert TRACES == [(16,)]
    (path,) = store.iterdir()
    assert path.suffix == exported.SUFFIX
    again = _fresh()(x, 2.0, table={"offset": np.float32(0.5)})
    assert TRACES == [(16,)]  # loaded, not traced
    assert list(store.iterdir()) == [path]
    for key in ("y", "n"):
        assert np.array_equal(first[key], again[key])
    plain = jax.jit(_kernel)(x, 2.0, table={"offset": np.float32(0.5)})
    assert all(np.array_equal(first[k], plain[k]) for k in plain)


def test_another_shape_dtype_weak_type_or_name_is_another_file(store):
    fresh = _fresh()
    offset = {"offset": np.float32(0.5)}
    fresh(np.zeros(8), 2.0, offset)
    fresh(np.zeros(8), 2.0, offset)  # the same signature: loaded once in the process
    fresh(np.zeros(4), 2.0, offset)
    fresh(np.zeros(4, np.float32), 2.0, offset)
    fresh(np.zeros(4, np.float32), np.float64(2.0), offset)  # strongly typed: promotes
    _fresh("other")(np.zeros(8), 2.0, offset)
    assert len(list(store.iterdir())) == 5


def test_other_source_makes_other_files(store, monkeypatch):
    x = np.zeros(8)
    _fresh()(x, 1.0, {"offset": 0.0})
    monkeypatch.setattr(exported, "source_digest", lambda: "edited")
    monkeypatch.setattr(exported, "version_prefix", exported.version_prefix.__wrapped__)
    _fresh()(x, 1.0, {"offset": 0.0})
    assert len(TRACES) == 2 and len(list(store.iterdir())) == 2


def test_the_source_digest_covers_the_model_packages():
    remembered._source_digest.cache_clear()
    digest = exported.source_digest()
    assert len(digest) == 64 and digest == exported.source_digest()
    assert set(exported.TRACED_PACKAGES) == {"covmocks.galaxies", "diffmah", "diffstar",
                                             "diffsky", "dsps"}  # fmt: skip


def test_an_unreadable_file_is_exported_again(store, caplog):
    x = np.ones(8)
    expected = _fresh()(x, 1.0, {"offset": 0.0})["y"]
    (path,) = store.iterdir()
    path.write_bytes(b"not an exported kernel")
    assert np.array_equal(_fresh()(x, 1.0, {"offset": 0.0})["y"], expected)
    assert "unreadable" in caplog.text and len(TRACES) == 2
    assert jax.export.deserialize(bytearray(path.read_bytes())).in_avals[0].shape == (8,)


def test_the_store_is_beside_the_compilation_cache():
    cache = os.environ[jaxenv.CACHE_VARIABLE]  # the test run's (tests/conftest.py)
    assert exported.store_dir() == Path(cache) / exported.SUBDIR


def test_without_a_compilation_cache_nothing_is_stored(tmp_path, monkeypatch):
    monkeypatch.setattr(exported, "store_dir", lambda: None)
    out = _fresh()(np.ones(4), 1.0, {"offset": 0.0})
    assert np.array_equal(out["y"], jax.jit(_kernel)(np.ones(4), 1.0, {"offset": 0.0})["y"])
    assert not list(tmp_path.iterdir())


def test_the_cache_counts_and_prunes_exported_kernels(tmp_path):
    (tmp_path / "exported").mkdir()
    (tmp_path / "jit_f-0123-cache").write_bytes(b"x" * 100)
    old = tmp_path / "exported" / f"abc{exported.SUFFIX}"
    old.write_bytes(b"x" * 300)
    os.utime(old, (1e9, 1e9))
    assert jaxenv.cache_usage(tmp_path) == (1, 1, 400)
    assert jaxenv.describe(tmp_path) == f"{tmp_path}: 1 kernels, 1 exported, 0.0004 MB"
    assert jaxenv.prune(tmp_path, max_bytes=150) == 300  # the least recently used
    assert jaxenv.cache_usage(tmp_path) == (1, 0, 100)


def test_the_models_draws_are_the_same_bits_loaded_or_traced(store, monkeypatch):
    """The centrals' draw of 1,024 hosts through a stored kernel, exported, then loaded as a
    new process does, then preloaded, against the plain jitted kernel: every output
    identical."""
    monkeypatch.setattr(exported, "_PRELOADED", {})
    monkeypatch.setattr(exported, "_started", threading.Event())
    model = diffsky.DiffskySFH()
    central = kernels.build_draw_kernels()[0]
    header = blocks.SimulationHeader(100.0, 0.5, blocks.SYNTHETIC_COSMOLOGY, "t", "m", "p", "r")
    ctx = model.context(diffsky.CosmicTimes.from_header(header))
    root = diffsky.snapshot_key(1, 2, 3)
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 2**32, (2, 1024), dtype=np.uint32)
    lgm = rng.uniform(11, 14, 1024).astype(np.float32)
    args = (*keys, lgm, model.mahpop, model.sfhpop, ctx, root)
    plain = central.build()(*args)
    for preload in (False, False, True):  # exported, loaded, preloaded in the background
        assert not preload or exported.preload([1024]) == 1
        stored = exported.StoredKernel(central.name, central.build)(*args)
        assert all(np.array_equal(stored[k], plain[k]) for k in plain)
    assert len(list(store.iterdir())) == 1


def test_a_store_it_cannot_write_runs_the_kernel_unstored(store, caplog, monkeypatch):
    """A full disk (or a read-only shared cache): a warning, the kernel runs, nothing lost."""

    def full(path, data):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(exported, "_write_atomically", full)
    out = _fresh()(np.ones(4), 1.0, {"offset": 0.0})
    assert np.array_equal(out["y"], _kernel(np.ones(4), 1.0, {"offset": 0.0})["y"])
    assert "not stored" in caplog.text and "No space left" in caplog.text


def test_a_kernel_that_cannot_be_exported_is_traced(store, caplog, monkeypatch):
    def refuse(fn):
        raise ValueError("custom call target without compatibility guarantees")

    monkeypatch.setattr(jax.export, "export", refuse)
    out = _fresh()(np.ones(4), 1.0, {"offset": 0.0})
    assert np.array_equal(out["y"], _kernel(np.ones(4), 1.0, {"offset": 0.0})["y"])
    assert "cannot be exported" in caplog.text and not store.exists()


def test_preloaded_kernels_are_taken_compiled(store, monkeypatch):
    """A fresh process preloads this version's stored kernels in the background; the kernel
    then takes the compiled one (nothing deserialized on the call) and gives the same bits.
    Files of another version (jax, source, backend) or batch length are not preloaded."""
    x = np.linspace(-1, 1, 8)
    expected = _fresh()(x, 2.0, {"offset": np.float32(0.5)})
    (stale := store / f"0123456789abcdef-1-8-{'0' * 64}{exported.SUFFIX}").write_bytes(b"old")
    monkeypatch.setattr(exported, "_PRELOADED", {})
    monkeypatch.setattr(exported, "_started", threading.Event())
    assert exported.preload([1024]) == 0  # none of that length
    monkeypatch.setattr(exported, "_started", threading.Event())
    assert exported.preload([8]) == 1
    assert exported.preload([8]) == 0  # once per process
    assert str(stale) not in exported._PRELOADED
    (future,) = exported._PRELOADED.values()
    future.result(timeout=60)
    deserialized = []
    monkeypatch.setattr(jax.export, "deserialize", lambda b: deserialized.append(b))
    out = _fresh()(x, 2.0, {"offset": np.float32(0.5)})
    assert not deserialized and not exported._PRELOADED
    assert all(np.array_equal(out[k], expected[k]) for k in expected)


def test_a_failed_preload_is_loaded_on_the_call(store, monkeypatch, caplog):
    x = np.ones(8)
    expected = _fresh()(x, 1.0, {"offset": 0.0})["y"]
    (path,) = store.iterdir()
    failed = concurrent.futures.Future()
    failed.set_exception(RuntimeError("broken"))
    monkeypatch.setattr(exported, "_PRELOADED", {str(path): failed})
    assert np.array_equal(_fresh()(x, 1.0, {"offset": 0.0})["y"], expected)
    assert "preloading" in caplog.text and "broken" in caplog.text


def test_a_box_preloads_the_batch_lengths_it_will_call():
    from covmocks.box.spec import BoxSpec

    def lengths(**kw):
        return BoxSpec(source="synthetic", output=Path("x.hdf5"), **kw).batch_lengths()

    assert lengths(n_hosts=1000) == [1024]
    assert lengths(n_hosts=10) == [1024]  # the smallest is always called
    assert lengths(n_hosts=100_000) == [65536, 8192, 1024]
    assert lengths(n_hosts=100_000, chunk_hosts=1000) == [1024]
    assert lengths(n_hosts=2000, model_params={"batch_min": 256, "batch_max": 4096}) == [
        4096, 2048, 256]  # fmt: skip
    assert lengths(box_size=50.0) == [65536, 8192, 1024]  # hosts not known yet: by chunk
    for refused in ({"batch_min": "x"}, {"batch_min": None}, {"batch_min": 9, "batch_max": 8},
                    [1], {"batch_max": True}):  # fmt: skip
        assert lengths(n_hosts=1000, model_params=refused) == [1024]  # the model says why
