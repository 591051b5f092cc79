"""Inputs that are not all there (issue 23): an AbacusSummit directory checked against its
``checksums.crc32`` (GNU ``cksum`` lines) at planning (presence and size: the box stays
blocked), at reading (InputError before any halo) and, on request, by CRC
(``covmocks plan --verify-inputs``); the POSIX cksum CRC itself against the ``cksum`` command.

Each test works on a copy of the Mini catalog's snapshot directory in ``tmp_path`` whose
``halo_info/checksums.crc32`` is written by the real ``cksum`` command.
"""

import logging
import os
import random
import shutil
import subprocess

import pytest

from covmocks.campaign import Campaign
from covmocks.cli import main
from covmocks.core.errors import InputError, TransientError
from covmocks.halos import abacus_layout
from covmocks.halos.abacus import AbacusSource
from covmocks.halos.abacus_layout import CHECKSUMS, posix_cksum
from covmocks.workflow.plan import make_plan
from tests.abacus_files import write_cleaning
from tests.conftest import campaign_file

pytestmark = pytest.mark.skipif(shutil.which("cksum") is None, reason="no cksum command")


def cksum_lines(directory, names) -> str:
    """What the ``cksum`` command prints for ``names`` in ``directory``."""
    return subprocess.run(["cksum", *names], cwd=directory, capture_output=True, text=True,
                          check=True).stdout  # fmt: skip


def write_checksums(directory, extra: str = "") -> None:
    names = sorted(p.name for p in directory.iterdir() if p.name != CHECKSUMS)
    (directory / CHECKSUMS).write_text(cksum_lines(directory, names) + extra)


@pytest.fixture
def snapshot(tmp_path, mini_catalog_dir):
    """A copy of the Mini snapshot directory at ``tmp/sims/Mini_N64_L32/halos/z0.000``, its
    ``halo_info/checksums.crc32`` written by ``cksum``; warned-once state reset."""
    dest = tmp_path / "sims" / "Mini_N64_L32" / "halos" / "z0.000"
    shutil.copytree(mini_catalog_dir, dest)
    for checksums in dest.rglob(CHECKSUMS):
        checksums.unlink()
    write_checksums(dest / "halo_info")
    return dest


@pytest.fixture(autouse=True)
def warn_afresh(monkeypatch):
    monkeypatch.setattr(abacus_layout._Once, "warned", False)


def one_box(tmp_path, snapshot, **science):
    """A campaign file of one box (r0, z=0) over ``snapshot``, and the campaign loaded."""
    path = campaign_file(tmp_path, science={
        "source": "abacus", "n_hosts": None, "input": f"{snapshot.parent}/z{{redshift:.3f}}",
        "realizations": [0], "redshifts": [0.0], **science})  # fmt: skip
    return path, Campaign.load(path)


def test_the_copy_is_complete_and_plans_todo(tmp_path, snapshot, mini_catalog_dir, caplog):
    shipped = (mini_catalog_dir / "halo_info" / CHECKSUMS).read_text()
    assert (snapshot / "halo_info" / CHECKSUMS).read_text() == shipped  # AbacusSummit's is cksum's
    _, campaign = one_box(tmp_path, snapshot)
    with caplog.at_level(logging.WARNING):
        (task,) = make_plan(campaign, check_sizes=True).tasks
    assert task.state == "todo" and task.blocked_on is None
    assert CHECKSUMS not in caplog.text  # this directory has one: nothing to warn of


def test_a_missing_slab_blocks_the_box_and_is_named(tmp_path, snapshot, capsys):
    (snapshot / "halo_info" / "halo_info_001.asdf").unlink()
    path, campaign = one_box(tmp_path, snapshot)
    (task,) = make_plan(campaign, check_sizes=True).tasks
    assert task.state == "blocked"
    assert task.blocked_on == f"{snapshot / 'halo_info'}: halo_info_001.asdf missing"
    assert main.main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert "done 0 todo 0 blocked 1" in out and "halo_info_001.asdf missing" in out


def test_a_truncated_slab_blocks_the_box_with_its_expected_size(tmp_path, snapshot):
    slab = snapshot / "halo_info" / "halo_info_002.asdf"
    os.truncate(slab, 1000)  # a copy cut short
    _, campaign = one_box(tmp_path, snapshot)
    (task,) = make_plan(campaign, check_sizes=True).tasks
    assert task.state == "blocked"
    assert "halo_info_002.asdf has 1000 bytes, checksums.crc32 says 41958" in task.blocked_on
    assert "halo_info_000" not in task.blocked_on


def test_a_slab_not_listed_blocks_too(tmp_path, snapshot):
    shutil.copy(snapshot / "halo_info" / "halo_info_002.asdf",
                snapshot / "halo_info" / "halo_info_003.asdf")  # fmt: skip
    _, campaign = one_box(tmp_path, snapshot)
    (task,) = make_plan(campaign, check_sizes=True).tasks
    assert task.state == "blocked" and "halo_info_003.asdf is not in checksums.crc32" in (
        task.blocked_on
    )


def test_only_the_files_the_box_reads_count(tmp_path, snapshot):
    """Lines for files the box does not read (another catalog type) do not block it."""
    write_checksums(snapshot / "halo_info", extra="123 456 halo_rv_A_000.asdf\n")
    _, campaign = one_box(tmp_path, snapshot)
    assert make_plan(campaign, check_sizes=True).tasks[0].state == "todo"


def test_a_checksums_file_cut_short_blocks_the_box(tmp_path, snapshot):
    checksums = snapshot / "halo_info" / CHECKSUMS
    checksums.write_text(checksums.read_text()[:-30])  # the last line's name is cut
    _, campaign = one_box(tmp_path, snapshot)
    (task,) = make_plan(campaign, check_sizes=True).tasks
    assert task.state == "blocked" and "checksums.crc32 line 3 is not" in task.blocked_on


