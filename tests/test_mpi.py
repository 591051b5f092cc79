"""Multi-rank boxes: ``mpiexec -n N python -m covmocks.cli.generate_mpi`` against the single-process
generator. Every dataset must be bit-identical for 1, 2 and 4 ranks (seeds never depend on
the rank), host indices must point into the whole file, and a failure on one rank must
fail the task promptly with nothing under the output name and no shards left behind.
"""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from covmocks.catalog import hdf5, validation
from covmocks.core.errors import InputError, OutputError, TransientInputError
from covmocks.halos import blocks, sources
from tests.conftest import require_or_skip

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300


def _find_mpiexec() -> str | None:
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.exists():
        return str(beside)
    return shutil.which("mpiexec")


MPIEXEC = _find_mpiexec()

# The parallel-HDF5 stack: a second venv (scripts/parallel-h5py.sh) whose h5py and mpi4py are
# built on the system MPICH, so its ranks must be launched by that MPICH's mpiexec.
MPIO_PYTHON = Path(os.environ.get("COVMOCKS_MPIO_PYTHON") or REPO / ".venv-mpio/bin/python")
MPIO_MPIEXEC = Path(os.environ.get("COVMOCKS_MPIO_MPIEXEC") or "/usr/bin/mpiexec")


def _mpio_missing() -> str | None:
    """Why the parallel-HDF5 stack cannot run here, or None."""
    if not MPIO_PYTHON.exists():
        return (
            f"no parallel-h5py venv at {MPIO_PYTHON}: build it with scripts/parallel-h5py.sh "
            "(or set COVMOCKS_MPIO_PYTHON)"
        )
    if not MPIO_MPIEXEC.exists():
        return f"no system MPICH launcher {MPIO_MPIEXEC} (set COVMOCKS_MPIO_MPIEXEC)"
    return None


# How mpibox logs its catalog write (rank 0, INFO).
MPIO_WRITE = "parallel HDF5 write (mpio)"
SHARD_WRITE = "shards copied by rank 0"

pytestmark = [
    pytest.mark.mpi,
    pytest.mark.slow,
    pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not found beside python or on PATH"),
]


