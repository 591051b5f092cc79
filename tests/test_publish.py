"""catalog.publish: a finished temporary becomes the output in one step, and of two writers
of one output only the first publishes (the second gets OutputExistsError, its temporary
stays for its caller to remove) unless it overwrites."""

import errno
import os

import pytest

from covmocks.catalog import hdf5


def _tmp(path, text):
    tmp = path.with_name(f".{path.name}.tmp-{text}")
    tmp.write_text(text)
    return tmp


def test_the_first_writer_publishes_and_the_second_is_refused(tmp_path):
    out = tmp_path / "mock.hdf5"
    first, second = _tmp(out, "first"), _tmp(out, "second")
    hdf5.publish(first, out, overwrite=False)
    assert out.read_text() == "first" and not first.exists()
    with pytest.raises(hdf5.OutputExistsError, match="appeared while writing"):
        hdf5.publish(second, out, overwrite=False)
    assert out.read_text() == "first" and second.read_text() == "second"
    hdf5.publish(second, out, overwrite=True)
    assert out.read_text() == "second" and not second.exists()


def test_a_filesystem_without_hard_links_still_publishes_and_refuses(tmp_path, monkeypatch):
    def no_link(src, dst):
        raise OSError(errno.EPERM, "hard links not permitted")

    monkeypatch.setattr(os, "link", no_link)
    out = tmp_path / "mock.hdf5"
    hdf5.publish(_tmp(out, "first"), out, overwrite=False)
    assert out.read_text() == "first"
    with pytest.raises(hdf5.OutputExistsError):
        hdf5.publish(_tmp(out, "second"), out, overwrite=False)
    assert out.read_text() == "first"
