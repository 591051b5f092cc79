"""A full disk: the output filesystem fills mid-write (a tmpfs that the test mounts, as root).

The write that finds the disk full fails its task with "no space left" in its error, naming
the file; nothing appears under a final name and no temporary file stays behind; the process
lives on (HDF5 never sees a write fail: ``covmocks.catalog.hdf5.SpaceGuard``); finished catalogs,
QA records and the journal are intact, the driver returns, and once space is freed
``covmocks retry`` finishes the campaign without redoing a finished box.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from covmocks.catalog import hdf5, summary
from covmocks.core.errors import NoSpaceError
from covmocks.workflow.retry import classify
from tests.conftest import LOCAL_RUN
from tests.reliability_out import merge_summary

PAGE = 4096
MODEL_PARAMS = '{"batch_min": 256, "batch_max": 1024}'


def _unmount(target: Path) -> None:
    """Unmount ``target``; lazily where a process still holds a file there (Parsl keeps its
    log open in the driver after a run), so that the tmpfs goes with its last user."""
    for _ in range(3):
        if subprocess.run(["umount", str(target)], capture_output=True).returncode == 0:
            return
        time.sleep(0.2)
    subprocess.run(["umount", "-l", str(target)], capture_output=True, check=True)


@pytest.fixture
def tmpfs(tmp_path):
    """``tmpfs(size, name="fs") -> Path``: a tmpfs of ``size`` bytes (rounded up to pages)
    mounted at ``tmp_path / name``, unmounted at teardown. Skips unless root and mount work."""
    if os.geteuid() != 0:
        pytest.skip("a full disk is a tmpfs mounted by the test: needs root")
    mounted = []

    def mount(size: int, name: str = "fs") -> Path:
        target = tmp_path / name
        target.mkdir()
        size = -(-size // PAGE) * PAGE
        cmd = ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(target)]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs: {run.stderr.strip() or run.returncode}")
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        _unmount(target)


def _files(root: Path) -> list[str]:
    """Every file under ``root`` (hidden ones too), relative, sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


def _used(root: Path) -> int:
    st = os.statvfs(root)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def _columns(n: int, rng) -> dict:
    columns = {}
    for name, (dtype, shape, *_) in hdf5.SCHEMA.items():
        values = rng.random((n, *shape)) if dtype.startswith("f") else np.zeros((n, *shape))
        columns[name] = values.astype(dtype)
    return columns


def _one_line_no_space(error: BaseException | str, path) -> None:
    text = str(error)
    assert "\n" not in text and "no space left" in text.lower() and str(path) in text, text


# --- the catalog writer ---------------------------------------------------------------------


def test_catalog_writer_stops_at_the_write_that_finds_the_disk_full(tmpfs, tmp_path):
    fs = tmpfs(256 * 1024)
    path = fs / "r0000" / "mock_z0.500.hdf5"
    rng = np.random.default_rng(1)
    rows = []
    with pytest.raises(NoSpaceError) as info:
        # uncompressed and in small chunks: the data reaches the disk block by block
        with hdf5.CatalogWriter(path, {"seed": 1}, compression="none", chunk_rows=256) as w:
            for _ in range(100):
                w.append(_columns(1000, rng))
                rows.append(w.n)
    assert 0 < len(rows) < 100  # mid-write: some blocks went to disk, then the disk was full
    _one_line_no_space(info.value, path)
    assert classify(info.value, timed_out=False) == "transient"
    assert _files(fs) == []  # neither the catalog nor its temporary
    assert _used(fs) < 64 * 1024  # the temporary's space is back
    # HDF5 lives on in this process: a catalog is written and read back elsewhere
    other = tmp_path / "other.hdf5"
    with hdf5.CatalogWriter(other, {"seed": 2}) as w:
        w.append(_columns(10, rng))
    assert len(hdf5.read_catalog(other)) == 10


def test_space_guard_holds_what_did_not_fit_and_reads_it_back(tmpfs):
    fs = tmpfs(PAGE * 4)
    guard = hdf5.SpaceGuard(fs / "x")
    data = bytes(range(256)) * 128  # 32 KiB: twice the disk
    assert guard.write(data) == len(data) and guard.error is not None
    assert guard.seek(PAGE, os.SEEK_SET) == PAGE and guard.write(b"abc") == 3  # held too
    assert guard.seek(0, os.SEEK_END) == len(data) and guard.tell() == len(data)
    guard.seek(0)
    want = data[:PAGE] + b"abc" + data[PAGE + 3 :]
    assert guard.read(len(data)) == want
    guard.seek(len(data) - 2)
    assert guard.read(6) == data[-2:] + bytes(4)  # zeros past the end, like HDF5's sec2
    with pytest.raises(NoSpaceError, match="no space left to write .*x: No space left"):
        guard.check()
    guard.close()