@pytest.mark.parametrize("damage", ["remove", "truncate"])
def test_reading_an_incomplete_directory_fails_before_any_halo(snapshot, monkeypatch, damage):
    slab = snapshot / "halo_info" / "halo_info_001.asdf"
    slab.unlink() if damage == "remove" else os.truncate(slab, 10)
    opened = []
    monkeypatch.setattr(AbacusSource, "_open", lambda self, *a, **k: opened.append(a))
    with pytest.raises(InputError, match="halo_info_001.asdf") as exc:
        AbacusSource(snapshot)
    assert opened == [] and not isinstance(exc.value, TransientError)  # never retried
    assert str(exc.value).startswith(f"halo catalog incomplete: {snapshot / 'halo_info'}: ")
    expected = "missing" if damage == "remove" else "has 10 bytes, checksums.crc32 says 54270"
    assert expected in str(exc.value)


def test_a_complete_directory_reads_as_before(snapshot, mini_catalog_dir):
    copy, original = AbacusSource(snapshot), AbacusSource(mini_catalog_dir)
    assert copy.header == original.header
    assert sum(len(b.ids) for b in copy.iter_blocks(1000)) == 381


def test_verify_inputs_catches_a_corrupted_byte_of_the_same_size(tmp_path, snapshot, capsys):
    path, campaign = one_box(tmp_path, snapshot)
    assert main.main(["plan", "-q", "--verify-inputs", str(path)]) == 0
    out = capsys.readouterr().out
    assert "verified 3 input files (144 kB) in 1 directories: 0 mismatches" in out

    slab = snapshot / "halo_info" / "halo_info_001.asdf"
    data = bytearray(slab.read_bytes())
    data[20000] ^= 0x01  # one bit, inside the compressed arrays: same size, wrong data
    slab.write_bytes(bytes(data))
    assert (
        make_plan(campaign, check_sizes=True).tasks[0].state == "todo"
    )  # sizes alone do not see it
    assert main.main(["plan", "--verify-inputs", str(path)]) == 1
    out, err = capsys.readouterr()
    lines = [line for line in out.splitlines() if "checksums.crc32 says" in line]
    assert len(lines) == 1 and lines[0].startswith(f"{slab}: CRC ")
    assert lines[0].endswith("size 54270, checksums.crc32 says CRC 2237048601 size 54270")
    assert "1 mismatches" in out and "verify inputs" in err  # the progress bar, on stderr


def test_no_checksums_file_warns_once_and_reads_as_before(tmp_path, snapshot, mini_catalog_dir,
                                                          caplog):  # fmt: skip
    (snapshot / "halo_info" / CHECKSUMS).unlink()
    _, campaign = one_box(tmp_path, snapshot, realizations=[0, 1])  # two boxes, one directory
    with caplog.at_level(logging.WARNING, logger="covmocks.halos.abacus_layout"):
        plan = make_plan(campaign, check_sizes=True)
        sources = [AbacusSource(snapshot) for _ in range(3)]
    assert plan.counts["todo"] == 2
    warned = [r for r in caplog.records if CHECKSUMS in r.getMessage()]
    assert len(warned) == 1 and "read without checking" in warned[0].getMessage()
    original = AbacusSource(mini_catalog_dir)
    assert sources[0].header == original.header
    ids = [b.ids for b in sources[0].iter_blocks(1000)]
    assert [list(i) for i in ids] == [list(b.ids) for b in original.iter_blocks(1000)]


def test_cleaned_catalogs_are_checked_too(tmp_path, snapshot, capsys):
    cleaned = write_cleaning(snapshot, tmp_path / "linked")  # links the copy beside cleaning/
    cleaned_info = cleaned.cleandir / "Mini_N64_L32" / "z0.000" / "cleaned_halo_info"
    write_checksums(cleaned_info)
    path, campaign = one_box(tmp_path, cleaned.halo_dir, cleaning=str(cleaned.cleandir))
    assert make_plan(campaign, check_sizes=True).tasks[0].state == "todo"
    assert main.main(["plan", "-q", "--verify-inputs", str(path)]) == 0
    assert "verified 6 input files" in capsys.readouterr().out  # the slabs, the cleaned files

    os.truncate(cleaned_info / "cleaned_halo_info_000.asdf", 100)
    (task,) = make_plan(campaign, check_sizes=True).tasks
    assert task.state == "blocked" and task.blocked_on.startswith(f"{cleaned_info}: ")
    assert "cleaned_halo_info_000.asdf has 100 bytes" in task.blocked_on
    with pytest.raises(InputError, match="cleaned_halo_info_000.asdf has 100 bytes"):
        AbacusSource(cleaned.halo_dir, cleandir=cleaned.cleandir)


def test_posix_cksum_equals_the_cksum_command(tmp_path, mini_catalog_dir):
    rng = random.Random(23)
    # lengths of 0 to 3 bytes (cksum appends the length, least significant byte first)
    files = {"empty": b"", "one": b"a", "text": b"covmocks\n" * 37,
             "random": rng.randbytes(300_001)}  # fmt: skip
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    paths = [tmp_path / name for name in files] + sorted((mini_catalog_dir / "halo_info").glob(
        "*.asdf"))  # fmt: skip
    printed = subprocess.run(["cksum", *map(str, paths)], capture_output=True, text=True,
                             check=True).stdout.splitlines()  # fmt: skip
    for path, line in zip(paths, printed, strict=True):
        crc, size, _ = line.split(" ", 2)
        assert posix_cksum(path) == (int(crc), int(size)), path
        assert posix_cksum(path, chunk_bytes=4096) == (int(crc), int(size)), path  # chunked
