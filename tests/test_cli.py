"""`covmocks generate`: one-line errors and a non-zero exit for bad input; a real run."""

import os
import subprocess
import sys

import pytest

from covmocks import catalog
from covmocks.cli import main


def _fails(capsys, argv, expected):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("covmocks: error:"), err
    assert expected in err[0]
    assert "Traceback" not in err[0]


def test_missing_catalog_names_the_path(tmp_path, capsys):
    missing = tmp_path / "no_such_catalog"
    _fails(capsys, ["generate", "--source", "abacus", "--input", str(missing),
                    "--output", str(tmp_path / "o.hdf5")], str(missing))  # fmt: skip


def test_header_without_box_size(tmp_path, capsys, halo_file_without_box_size):
    argv = ["generate", "--source", "hdf5", "--input", str(halo_file_without_box_size),
            "--output", str(tmp_path / "o.hdf5")]  # fmt: skip
    _fails(capsys, argv, "box_size")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_directory(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    _fails(capsys, ["generate", "--source", "synthetic", "--n-hosts", "10",
                    "--output", str(locked / "o.hdf5")], "not writable")  # fmt: skip


def test_output_under_a_file_is_refused(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    argv = ["generate", "--source", "synthetic", "--n-hosts", "10", "--output",
            str(blocker / "o.hdf5")]  # fmt: skip
    _fails(capsys, argv, "cannot create output directory")


def test_existing_output_is_kept(tmp_path, capsys):
    out = tmp_path / "o.hdf5"
    out.write_bytes(b"finished work")
    _fails(capsys, ["generate", "--source", "synthetic", "--n-hosts", "10",
                    "--output", str(out)], "--overwrite")  # fmt: skip
    assert out.read_bytes() == b"finished work"


@pytest.mark.slow
def test_python_dash_m_generate_on_the_real_catalog(tmp_path, mini_catalog_dir):
    out = tmp_path / "mock.hdf5"
    cmd = [sys.executable, "-m", "covmocks.generate", "--source", "abacus",
           "--input", str(mini_catalog_dir), "--redshift", "0", "--output", str(out),
           "--seed", "3", "--host-limit", "40", "--chunk-hosts", "16"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "chunk 2: 8 hosts" in proc.stderr  # progress is logged per chunk
    cat = catalog.read_catalog(out)
    assert cat.attrs["n_hosts"] == 40 and cat.attrs["seed"] == 3
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp file left