SCRIPT = """
import sys
import numpy as np
from covmocks.catalog import hdf5 as catalog
from covmocks.core.errors import NoSpaceError
rng = np.random.default_rng(0)
columns = {name: np.zeros((1000, *shape), dtype) + rng.random((1000, *shape)).astype(dtype)
           for name, (dtype, shape, *_) in catalog.SCHEMA.items()}
try:
    with catalog.CatalogWriter(sys.argv[1], {}, compression="none", chunk_rows=256) as w:
        for _ in range(100):
            w.append(columns)
except NoSpaceError as exc:
    print(f"NoSpaceError: {exc}")
"""


def test_a_full_disk_does_not_crash_the_process(tmpfs):
    """HDF5 (2.0) cannot close a file after a write of it failed, and the process died with
    SIGSEGV closing it or at exit; a Parsl worker died so (WorkerLost: a free re-run)."""
    fs = tmpfs(256 * 1024)
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(fs / "c.hdf5")],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("NoSpaceError: no space left to write"), run.stdout
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert _files(fs) == []


# --- covmocks generate ----------------------------------------------------------------------

# Runs ``covmocks generate`` of one small box (argv[1]: the JSON argument list, "{dir}" in it
# standing for the output directory) in a roomy directory (argv[2]), then in each directory
# of argv[3:] (on a tmpfs of its own) filled with a ballast that leaves room, in bytes, for the
# whole pages of the files that fit (statistics, then samples: written first) and half of the
# next one ("case" names it; "first_write": none), then once more after the ballast is gone.
# Prints, as JSON, {case: [[exit status, stderr, stdout, files left], the same again]}, the
# files (hidden ones too) but the ballast. One process: the model compiles once, and a crash
# (HDF5 closing a file whose write failed) fails the test, not the test session.
GENERATE = """
import contextlib, io, json, os, sys
from pathlib import Path
from covmocks.cli import main as cli

argv, roomy = json.loads(sys.argv[1]), Path(sys.argv[2])
NAMES = {"statistics": "mock.stats.hdf5", "samples": "mock.samples.hdf5", "catalog": "mock.hdf5"}

def generate(directory):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        rc = cli.main([a.replace("{dir}", str(directory)) for a in argv])
    files = sorted(str(p.relative_to(directory)) for p in Path(directory).rglob("*")
                   if p.name != "ballast" and not p.is_dir())
    return [rc, err.getvalue(), out.getvalue(), files]

def fill(directory, leave):
    ballast = Path(directory) / "ballast"
    with open(ballast, "wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(bytes(1 << 16))
    os.truncate(ballast, max(0, ballast.stat().st_size - leave))
    return ballast

assert generate(roomy)[0] == 0
pages = {k: -(-(roomy / n).stat().st_size // 4096) * 4096 for k, n in NAMES.items()}
results = {}
for directory in sys.argv[3:]:
    case = Path(directory).name
    order = list(NAMES)
    fitting = order[: order.index(case)] if case in order else []
    room = sum(pages[k] for k in fitting) + (pages[case] // 2 if case in order else 0)
    ballast = fill(directory, room)
    results[case] = [generate(directory)]
    ballast.unlink()
    results[case].append(generate(directory))
print(json.dumps(results))
"""

RULES = json.dumps([{"name": "everything", "select": "all"}])
GENERATE_ARGV = ["generate", "--source", "synthetic", "--n-hosts", "200", "--redshift", "0.5",
                 "--seed", "4", "--model-params", MODEL_PARAMS, "--chunk-hosts", "100", "-q",
                 "--output", "{dir}/mock.hdf5", "--statistics", "{dir}/mock.stats.hdf5",
                 "--samples", "{dir}/mock.samples.hdf5", "--sample-rules", RULES]  # fmt: skip
# Where the disk fills: at the first write, or while writing one of the box's files.
CASES = ("first_write", "statistics", "samples", "catalog")


