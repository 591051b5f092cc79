"""`covmocks generate`: one-line errors and a non-zero exit for bad input; a real run."""

import os
import subprocess
import sys

import pytest

from covmocks.catalog import hdf5
from covmocks.cli.main import main


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
    cat = hdf5.read_catalog(out)
    assert cat.attrs["n_hosts"] == 40 and cat.attrs["seed"] == 3
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp file left


def test_outputs_that_collide_are_refused(tmp_path, capsys):
    gen = ["generate", "--source", "synthetic", "--n-hosts", "10", "--output"]
    _fails(capsys, gen + [str(tmp_path / "m.hdf5"), "--statistics", str(tmp_path / "m.hdf5")],
           "output files collide")  # fmt: skip
    _fails(capsys, gen + [str(tmp_path), "--overwrite"], "output is a directory")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--seed", "-1"], "seed must be in [0, 2**31)"),
        (["--realization", str(2**32)], "realization must be in [0, 2**31)"),
        (["--redshift", "nan"], "redshift must be in [0, 20]"),
        (["--log10-mhost-min-msun", "1e300"], "host mass cut 1e+300 is outside"),
        (["--samples", "s.hdf5", "--sample-rules", '[{"name": "m", "select": "mstar"}]'],
         "needs exactly one of floor and density"),
    ],
)  # fmt: skip
def test_values_out_of_range_are_one_line(tmp_path, capsys, extra, expected):
    argv = ["generate", "--source", "synthetic", "--n-hosts", "10", "--output",
            str(tmp_path / "m.hdf5"), *extra]  # fmt: skip
    _fails(capsys, argv, expected)


def test_line_breaks_in_a_message_are_escaped(tmp_path, capsys):
    _fails(capsys, ["generate", "--source", "hdf5", "--input", str(tmp_path / "a\nb\u2028c"),
                    "--output", str(tmp_path / "m.hdf5")], "a\\nb\\u2028c")  # fmt: skip
    with pytest.raises(SystemExit):
        main(["plan", "--bad\noption", str(tmp_path / "x.yaml")])
    assert "--bad\\noption" in capsys.readouterr().err.splitlines()[-1]


@pytest.mark.parametrize("every", ["0", "-1", "nan", "inf"])
def test_report_watch_needs_a_pause(tmp_path, capsys, every):
    with pytest.raises(SystemExit) as exc:
        main(["report", str(tmp_path / "c.yaml"), "--watch", every])
    assert exc.value.code == 2 and "--watch" in capsys.readouterr().err


def _halos(path, **attrs):
    import h5py
    import numpy as np

    from covmocks.core.units import r200m_h

    mass = np.full(4, 1e12)
    with h5py.File(path, "w") as f:
        f["id"], f["pos"], f["vel"] = np.arange(4), np.full((4, 3), 5.0), np.zeros((4, 3))
        f["mass"], f["radius"] = mass, r200m_h(mass, 0.3)
        f.attrs.update(box_size=50.0, h=0.7, Om0=0.3, omega_b=0.022, redshift=0.5, **attrs)
    return path


def _nan_populate(self, hosts, snap, root_key):
    """A model that gives NaN stellar masses (``fake_populate``'s galaxies otherwise)."""
    import numpy as np

    from tests.fuzz_cli import fake_populate

    galaxies = fake_populate(self, hosts, snap, root_key)
    galaxies["log10_mstar"] = np.full_like(galaxies["log10_mstar"], np.nan)
    galaxies["log10_mstar_surviving"] = galaxies["log10_mstar"]
    return galaxies


def _box_argv(halos, out, *extra):
    return ["generate", "--source", "hdf5", "--input", str(halos), "--output",
            str(out / "m.hdf5"), "--statistics", str(out / "s.hdf5"), *extra]  # fmt: skip


def test_catalog_that_fails_validation_is_removed(tmp_path, capsys, monkeypatch):
    """A model that gives NaN: the command fails naming the check and the input, and leaves
    neither catalog nor statistics."""
    from covmocks.galaxies.diffsky import DiffskySFH

    monkeypatch.setattr(DiffskySFH, "populate", _nan_populate)
    out = tmp_path / "out"
    argv = _box_argv(_halos(tmp_path / "halos.hdf5"), out)
    _fails(capsys, argv, "failed validation and was removed: finite_values")
    assert not list(out.iterdir())


def test_overwrite_keeps_the_previous_box_until_the_new_one_validates(
    tmp_path, capsys, monkeypatch
):
    """--overwrite with a new catalog that fails validation leaves the previous catalog and
    statistics as they were; one that passes replaces them. No file is left aside."""
    from covmocks.galaxies.diffsky import DiffskySFH
    from tests.fuzz_cli import fake_populate

    halos, out = _halos(tmp_path / "halos.hdf5"), tmp_path / "out"
    monkeypatch.setattr(DiffskySFH, "populate", fake_populate)
    assert main(_box_argv(halos, out, "--seed", "1")) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(before) == ["m.hdf5", "s.hdf5"]

    monkeypatch.setattr(DiffskySFH, "populate", _nan_populate)
    capsys.readouterr()
    _fails(capsys, _box_argv(halos, out, "--seed", "2", "--overwrite"), "failed validation")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    monkeypatch.setattr(DiffskySFH, "populate", fake_populate)
    assert main(_box_argv(halos, out, "--seed", "2", "--overwrite")) == 0
    assert sorted(p.name for p in out.iterdir()) == ["m.hdf5", "s.hdf5"]
    assert hdf5.read_catalog(out / "m.hdf5").attrs["seed"] == 2


def test_text_attributes_read_back_as_written(tmp_path, monkeypatch):
    """Text that looks like JSON (a file named ``[run1].hdf5``, a sim_name ``null``) is read
    back as written: only what the writer encoded is decoded."""
    from covmocks.galaxies.diffsky import DiffskySFH
    from tests.fuzz_cli import fake_populate

    monkeypatch.setattr(DiffskySFH, "populate", fake_populate)
    halos = _halos(tmp_path / "[run1].hdf5", mass_definition="null", radius_definition="{x}")
    out = tmp_path / "m.hdf5"
    assert main(["generate", "--source", "hdf5", "--input", str(halos), "--output", str(out),
                 "--host-limit", "2"]) == 0  # fmt: skip
    attrs = hdf5.read_catalog(out).attrs
    assert attrs["sim_name"] == "[run1]" and attrs["input_catalog"] == str(halos)
    assert attrs["mass_definition"] == "null" and attrs["radius_definition"] == "{x}"
    assert attrs["host_limit"] == 2 and isinstance(attrs["versions"], dict)
    assert "json_attributes" not in attrs


def test_a_second_sigterm_does_not_cut_the_driver_s_unwinding_short(tmp_path):
    """SIGTERM unwinds the driver like Ctrl-C; a second one while it shuts Parsl down (here:
    a cleanup that takes a second) is ignored, and the cleanup finishes."""
    import signal
    import subprocess
    import sys

    code = (  # as in the driver: Parsl's cleanup runs in a finally inside the block
        "import time\nfrom covmocks.core.interrupts import sigterm_raises\n"
        "with sigterm_raises():\n    try:\n        print('running', flush=True)\n"
        "        time.sleep(60)\n    except KeyboardInterrupt:\n"
        "        print('unwinding', flush=True)\n        time.sleep(1.0)\n"
        "        print('unwound', flush=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "running"
    proc.send_signal(signal.SIGTERM)
    assert proc.stdout.readline().strip() == "unwinding"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert out.strip() == "unwound" and proc.returncode == 0