@pytest.fixture(scope="module")
def jax_cache_env(tmp_path_factory):
    """This environment plus a JAX compilation cache shared by all runs of this module
    (kernels compile once, not once per rank per run)."""
    env = dict(os.environ)
    env["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path_factory.mktemp("jax-cache"))
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    return env


@pytest.fixture(scope="module")
def mpi_env(jax_cache_env):
    """Environment of the ranks of this interpreter (the `mpi` extra's MPICH wheel)."""
    pytest.importorskip("mpi4py")
    return jax_cache_env


@dataclasses.dataclass(frozen=True)
class Stack:
    """An interpreter, the mpiexec of the MPI its mpi4py is built on, the ranks' environment,
    and the log line of the catalog write its h5py gives (collective mpio or shard copy)."""

    name: str
    python: str
    mpiexec: str
    env: dict
    write: str

    def box(self, n_ranks: int, args: list) -> tuple:
        return mpibox(n_ranks, args, self.env, python=self.python, mpiexec=self.mpiexec)

    def reference(self, tmp_path_factory, args: list) -> hdf5.Catalog:
        return reference(tmp_path_factory, args, self.env, python=self.python)


def _mpio_stack(jax_cache_env) -> Stack:
    missing = _mpio_missing()
    if missing is not None:
        require_or_skip("mpio", missing)
    env = dict(jax_cache_env)
    # The ranks see this venv's bin/, not the main venv's (the MPICH wheel's mpiexec, mpicc).
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join([str(MPIO_PYTHON.parent), "/usr/local/bin", "/usr/bin", "/bin"])
    return Stack("mpio", str(MPIO_PYTHON), str(MPIO_MPIEXEC), env, MPIO_WRITE)


@pytest.fixture(scope="module")
def mpio_stack(jax_cache_env) -> Stack:
    """The parallel-HDF5 venv with the system MPICH's mpiexec; skips where it is not built."""
    return _mpio_stack(jax_cache_env)


@pytest.fixture(scope="module", params=["wheel", "mpio"])
def stack(request, jax_cache_env) -> Stack:
    """Each way of running mpibox: this interpreter (its h5py decides the write: the shard
    fallback for the main venv), and the parallel-HDF5 venv (collective mpio write)."""
    if request.param == "mpio":
        return _mpio_stack(jax_cache_env)
    env = request.getfixturevalue("mpi_env")
    import h5py

    write = MPIO_WRITE if h5py.get_config().mpi else SHARD_WRITE
    return Stack("wheel", sys.executable, MPIEXEC, env, write)


def _run(cmd, env, timeout=TIMEOUT_S):
    """Run ``cmd`` in its own process group; kill the whole group on timeout."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{cmd[:4]} hung for {timeout} s\nstdout:\n{out}\nstderr:\n{err}")
    return proc.returncode, out, err, time.perf_counter() - t0


def mpibox(n_ranks: int, args: list, env, python=sys.executable, mpiexec=MPIEXEC) -> tuple:
    cmd = [mpiexec, "-n", str(n_ranks), python, "-m", "covmocks.cli.generate_mpi", *map(str, args)]
    return _run(cmd, env)


def reference(tmp_path_factory, args: list, env, python=sys.executable) -> hdf5.Catalog:
    """The single-process output (``generator.generate_box`` through ``python -m
    covmocks.generate``) for the same arguments, made in a fresh process of ``python``: the
    JAX kernels' results depend on the process's import history (diffsky switches on 64-bit
    mode when imported), so a reference made inside the test process could differ in the last
    bit; and another venv may hold other versions of the numerical packages."""
    out = tmp_path_factory.mktemp("reference") / "single.hdf5"
    cmd = [python, "-m", "covmocks.generate", *map(str, args), "--output", str(out)]
    rc, _, stderr, _ = _run(cmd, env)
    assert rc == 0, stderr
    return hdf5.read_catalog(out)


def _comparable(attrs, skip=()) -> dict:
    """Attributes as a dict whose NaNs compare equal (a box without a host cut has NaN
    completeness limits, and NaN != NaN)."""
    return {k: "NaN" if isinstance(v, float | np.floating) and np.isnan(v) else v
            for k, v in dict(attrs).items() if k not in skip}  # fmt: skip


def assert_same_catalog(got: hdf5.Catalog, want: hdf5.Catalog) -> None:
    """Every dataset bit-identical; attributes equal except the creation time."""
    import h5py

    with h5py.File(got.path, "r") as g, h5py.File(want.path, "r") as w:
        assert sorted(g) == sorted(w)
        for name in w:
            a, b = g[name][...], w[name][...]
            assert a.dtype == b.dtype and a.shape == b.shape, name
            assert a.tobytes() == b.tobytes(), f"{name} differs"
            assert _comparable(g[name].attrs) == _comparable(w[name].attrs), name
    skip = {"created_utc"}
    assert _comparable(got.attrs, skip) == _comparable(want.attrs, skip)


def assert_global_host_index(cat: hdf5.Catalog) -> None:
    d = cat.data
    rows = np.arange(len(cat))
    host = d["host_index"]
    assert host.min() >= 0 and host.max() < len(cat)
    assert d["is_central"][host].all()
    assert (host[d["is_central"]] == rows[d["is_central"]]).all()
    assert (d["halo_id"][host] == d["halo_id"]).all()
    assert (host <= rows).all()


def assert_clean_directory(directory: Path, expected: set) -> None:
    """Only ``expected`` names remain: no temporary catalog, no shard directory."""
    assert {p.name for p in directory.iterdir()} == expected


# -- the real AbacusSummit-format mini catalog (3 slab files) -------------------------------


def _mini_args(mini_catalog_dir) -> list:
    return ["--source", "abacus", "--input", mini_catalog_dir, "--redshift", 0.0, "--seed", 7]


@pytest.fixture(scope="module")
def mini_reference(tmp_path_factory, mini_catalog_dir, stack):
    return stack.reference(tmp_path_factory, _mini_args(mini_catalog_dir))


@pytest.mark.parametrize("n_ranks", [1, 2, 4])
def test_mini_catalog_identical_for_any_rank_count(
    n_ranks, tmp_path, mini_catalog_dir, mini_reference, stack
):
    """One slab file per unit: with 4 ranks, rank 0 has none and only writes (with mpio it
    takes part in every collective write with an empty selection)."""
    out = tmp_path / "mock.hdf5"
    args = [*_mini_args(mini_catalog_dir), "--output", out]
    rc, stdout, stderr, wall = stack.box(n_ranks, args)
    assert rc == 0, stderr
    assert stack.write in stderr
    got = hdf5.read_catalog(out)
    assert_same_catalog(got, mini_reference)
    assert_global_host_index(got)
    assert validation.check_file(out) == []
    # Rows of the second and third slabs point past the first slab's rows.
    assert got.data["host_index"].max() > len(got) // 2
    assert f'"n_ranks": {n_ranks}' in stdout
    assert_clean_directory(tmp_path, {"mock.hdf5"})
    print(f"mini catalog, {n_ranks} ranks ({stack.name}): {wall:.1f} s")


# -- a small synthetic box (several host blocks per rank) ------------------------------------

SYNTHETIC = ["--source", "synthetic", "--n-hosts", 3000, "--seed", 3, "--realization", 2,
             "--chunk-hosts", 400]  # fmt: skip


@pytest.fixture(scope="module")
def synthetic_reference(tmp_path_factory, stack):
    return stack.reference(tmp_path_factory, SYNTHETIC)


@pytest.mark.parametrize("n_ranks", [1, 2, 4])
def test_synthetic_box_identical_for_any_rank_count(n_ranks, tmp_path, synthetic_reference, stack):
    """8 blocks of 400 hosts: several units per rank (with mpio, several rounds of collective
    writes). Rank 0 opens the source (which imports diffsky), the others receive it: all
    must still match one process."""
    out = tmp_path / "mock.hdf5"
    rc, _, stderr, wall = stack.box(n_ranks, [*SYNTHETIC, "--output", out])
    assert rc == 0, stderr
    assert stack.write in stderr
    got = hdf5.read_catalog(out)
    assert_same_catalog(got, synthetic_reference)
    assert_global_host_index(got)
    assert validation.check_file(out) == []  # the population checks too, on MPI ranks
    assert_clean_directory(tmp_path, {"mock.hdf5"})
    print(f"synthetic box, {n_ranks} ranks ({stack.name}): {wall:.1f} s")


def test_host_limit_counts_hosts_in_catalog_order(tmp_path, tmp_path_factory, mpi_env):
    """A host limit that ends inside the third block, with 3 ranks: the ranks must count
    the hosts before their units to know where the limit falls."""
    args = [*SYNTHETIC, "--host-limit", 1000]
    want = reference(tmp_path_factory, args, mpi_env)
    out = tmp_path / "mock.hdf5"
    rc, _, stderr, _ = mpibox(3, [*args, "--output", out], mpi_env)
    assert rc == 0, stderr
    got = hdf5.read_catalog(out)
    assert got.attrs["n_hosts"] == 1000
    assert_same_catalog(got, want)


def test_hdf5_source_with_mass_cut(tmp_path, tmp_path_factory, mpi_env):
    """The generic HDF5 reader, cut by mass at the source, shared among 2 ranks."""
    path = tmp_path_factory.mktemp("halos") / "halos.hdf5"
    synthetic = sources.open_source("synthetic", n_hosts=3000, seed=3, log10_mhost_min_msun=11.0)
    blocks.write_hdf5_halos(path, next(synthetic.iter_blocks(3000)), synthetic.header)
    args = ["--source", "hdf5", "--input", path, "--log10-mhost-min-msun", 11.3, "--seed", 1,
            "--chunk-hosts", 500]  # fmt: skip
    want = reference(tmp_path_factory, args, mpi_env)
    out = tmp_path / "mock.hdf5"
    rc, _, stderr, _ = mpibox(2, [*args, "--output", out], mpi_env)
    assert rc == 0, stderr
    assert_same_catalog(hdf5.read_catalog(out), want)
    assert validation.check_file(out) == []


# -- each rank reads only its share ---------------------------------------------------------

_SHARE_SCRIPT = textwrap.dedent(
    """
    import json
    import sys
    from pathlib import Path

    from mpi4py import MPI

    from covmocks.box import mpi as mpibox
    from covmocks.halos import blocks as halos
    from covmocks.box.spec import BoxSpec
    from covmocks.galaxies.registry import get_model
    from covmocks.halos.synthetic import SyntheticSource

    comm = MPI.COMM_WORLD
    SyntheticSource.BLOCK = 500  # several random-number blocks in a small box
    drawn, rows = [], []
    real_block, real_read = SyntheticSource._block, halos.HDF5Source._read

    main = []  # the box's own source (the completeness probe opens another, read apart)

    def counted_block(self, b):
        if self is main[-1]:
            drawn.append(b)
        return real_block(self, b)

    def counted_read(self, f, start, stop):
        if self is main[-1]:
            rows.append([start, stop])
        return real_read(self, f, start, stop)

    SyntheticSource._block = counted_block
    halos.HDF5Source._read = counted_read
    model = get_model("diffsky_sfh", {"batch_min": 256, "batch_max": 1024})
    out = Path(sys.argv[1])
    specs = {
        "synthetic": BoxSpec(source="synthetic", n_hosts=2000, seed=4, redshift=0.0,
                             chunk_hosts=300, output=out / "synthetic.hdf5"),
        "hdf5": BoxSpec(source="hdf5", input=sys.argv[2], seed=4, log10_mhost_min_msun=11.2,
                        chunk_hosts=300, output=out / "hdf5.hdf5"),
    }
    reads = {}
    for name, spec in specs.items():
        source = spec.open_source()
        main.append(source)
        drawn.clear()
        rows.clear()
        mpibox.generate_box_mpi(comm, source, model, spec.resolved(source.header))
        reads[name] = {"rng_blocks": list(drawn), "rows": list(rows)}
    reads = comm.gather(reads, root=0)
    if comm.rank == 0:
        print(json.dumps(reads))
    """
)


def _expected_share(n_ranks: int, rank: int) -> tuple[list, list]:
    """RNG blocks (of 500 hosts) and HDF5 row runs that ``rank`` of ``n_ranks`` must read, and
    no others: 2,000 rows in 7 units of 300."""
    from covmocks.box.mpi import rank_share

    share = rank_share(7, n_ranks, rank)
    start, stop = share.start * 300, min(share.stop * 300, 2000)
    if start >= stop:
        return [], []
    rng = list(range(start // 500, -(-stop // 500)))
    return rng, [[r, min(r + 300, stop)] for r in range(start, stop, 300)]


def test_each_rank_reads_only_its_share(tmp_path, mpi_env):
    """Synthetic (random-number BLOCK patched to 500 hosts) and HDF5 sources, 2,000 hosts in
    7 units of 300, on 1, 2 and 3 ranks: every rank draws only the random-number blocks and
    reads only the rows of its own units (each once), and both catalogs are bit-identical
    whatever the number of ranks."""
    halo_file = tmp_path / "halos.hdf5"
    synthetic = sources.open_source("synthetic", n_hosts=2000, seed=8, log10_mhost_min_msun=11.0)
    blocks.write_hdf5_halos(halo_file, next(synthetic.iter_blocks(2000)), synthetic.header)
    script = tmp_path / "share.py"
    script.write_text(_SHARE_SCRIPT)
    catalogs = {}
    for n_ranks in (1, 2, 3):
        out = tmp_path / f"ranks{n_ranks}"
        out.mkdir()
        cmd = [MPIEXEC, "-n", str(n_ranks), sys.executable, str(script), str(out), str(halo_file)]
        rc, stdout, stderr, _ = _run(cmd, mpi_env)
        assert rc == 0, stderr
        reads = json.loads(stdout.strip().splitlines()[-1])
        assert len(reads) == n_ranks
        for rank, got in enumerate(reads):
            rng, rows = _expected_share(n_ranks, rank)
            assert got["synthetic"]["rng_blocks"] == rng, (n_ranks, rank)
            assert got["hdf5"]["rows"] == rows, (n_ranks, rank)
        catalogs[n_ranks] = {name: hdf5.read_catalog(out / f"{name}.hdf5")
                             for name in ("synthetic", "hdf5")}  # fmt: skip
    assert catalogs[1]["synthetic"].attrs["n_hosts"] == 2000
    assert 0 < catalogs[1]["hdf5"].attrs["n_hosts"] < 2000
    for n_ranks in (2, 3):
        for name in ("synthetic", "hdf5"):
            assert_same_catalog(catalogs[n_ranks][name], catalogs[1][name])
            assert_global_host_index(catalogs[n_ranks][name])


# -- failures -------------------------------------------------------------------------------


def test_unreadable_slab_on_one_rank_fails_all_promptly(tmp_path, mini_catalog_dir, mpi_env):
    """Rank 1's first slab is corrupt while rank 0 works on a good one: both stop, exit 2,
    one line from rank 0, no catalog and no shards. The slab keeps its size, so that the
    checksums.crc32 size check lets it through and only reading it finds it corrupt."""
    catalog_dir = tmp_path / "Mini_N64_L32" / "halos" / "z0.000"
    shutil.copytree(mini_catalog_dir, catalog_dir)
    slab = catalog_dir / "halo_info" / "halo_info_001.asdf"
    garbage = b"#ASDF 1.0.0\nnot asdf\n"
    slab.write_bytes(garbage.ljust(slab.stat().st_size, b"x"))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    rc, stdout, stderr, wall = mpibox(
        2, ["--source", "abacus", "--input", catalog_dir, "--output", out_dir / "mock.hdf5"],
        mpi_env,
    )  # fmt: skip
    assert rc == 2, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("covmocks: error:")]
    assert len(errors) == 1 and "rank 1" in errors[0] and "halo_info_001" in errors[0], stderr
    assert "Traceback" not in stderr
    assert stdout == ""
    assert_clean_directory(out_dir, set())
    assert wall < TIMEOUT_S


def test_missing_catalog_is_one_line_exit_2(tmp_path, mpi_env):
    rc, stdout, stderr, _ = mpibox(
        2,
        [
            "--source",
            "abacus",
            "--input",
            tmp_path / "nowhere",
            "--output",
            tmp_path / "out" / "mock.hdf5",
        ],  # fmt: skip
        mpi_env,
    )
    assert rc == 2
    assert stderr.strip().splitlines() == [
        f"covmocks: error: halo catalog not found: {tmp_path / 'nowhere'} "
        "(no halo_info/halo_info_*.asdf)"
    ]
    assert stdout == ""
    assert not (tmp_path / "out" / "mock.hdf5").exists()


def test_usage_error_is_reported_once(tmp_path, mpi_env):
    rc, _, stderr, _ = mpibox(2, ["--source", "synthetic", "--output", tmp_path / "m.hdf5",
                                  "--no-such-option"], mpi_env)  # fmt: skip
    assert rc == 2
    assert stderr.count("unrecognized arguments") == 1


_FAILING_RANK_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from mpi4py import MPI

    from covmocks.box import mpi as mpibox
    from covmocks.catalog import mpio as catalog_mpio
    from covmocks.box.spec import BoxSpec
    from covmocks.galaxies.registry import get_model

    comm = MPI.COMM_WORLD
    model = get_model("diffsky_sfh")

    def on_rank_1(function):
        def wrapper(*args, **kwargs):
            if comm.rank == 1:
                (Path(sys.argv[1]).parent.parent / "rank-1-failed").touch()
                {failure}
            return function(*args, **kwargs)
        return wrapper

    {target} = on_rank_1({target})
    spec = BoxSpec(source="synthetic", n_hosts=800, seed=5, redshift=0.0, chunk_hosts=200,
                   output=Path(sys.argv[1]))
    try:
        mpibox.generate_box_mpi(comm, spec.open_source(), model, spec)
    except mpibox.RankFailure as exc:
        if comm.rank == 0:
            print(f"failed: {{exc}}", file=sys.stderr)
        sys.exit(exc.exit_code)
    """
)
RAISE = 'raise ValueError("injected")'
DIE = "import os; os._exit(9)"