@pytest.mark.slow  # one process compiles the model: 30 s on an idle core
def test_generate_on_a_full_disk_says_so_in_one_line_and_leaves_nothing(tmpfs, tmp_path):
    dirs = [tmpfs(1 << 20, name=case) for case in CASES]
    roomy = tmp_path / "roomy"
    cmd = [sys.executable, "-c", GENERATE, json.dumps(GENERATE_ARGV), str(roomy), *dirs]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-5000:]
    results = json.loads(run.stdout.splitlines()[-1])
    for case, directory in zip(CASES, dirs, strict=True):
        (rc, err, out, files), again = results[case]
        lines = [line for line in err.splitlines() if line.strip()]
        assert rc == 2 and out == "" and len(lines) == 1, (case, err)
        assert lines[0].startswith("covmocks: error: no space left to write "), (case, err)
        assert lines[0].endswith(": No space left on device"), (case, err)
        # nothing under a final name (catalog, statistics, samples), no temporary left behind:
        # the files that fitted went with the catalog that did not
        assert files == [], (case, files)
        # space freed: the same box is written whole
        assert again[0] == 0, (case, again[1])
        assert again[3] == ["mock.hdf5", "mock.samples.hdf5", "mock.stats.hdf5"], (case, again)
        stats = summary.read(directory / "mock.stats.hdf5")
        assert stats["attrs"]["n_galaxies"] == len(hdf5.read_catalog(directory / "mock.hdf5"))
    merge_summary({"test": "disk_full_generate", "kind": "disk_full",
                   "fault": "the disk fills up while `covmocks generate` writes",
                   "how": f"{len(CASES)} moments ({', '.join(CASES)}) on a 1 MiB tmpfs; one-line "
                          "error, nothing under a final name, the same box whole once space "
                          "is freed"})  # fmt: skip


# --- a campaign -----------------------------------------------------------------------------


def _fill(fs: Path, leave: int) -> Path:
    """A ballast file that leaves ``leave`` bytes free on ``fs``."""
    ballast = fs / "ballast"
    with open(ballast, "wb", buffering=0) as f:
        try:
            while True:
                f.write(bytes(1 << 20))
        except OSError:
            pass
    os.truncate(ballast, max(0, ballast.stat().st_size - leave))
    return ballast


N_BOXES = 5
# Free bytes left when the disk fills: room for the driver's lock and a journal line, not
# for a box, nor for Parsl to start (its block's submit script, its monitoring database).
ROOM = 64 * 1024


