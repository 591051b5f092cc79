"""The model stack's values remembered on disk (``covmocks.core.remembered``): stored whole,
loaded bit for bit, keyed by their arguments and the stack's source, and never a reason to
fail a box."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from covmocks.core import files, remembered

CALLS: list[tuple] = []


def _compute(x: float, n: int) -> dict:
    CALLS.append((x, n))
    return {"table": np.linspace(0.0, x, n) ** 1.5, "total": np.float64(x * n)}


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An empty store and an empty memory, as a fresh process has."""
    monkeypatch.setattr(remembered, "store_dir", lambda: tmp_path / "remembered")
    monkeypatch.setattr(remembered, "_MEMORY", {})
    CALLS.clear()
    return tmp_path / "remembered"


def _forget(monkeypatch):
    monkeypatch.setattr(remembered, "_MEMORY", {})


def test_a_value_is_computed_once_then_loaded_bit_for_bit(store, monkeypatch):
    first = remembered.remembered("toy/table", _compute, 0.1 + 0.2, 7)
    assert remembered.remembered("toy/table", _compute, 0.1 + 0.2, 7) is first  # memory
    _forget(monkeypatch)  # a fresh process
    loaded = remembered.remembered("toy/table", _compute, 0.1 + 0.2, 7)
    assert CALLS == [(0.1 + 0.2, 7)] and len(list(store.iterdir())) == 1
    expected = _compute(0.1 + 0.2, 7)
    assert all(np.array_equal(loaded[k], expected[k]) for k in expected)
    assert loaded["total"].dtype == np.float64 and not loaded["table"].flags.writeable


def test_other_arguments_or_another_stack_compute_anew(store, monkeypatch):
    remembered.remembered("toy/table", _compute, 0.3, 7)
    remembered.remembered("toy/table", _compute, 0.30000000000000004, 7)  # repr is exact
    _forget(monkeypatch)
    monkeypatch.setattr(remembered, "package_digest", lambda packages: "another diffsky")
    remembered.remembered("toy/table", _compute, 0.3, 7)
    assert len(CALLS) == 3 and len(list(store.iterdir())) == 3


def test_an_unreadable_file_is_computed_again(store, monkeypatch, caplog):
    remembered.remembered("toy/table", _compute, 1.0, 3)
    (path,) = store.iterdir()
    path.write_bytes(b"half a file")
    _forget(monkeypatch)
    value = remembered.remembered("toy/table", _compute, 1.0, 3)
    assert len(CALLS) == 2 and "unreadable" in caplog.text
    assert np.array_equal(value["table"], _compute(1.0, 3)["table"])


def test_a_store_it_cannot_write_keeps_the_value_in_memory(store, monkeypatch, caplog):
    def full(path):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(files, "replaced", full)
    value = remembered.remembered("toy/table", _compute, 2.0, 4)
    assert value["total"] == 8.0 and "not stored" in caplog.text and not store.exists()


def test_without_a_compilation_cache_nothing_is_stored(monkeypatch, tmp_path):
    monkeypatch.setattr(remembered, "store_dir", lambda: None)
    monkeypatch.setattr(remembered, "_MEMORY", {})
    assert remembered.remembered("toy/table", _compute, 2.0, 4)["total"] == 8.0
    assert not list(tmp_path.iterdir())


def test_the_stack_digest_is_found_without_importing_the_stack():
    code = (
        "import sys\nfrom covmocks.core import remembered\n"
        "assert len(remembered.package_digest(remembered.STACK)) == 64\n"
        "print(sorted(set(remembered.STACK) & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