def failing_rank(
    tmp_path, env, failure: str, target="model.populate", python=sys.executable, mpiexec=MPIEXEC
) -> tuple:
    """Two ranks of a box in which rank 1 runs ``failure`` whenever it calls ``target``
    (``model.populate``: while populating), after touching ``tmp_path/rank-1-failed``; the
    output goes to an empty ``tmp_path/out``."""
    script = tmp_path / "flaky.py"
    script.write_text(_FAILING_RANK_SCRIPT.format(failure=failure, target=target))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    cmd = [mpiexec, "-n", "2", python, str(script), str(out_dir / "mock.hdf5")]
    rc, _, stderr, _ = _run(cmd, env)
    return rc, stderr, out_dir


def test_exception_on_one_rank_fails_all(tmp_path, mpi_env):
    """A bug (not bad input) on rank 1: every rank raises RankFailure at the next sync
    point; exit status 1; nothing left in the output directory."""
    rc, stderr, out_dir = failing_rank(tmp_path, mpi_env, RAISE)
    assert rc == 1, stderr
    assert "failed: rank 1: host block 2: ValueError: injected" in stderr
    assert_clean_directory(out_dir, set())


def test_rank_that_dies_takes_the_job_down(tmp_path, mpi_env):
    """A rank killed outright (no Python exception to catch): the launcher ends the
    others, and nothing appears under the output name."""
    rc, stderr, out_dir = failing_rank(tmp_path, mpi_env, DIE)
    assert rc != 0, stderr
    assert not (out_dir / "mock.hdf5").exists()