def _wait(proc, console: Path, condition, timeout_s: float = 300) -> None:
    """Wait for ``condition()`` while the driver ``proc`` runs (its console in the message)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert proc.poll() is None and time.monotonic() < deadline, console.read_text()
        time.sleep(0.2)


def _finished(layout, task_ids) -> dict:
    """The mtimes of the files of finished boxes: catalog, QA record, statistics."""
    from covmocks.core.layout import parse_task_id

    stamps = {}
    for tid in task_ids:
        realization, z = parse_task_id(tid)
        for path in (layout.catalog(realization, float(z)), layout.qa_record(tid),
                     layout.statistics(tid)):  # fmt: skip
            stamps[path] = path.stat().st_mtime_ns
    return stamps


def _assert_intact(layout) -> None:
    """Whatever is under a final name is whole: every catalog passes validation, every QA
    record and statistics file reads; no temporary stays in catalogs/ or qa/."""
    from covmocks.catalog.validation import check_file

    catalogs = sorted(layout.catalogs.rglob("*.hdf5"))
    assert catalogs
    for path in catalogs:
        assert check_file(path) == [], path
    for path in layout.qa.glob("r*.json"):
        assert json.loads(path.read_text())["task_id"] == path.stem
    for path in layout.qa.glob("*.stats.hdf5"):
        assert summary.read(path)["attrs"]["n_galaxies"] > 0
    left = [p for d in (layout.catalogs, layout.qa) for p in d.rglob(".*")]
    assert left == [], left


def test_room_needed_counts_each_filesystem_once(tmpfs, make_campaign):
    """Catalogs on a filesystem of their own (a symlink, as a scratch quota would be): each
    filesystem needs the boxes in flight, the campaign directory's Parsl's files as well; a
    directory on a filesystem already counted adds nothing."""
    from covmocks.workflow.space import RUN_BYTES, SpaceWait, room_needed

    campaign = make_campaign(LOCAL_RUN)
    layout = campaign.layout
    fs = tmpfs(1 << 20)
    layout.catalogs.parent.mkdir(parents=True)
    layout.catalogs.symlink_to(fs, target_is_directory=True)
    needs = room_needed(layout, 1e6, 3, layout.qa / "r0000_z0.500.json")
    assert needs == {layout.root: 3e6 + RUN_BYTES, layout.catalogs: 3e6}
    wait = SpaceWait(needs, poll_s=0)
    assert list(wait.short()) == [layout.catalogs]  # 1 MiB free, 3 MB needed
    assert wait.describe().startswith(f"no space left on the filesystem of {layout.catalogs} (")
    assert not wait.ready()
    assert room_needed(layout, 1e3, 2) == {layout.root: 2e3 + RUN_BYTES, layout.catalogs: 2e3}
    assert SpaceWait(room_needed(layout, 1e3, 2), poll_s=0).ready()


def test_a_driver_starts_with_room_for_one_box_not_for_every_box_in_flight(tmpfs, tmp_path):
    """Before any box is made its size is the profile's estimate, made for production boxes:
    the driver starts with room for Parsl's files and one box (a rehearsal of the production
    profile on a small disk), and holds only when not even that is free."""
    import threading

    from covmocks.workflow.driver import Runner
    from covmocks.workflow.space import RUN_BYTES
    from tests.conftest import write_campaign

    fs = tmpfs(RUN_BYTES + (24 << 20))
    (tmp_path / "prof.yaml").write_text("cost: {seconds_per_task: 60, gigabytes_per_task: 0.02}\n")
    campaign = write_campaign(
        fs, LOCAL_RUN, execution={"profile": str(tmp_path / "prof.yaml"), "max_in_flight": 100}
    )  # 2 GB in flight
    started = threading.Event()
    runner = Runner(campaign, progress=False, monitoring=False)
    waiter = threading.Thread(target=lambda: (runner._room_to_start(), started.set()))
    waiter.start()
    waiter.join(timeout=30)
    assert started.is_set()  # 20 MB for one box, and Parsl's 32 MiB, are free
    ballast = _fill(fs, 1 << 20)
    waiter = threading.Thread(target=lambda: (runner._room_to_start(), started.set()),
                              daemon=True)  # fmt: skip
    started.clear()
    waiter.start()
    waiter.join(timeout=2)
    assert not started.is_set()  # 1 MiB left: it holds
    ballast.unlink()


@pytest.mark.slow
def test_campaign_on_a_disk_that_fills_up_carries_on_once_space_is_freed(tmpfs, tmp_path):
    """The whole campaign directory (catalogs, metadata, Parsl's run directory, the
    monitoring database, the journal, the logs) on a filesystem that is full when the
    driver starts, and fills up again while a box runs; the CLI driver, monitoring on, holds
    both times, says so once each, and goes on by itself once the test frees the space."""
    from covmocks.workflow.driver import Runner
    from covmocks.workflow.journal import Journal
    from covmocks.workflow.metadata import write_plan
    from covmocks.workflow.status import campaign_status
    from tests.conftest import write_campaign

    fs = tmpfs(64 << 20)
    science = {"realizations": list(range(N_BOXES)), "redshifts": [0.5]}
    # the driver looks at the free space every second (production: 10 s)
    campaign = write_campaign(fs, LOCAL_RUN, science=science, execution={"space_poll_s": 1})
    layout = campaign.layout
    tids = [t.task_id for t in write_plan(campaign).tasks]
    # the first run makes two boxes: the others failed before, so only a retry runs them
    journal = Journal(layout.journal)
    for tid in tids[2:]:
        journal.write(tid, "failed", error="held back by the test")
    journal.close()
    assert Runner(campaign, progress=False, monitoring=False).run() == {"done": 2, "failed": 0}
    finished = _finished(layout, tids[:2])
    go = tmp_path / "go"  # one box waits for it at its start (a fault), off the full disk
    layout.faults.write_text(json.dumps({tids[3]: {"action": "wait", "until": str(go)}}))

    console = tmp_path / "console.txt"
    with open(console, "w") as out:
        argv = [sys.executable, "-m", "covmocks.cli.main", "retry", str(campaign.path)]
        ballast = _fill(fs, ROOM)  # full before the driver starts
        full_since = time.time()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait(proc, console, lambda: "holding the boxes" in console.read_text())
            ballast.unlink()
            _wait(proc, console, Path(f"{layout.log_stem(tids[3])}.faults").exists)
            ballast = _fill(fs, ROOM)  # full again while that box runs: its files fail
            go.touch()
            _wait(proc, console, lambda: console.read_text().count("holding the boxes") == 2)
            ballast.unlink()
            try:
                proc.wait(timeout=300)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the driver did not end once space was freed:\n{console.read_text()}")
            assert proc.returncode == 0, console.read_text()
        finally:
            proc.kill()
    text = console.read_text()
    assert text.count("holding the boxes") == 2 and "resuming" in text, text
    assert "Traceback" not in text and "Logging error" not in text, text
    events = [e for e in Journal(layout.journal).read() if e["t"] >= full_since]
    held = {e["task"] for e in events if e["event"] == "held"}
    assert tids[3] in held, events
    assert all("no space left" in e["error"] for e in events if e["event"] == "held")
    assert not [e for e in events if e["event"] in ("retry", "failed", "lost")], events
    assert campaign_status(campaign).counts["done"] == N_BOXES
    assert _finished(layout, tids[:2]) == finished
    assert layout.monitoring_db.stat().st_size > 0
    _assert_intact(layout)
    merge_summary(
        {
            "test": "disk_full_campaign",
            "kind": "disk_full",
            "fault": "the campaign's whole directory is full when the driver starts, and "
            "fills up again while a box runs",
            "how": f"the driver held before starting Parsl, then held {len(held)} running "
            "box(es) uncharged; it said so once each time and went on by itself when space "
            f"was freed; console {len(text.splitlines())} lines, no traceback; the 2 "
            "boxes finished before stayed untouched",
        }
    )


# --- the collective MPI-IO write ------------------------------------------------------------

MPIO_SCRIPT = """
import os, sys, types
from pathlib import Path
import numpy as np
from mpi4py import MPI
from covmocks.box import mpi as mpibox
from covmocks.catalog import hdf5 as catalog

