"""core.files.publish: a finished temporary becomes the output in one step, and of two writers
of one output only the first publishes (the second gets OutputExistsError, its temporary
stays for its caller to remove) unless it overwrites."""

import errno
import json
import os

import pytest

from covmocks.core import files


def _tmp(path, text):
    tmp = path.with_name(f".{path.name}.tmp-{text}")
    tmp.write_text(text)
    return tmp


def test_the_first_writer_publishes_and_the_second_is_refused(tmp_path):
    out = tmp_path / "mock.hdf5"
    first, second = _tmp(out, "first"), _tmp(out, "second")
    files.publish(first, out, overwrite=False)
    assert out.read_text() == "first" and not first.exists()
    with pytest.raises(files.OutputExistsError, match="appeared while writing"):
        files.publish(second, out, overwrite=False)
    assert out.read_text() == "first" and second.read_text() == "second"
    files.publish(second, out, overwrite=True)
    assert out.read_text() == "second" and not second.exists()


def test_a_filesystem_without_hard_links_still_publishes_and_refuses(tmp_path, monkeypatch):
    def no_link(src, dst):
        raise OSError(errno.EPERM, "hard links not permitted")

    monkeypatch.setattr(os, "link", no_link)
    out = tmp_path / "mock.hdf5"
    files.publish(_tmp(out, "first"), out, overwrite=False)
    assert out.read_text() == "first"
    with pytest.raises(files.OutputExistsError):
        files.publish(_tmp(out, "second"), out, overwrite=False)
    assert out.read_text() == "first"


def test_temporaries_are_unique_hidden_and_made_with_the_umask(tmp_path):
    """Not pid-only: two writers of one output in one process (or one pid on two nodes)
    never share a temporary; the cleanup of a killed attempt finds them by prefix."""
    out = tmp_path / "qa" / "r0000_z0.500.json"
    out.parent.mkdir()
    old = os.umask(0o022)
    try:
        a, b = files.temporary(out), files.temporary(out)
    finally:
        os.umask(old)
    assert a != b and a.name.startswith(f".{out.name}.tmp-{os.getpid()}-")
    assert (a.stat().st_mode & 0o777) == 0o644


def test_publish_makes_the_file_and_the_rename_durable(tmp_path, monkeypatch):
    """fsync of the file before the rename and of the directory after it: a node crash
    leaves the old content or the new, never an empty record beside a valid catalog."""
    synced = []
    real = os.fsync

    def recording(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", recording)
    out = tmp_path / "record.json"
    files.write_json(out, {"done": True})
    assert json.loads(out.read_text()) == {"done": True}
    assert len(synced) == 2 and synced[0].startswith(str(tmp_path / ".record.json.tmp-"))
    assert synced[1] == str(tmp_path)


def test_a_writer_that_fails_midway_leaves_the_old_file_and_no_temporary(tmp_path):
    out = tmp_path / "plan.jsonl"
    files.write_text(out, "old\n")

    def lines():
        yield "new 1\n"
        raise RuntimeError("the writer died")

    with pytest.raises(RuntimeError):
        files.write_text(out, lines())
    assert out.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == [out.name]


def test_catalog_writer_closes_its_file_when_the_attributes_cannot_be_written(tmp_path):
    """A value JSON cannot encode fails the catalog; the HDF5 file and its descriptor are
    closed anyway (a warm worker runs many boxes) and nothing is left on disk."""
    from covmocks.catalog import hdf5

    before = set(os.listdir("/proc/self/fd"))
    out = tmp_path / "mock.hdf5"
    writer = hdf5.CatalogWriter(out, {"bad": object()}, compression="none")
    with pytest.raises(TypeError):
        with writer:  # held, as a traceback holds it, so that garbage collection cannot close it
            pass
    assert set(os.listdir("/proc/self/fd")) <= before
    assert list(tmp_path.iterdir()) == []