class _OneRank:
    """The part of a communicator that ``mpibox.Guard`` uses, for one rank."""

    rank, size = 0, 1

    def allgather(self, value):
        return [value]


@pytest.mark.parametrize(
    "error, code",
    [(InputError("halo catalog not found: x"), 2), (OutputError("output exists: y"), 2),
     (TransientInputError("cannot read x: Input/output error"), 1), (ValueError("bug"), 1)],
)  # fmt: skip
def test_exit_status_retries_transient_read_errors(error, code):
    """Exit status 2 (bad input or output: the campaign fails the task at once) only for
    deterministic errors; a transient read error exits 1, so that the task is retried."""
    from covmocks.box import mpi as mpibox

    guard = mpibox.Guard(_OneRank())
    with guard:
        guard.context = "host block 3"
        raise error
    with pytest.raises(mpibox.RankFailure, match="rank 0: host block 3: ") as failure:
        guard.check()
    assert failure.value.exit_code == code


# -- collective parallel HDF5 only -----------------------------------------------------------


@pytest.mark.parametrize("failure", [RAISE, DIE], ids=["raises", "dies"])
def test_rank_failure_in_parallel_write_leaves_no_catalog(tmp_path, failure, mpio_stack):
    """Rank 1 fails inside the collective write (reading its first shard), while rank 0
    waits in a collective call: the job is aborted, nothing appears under the output name;
    where rank 1 could still clean up, the shard directory (holding the temporary catalog)
    is gone too."""
    rc, stderr, out_dir = failing_rank(
        tmp_path, mpio_stack.env, failure, target="catalog_mpio.read_shard",
        python=mpio_stack.python, mpiexec=mpio_stack.mpiexec,
    )  # fmt: skip
    assert rc != 0, stderr
    assert (tmp_path / "rank-1-failed").exists()  # the failure struck in the parallel write
    assert not (out_dir / "mock.hdf5").exists()
    # Not checked: the "parallel write failed" line. MPI_Abort can end the ranks before
    # Hydra has forwarded their last lines of stderr (seen here: the traceback came, the
    # line printed after it did not).
    if failure == RAISE:
        assert_clean_directory(out_dir, set())