comm = MPI.COMM_WORLD
out, leave, compression, rows = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
shard_dir = out.parent / f".{out.name}.mpi-test"
n_units = 4
if comm.rank == 0:
    shard_dir.mkdir()
comm.Barrier()
mine = mpibox.rank_share(n_units, comm.size, comm.rank)
rng = np.random.default_rng(comm.rank)
for unit in mine:
    columns = {name: rng.random((rows, *shape)).astype(dtype) if dtype.startswith("f")
               else np.zeros((rows, *shape), dtype) for name, (dtype, shape, *_) in
               catalog.SCHEMA.items()}
    with catalog.CatalogWriter(mpibox._shard_path(shard_dir, unit), {}, compression="none") as w:
        w.append(columns)
comm.Barrier()
if comm.rank == 0:  # the disk fills up, but for `leave` bytes
    ballast = out.parent / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT)
    for block in (1 << 20, 4096):
        try:
            while True:
                os.write(fd, bytes(block))
        except OSError:
            pass
    os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
    os.close(fd)
comm.Barrier()
spec = types.SimpleNamespace(output=out, compression=compression, overwrite=False)
mpibox._write_collective(comm, spec, {"seed": 1}, mine, [{"n_rows": rows}] * n_units, shard_dir)
print(f"rank {comm.rank}: written", flush=True)
"""


@pytest.mark.mpi
@pytest.mark.parametrize(
    "compression, rows",
    [("gzip", 5000), ("none", 100_000)],
    ids=["one rank fails, job aborted", "every rank fails, no abort"],
)
def test_collective_write_on_a_full_disk_says_so_in_one_line_and_leaves_nothing(
    tmpfs, tmp_path, compression, rows
):
    """Two ranks write a catalog through parallel HDF5 (MPI-IO) onto a disk that has 64 KiB
    left: the job ends with exit status 1 (retried) and one line, "no space left to write"
    and the catalog's name, and leaves neither the catalog, nor its temporary, nor shards.
    Small units: only rank 0 finds the disk full, rank 1 waits in a collective call, the job
    is aborted (``mpibox.AGREE_S`` later); big uncompressed units: both ranks find it full
    while HDF5 allocates the datasets, rank 0 says so and every rank exits."""
    from tests.test_mpi import REPO, _mpio_stack

    stack = _mpio_stack(os.environ)
    fs = tmpfs(48 << 20)
    out = fs / "mock_z0.000.hdf5"
    script = tmp_path / "mpio_full.py"
    script.write_text(MPIO_SCRIPT)
    env = stack.env | {"PYTHONPATH": str(REPO)}
    cmd = [stack.mpiexec, "-n", "2", stack.python, str(script), str(out), str(64 * 1024),
           compression, str(rows)]  # fmt: skip
    run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 1, run.stderr
    assert "written" not in run.stdout
    errors = [line for line in run.stderr.splitlines() if line.startswith("covmocks: error:")]
    assert len(errors) == 1, run.stderr
    _one_line_no_space(errors[0], out)
    assert errors[0].endswith("aborting all ranks") == (rows == 5000)
    assert _files(fs) == ["ballast"]
    merge_summary({"test": f"disk_full_collective_{compression}", "kind": "disk_full",
                   "fault": "the disk fills up during a collective MPI-IO write (2 ranks)",
                   "how": ("rank 0 alone finds it full; the job aborts with one line"
                           if rows == 5000 else "every rank finds it full; all exit with "
                           "one line") + ", no catalog, temporary or shard left"})  # fmt: skip
