"""Fuzzing the inputs a user controls, with hypothesis: campaign files, halo HDF5 files and
``covmocks`` command lines (hostile text, unicode and shell metacharacters in names, paths
and values included).

Every case must end in a clean error (``ConfigError``/``CovmocksError`` worded as the
project words them: one line per problem naming the file and what is wrong; on the command
line ``covmocks: error: ...`` and exit status 2) or in a correct result: never another
exception, never a partly written output, and never a command run from a field value (a
``touch`` of a sentinel file hidden in names, paths and notification text must never run).

Reproducible: the cases are derandomized (the same ones every run) and
``CASES_PER_SURFACE`` (1,000) per surface, shared by the tests of that surface
(``COVMOCKS_FUZZ_SCALE`` and ``COVMOCKS_FUZZ_RANDOM``: more, and new, cases for a local
soak). Everything is written under temporary directories: never outside them, although
the tests may run as root.

The bugs the fuzzing found are fixed; their cases stay as regression tests (``test_fixed_*``,
tables ``FIXED_*_BUG_CASES``), each with what it once did.

With ``$COVMOCKS_RELIABILITY_OUT`` set, the module merges a summary into that file under
``test_fuzz`` (``tests/reliability_out.py``): per surface, the cases run and the failures.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import dataclasses
import functools
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from unittest import mock

import hypothesis
import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from covmocks.campaign import Campaign
from covmocks.campaign.profiles import profile_path, profile_ref
from covmocks.campaign.schema import Notify
from covmocks.cli import main
from covmocks.core import units
from covmocks.core.errors import ConfigError, CovmocksError, TransientInputError
from covmocks.core.layout import task_id
from covmocks.galaxies.diffsky import DiffskySFH
from covmocks.halos.blocks import HDF5Source
from covmocks.report import page
from covmocks.workflow.notify import Notifier
from tests.fuzz_campaigns import TRUE, damaged_campaigns, damaged_text, dump
from tests.fuzz_cli import (
    command_lines,
    fake_populate,
    make_template,
    option,
)
from tests.fuzz_halos import (
    EITHER,
    ERROR,
    OK,
    HaloFile,
    halo_files,
    names_one_of,
    single_damage,
)
from tests.fuzz_values import (
    CASES_PER_SURFACE,
    FUZZ_RANDOM,
    FUZZ_SCALE,
    NAME_TEXT,
    SENTINEL_DIR,
    check_cli_stderr,
    check_config_error,
    executed_commands,
    fuzz_settings,
    has_line_break,
)

pytestmark = pytest.mark.slow

SURFACES = ("campaign files", "halo files", "command lines")
_GENERATED: collections.Counter = collections.Counter()  # hypothesis's cases
_CASES: collections.Counter = collections.Counter()  # those and the fixed bugs' cases
_FAILING_CASES: collections.Counter = collections.Counter()
_FAILED_TESTS: dict = collections.defaultdict(set)


@contextlib.contextmanager
def case_of(surface: str, test: str, generated: bool = True):
    """One case of ``surface`` (``SURFACES``) run by ``test`` (``generated`` by hypothesis,
    or a fixed bug's regression case): counted, and counted as failing where it raises
    (hypothesis's shrinking replays count too)."""
    _CASES[surface] += 1
    _GENERATED[surface] += generated
    try:
        yield
    except BaseException:
        _FAILING_CASES[surface] += 1
        _FAILED_TESTS[surface].add(test)
        raise


@pytest.fixture(scope="module", autouse=True)
def _reliability_summary():
    """After the module: the cases per surface and their failures, into
    $COVMOCKS_RELIABILITY_OUT (when set) under ``test_fuzz``."""
    from tests.reliability_out import merge_summary

    yield
    if not _CASES:
        return
    merge_summary({
        "test": "test_fuzz",
        "kind": "fuzz",
        "nodeid": "tests/test_fuzz.py",
        "cases_per_surface_wanted": CASES_PER_SURFACE,
        "scale": FUZZ_SCALE,
        "derandomized": not FUZZ_RANDOM,
        "surfaces": {name: {"generated_cases": _GENERATED[name], "cases": _CASES[name],
                            "failing_cases": _FAILING_CASES[name],
                            "failed_tests": sorted(_FAILED_TESTS[name])}
                     for name in SURFACES},
        "failures": sum(_FAILING_CASES.values()),
    })  # fmt: skip


def note(text: str) -> None:
    """A hypothesis event (the statistics count them), outside a hypothesis test nothing."""
    if currently_in_test_context():
        hypothesis.event(text)


@contextlib.contextmanager
def workdir():
    """A fresh temporary directory for one case (removed after it)."""
    with tempfile.TemporaryDirectory(prefix="covmocks-fuzz-", ignore_cleanup_errors=True) as d:
        yield Path(d)


def inside(path, root: Path) -> bool:
    """Whether ``path`` (symlinks resolved, where it can be looked up) lies under ``root``."""
    try:
        path = os.path.realpath(path)
    except ValueError:  # a NUL in it
        path = os.path.normpath(path)
    return Path(path).is_relative_to(os.path.realpath(root))


@dataclasses.dataclass
class CliResult:
    status: int | None
    out: str
    err: str
    usage: bool  # argparse refused the command line (or printed help) and exited


def run_cli(argv: list[str]) -> CliResult:
    """``covmocks ARGV`` in this process, its output captured; argparse's exit is caught."""
    out, err = io.StringIO(), io.StringIO()
    usage = False
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main.main(argv)
        except SystemExit as exc:
            status, usage = exc.code, True
    return CliResult(status, out.getvalue(), err.getvalue(), usage)


def check_cli(result: CliResult, ok=(0,)) -> None:
    """Success (``ok`` statuses), argparse's usage error or help, or one clean error line."""
    assert "Traceback" not in result.err + result.out
    if result.usage:
        assert result.status in (0, 2), result
        if result.status == 2:  # usage lines, then "covmocks ...: error: ..."
            last = result.err.rstrip("\n").splitlines()[-1]
            assert last.startswith("covmocks") and ": error: " in last, result.err
        return
    if result.status in ok:
        return
    check_cli_stderr(result.err, result.status)


@pytest.fixture(autouse=True)
def _nothing_was_executed():
    """No test of this module may run a command hidden in a value (a ``touch``)."""
    yield
    assert not executed_commands(), f"a field value ran a command: {executed_commands()}"


# ====================================================================== 1. campaign files


def load_campaign(path: Path, data) -> Campaign | None:
    """``Campaign.load``: a Campaign or a clean ConfigError naming the campaign file (or the
    profile file it names); never another exception."""
    labels = [str(path)]
    ref = profile_ref(data)
    if ref is not None:
        with contextlib.suppress(ValueError):
            labels.append(str(profile_path(ref, path.resolve().parent)))
    try:
        campaign = Campaign.load(path)
    except ConfigError as exc:
        check_config_error(exc, tuple(labels))
        note(f"campaign: ConfigError, {min(len(exc.problems), 3)}+ problems")
        return None
    except CovmocksError as exc:  # not expected from the loader, but clean if it is
        assert not has_line_break(str(exc)) and str(path) in str(exc), str(exc)
        return None
    note("campaign: loaded")
    return campaign


def check_loaded(campaign: Campaign, data: dict) -> None:
    """A loaded campaign says what its file says: names and text are taken as written
    (nothing expanded or run)."""
    section = data["campaign"]
    assert campaign.name == section["name"]
    version = section.get("version", "1")
    assert campaign.version == (version if isinstance(version, str) else str(version))
    assert campaign.description == section.get("description", "")
    assert campaign.tags == tuple(section.get("tags", []))
    if section.get("notify") is not None:
        assert campaign.notify.command == section["notify"]["command"]
    assert campaign.directory.is_absolute()
    assert campaign.seed == section["seed"]


def plan_and_notify(path: Path, campaign: Campaign, root: Path) -> None:
    """A valid campaign whose directory lies under ``root`` and that has few tasks: plan it
    through the command line (a manifest, or a clean error), generate its first box (with
    the stand-in galaxy model: a catalog, or a clean error such as a missing halo file), and
    send its notification (``true`` with the summary: name, description and directory as
    one argument)."""
    tasks = len(campaign.science.realizations) * len(campaign.science.redshifts)
    if not inside(campaign.directory, root) or tasks > 64:
        return
    result = run_cli(["plan", "-q", str(path)])
    check_cli(result)
    note(f"campaign: planned, status {result.status}")
    if result.status == 0:
        assert campaign.layout.manifest.is_file()
        assert len(campaign.layout.manifest.read_text().splitlines()) == tasks
    if tasks:  # (realizations: [] is valid)
        generate_first_box(path, campaign, root)
    notify = Notify(command=[TRUE], failure_fraction=1.0)
    notifier = Notifier(dataclasses.replace(campaign, notify=notify), total=1)
    notifier.settled({"done": 0, "failed": 1})
    notifier.finished({"done": 0, "failed": 1})


def generate_first_box(path: Path, campaign: Campaign, root: Path) -> CliResult:
    """``covmocks generate --campaign PATH --task FIRST``, stand-in model: a catalog or a
    clean error."""
    sci = campaign.science
    output = root / "box" / "mock.hdf5"
    task = task_id(sci.realizations[0], sci.redshifts[0])
    with mock.patch.object(DiffskySFH, "populate", fake_populate):
        result = run_cli(["generate", "--campaign", str(path), "--task", task, "--output",
                          str(output), "-q"])  # fmt: skip
    check_cli(result)
    note(f"campaign: first box, status {result.status}")
    assert output.is_file() == (result.status == 0)
    return result


# Bugs fixed: what used to fail, and what happens now. (sections, what it did)
FIXED_CAMPAIGN_BUG_CASES = {
    "realization 2**32": ({"science": {"realizations": [2**32]}},
                          "generate: OverflowError, uint32 in jax fold_in; now refused"),
    "no realizations": ({"science": {"realizations": []}}, "accepted; now refused"),
    "all realizations excluded": (
        {"science": {"realizations": {"first": 1, "last": 2, "exclude": [1, 2]}}},
        "accepted; now refused"),
    "redshift 1000": ({"science": {"redshifts": [1000.0]}},
                      "generate: ZeroDivisionError, HMF density 0; now refused"),
    "mass cut 1e300": ({"science": {"log10_mhost_min_msun": 1e300}},
                       "generate: ZeroDivisionError, HMF density 0; now refused"),
    "line break": ({"science": {"source": "hdf5", "n_hosts": None,
                                "input": "halos\n{realization}.hdf5"}},
                   "generate: the error named the path on two lines; now escaped"),
    "NUL in directory": ({"outputs": {"directory": "run\x00"}},
                         "plan: ValueError: embedded null byte; now refused"),
    "NUL in description": ({"campaign": {"description": "a\x00b"}},
                           "notify: ValueError from Popen; now refused"),
    "NUL in notify command": ({"campaign": {"notify": {"command": ["true", "a\x00"]}}},
                              "notify: ValueError from Popen; now refused"),
    "model params": ({"science": {"model_params": {"batch_min": "x"}}},
                     "generate: ValueError, int('x') in DiffskySFH; now refused by generate"),
}  # fmt: skip
# Those the loader accepts (the rest it refuses): planned, generated and notified cleanly.
FIXED_CAMPAIGN_BUGS_LOADED = {"line break", "model params"}


def _bug_campaign(tmp_path, sections):
    from tests.conftest import deep_merge

    data = deep_merge({"campaign": {"name": "bug", "seed": 1},
                       "science": {"source": "synthetic", "n_hosts": 10, "realizations": [0],
                                   "redshifts": [0.5]},
                       "outputs": {"base": "out"}}, sections)  # fmt: skip
    data["science"] = {k: v for k, v in data["science"].items() if v is not None}
    path = tmp_path / "bug.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, data


@pytest.mark.parametrize("case", list(FIXED_CAMPAIGN_BUG_CASES))
def test_fixed_campaign_bug(case, tmp_path):
    """Campaigns that once loaded and failed later with a traceback: refused by the loader
    (one problem line naming the file and key), or planned, generated and notified cleanly."""
    sections, _ = FIXED_CAMPAIGN_BUG_CASES[case]
    path, data = _bug_campaign(tmp_path, sections)
    with case_of("campaign files", "test_fixed_campaign_bug", generated=False):
        campaign = load_campaign(path, data)
        if campaign is not None:
            assert case in FIXED_CAMPAIGN_BUGS_LOADED, f"{case}: loaded"
            plan_and_notify(path, campaign, tmp_path)


CAMPAIGN_DATA_CASES = CASES_PER_SURFACE * 7 // 10
CAMPAIGN_TEXT_CASES = CASES_PER_SURFACE - CAMPAIGN_DATA_CASES


@fuzz_settings(CAMPAIGN_DATA_CASES)
@given(data=damaged_campaigns(), name=NAME_TEXT, unicode=st.booleans(), flow=st.booleans())
def test_damaged_campaigns_load_cleanly_and_never_run_their_values(data, name, unicode, flow):
    test = "test_damaged_campaigns_load_cleanly_and_never_run_their_values"
    with case_of("campaign files", test), workdir() as root:
        path = root / f"{name}.yaml"
        path.write_text(dump(data, unicode, flow), encoding="utf-8")
        campaign = load_campaign(path, data)
        if campaign is not None:
            check_loaded(campaign, data)
            plan_and_notify(path, campaign, root)
    assert not executed_commands()


@fuzz_settings(CAMPAIGN_TEXT_CASES)
@given(raw=damaged_text(), name=NAME_TEXT)
def test_damaged_campaign_text_loads_cleanly(raw, name):
    with case_of("campaign files", "test_damaged_campaign_text_loads_cleanly"), workdir() as root:
        path = root / f"{name}.yml"
        path.write_bytes(raw)
        try:
            data = yaml.safe_load(raw)
        except (yaml.YAMLError, ValueError, RecursionError):
            data = None
        campaign = load_campaign(path, data)
        if campaign is not None:
            plan_and_notify(path, campaign, root)
    assert not executed_commands()


def test_sentinel_is_watched():
    """The sentinel works: a shell given one of the hostile values does create the file."""
    import subprocess

    from tests.fuzz_values import SENTINEL, SHELL_TEXT

    subprocess.run(["sh", "-c", f"echo {SHELL_TEXT[0]}"], check=True, capture_output=True)
    assert SENTINEL.exists()
    SENTINEL.unlink()
    assert not list(SENTINEL_DIR.iterdir())


# ====================================================================== 2. halo HDF5 files


def read_halos(case: HaloFile, path: Path, cut: float, redshift, max_hosts: int) -> None:
    """Open ``path`` with HDF5Source and read every block: the halos a correct read gives,
    or a clean InputError naming the file (and the dataset or attribute to blame)."""
    try:
        source = HDF5Source(str(path), cut, redshift)
        blocks = list(source.iter_blocks(max_hosts))
    except CovmocksError as exc:
        check_halo_error(exc, case, path)
        note("halos: error")
        return
    assert case.expect != ERROR, f"read {case.kinds} without an error"
    note("halos: read" + (" (damaged, accepted)" if case.expect == EITHER else ""))
    header = source.header
    box = header.box_size
    for block in blocks:
        k = len(block)
        assert block.ids.dtype == np.uint64 and block.ids.shape == (k,)
        assert block.pos.shape == (k, 3) and block.vel.shape == (k, 3)
        assert block.mass.shape == (k,) and block.radius.shape == (k,)
        assert np.isfinite(block.pos).all() and ((block.pos >= 0) & (block.pos < box)).all()
        assert np.isfinite(block.vel).all()
        assert np.isfinite(block.mass).all() and (block.mass > 0).all()
        assert np.isfinite(block.radius).all() and (block.radius > 0).all()
        assert k <= max_hosts
    if case.expect == OK:
        rows = case.good_rows(cut)
        ids = np.concatenate([b.ids for b in blocks]) if blocks else np.array([], np.uint64)
        expected_ids = np.asarray(case.datasets["id"]).astype(np.uint64)[rows]
        assert np.array_equal(ids, expected_ids)
        for name in ("mass", "radius"):
            got = np.concatenate([getattr(b, name) for b in blocks]) if blocks else []
            want = np.asarray(case.datasets[name], dtype=np.float64)[rows]
            assert np.array_equal(got, want), name
        assert header.box_size == case.attrs["box_size"]
        assert header.redshift == case.attrs["redshift"]


def check_halo_error(exc: CovmocksError, case: HaloFile, path: Path) -> None:
    message = str(exc)
    assert not isinstance(exc, TransientInputError), f"bad content retried: {message}"
    assert case.expect != OK, f"{case.kinds}: a valid file refused: {message}"
    assert not has_line_break(message) and message.strip(), repr(message)
    assert str(path) in message, f"the file is not named: {message}"
    if case.names:
        rest = message.replace(str(path), "")
        assert names_one_of(rest, case.names), (
            f"{case.kinds}: names none of {case.names}: {message}"
        )


# Full boxes through the model (the rest of the surface reads files only): 11 fuzzed, and
# most of the fixed bugs' cases below reach the model. They compile its kernels once (about
# 15 s), then take 0.1-0.5 s each.
GENERATIONS = 11


@fuzz_settings(CASES_PER_SURFACE - GENERATIONS)
@given(
    case=halo_files(),
    name=NAME_TEXT,
    cut=st.sampled_from([-np.inf, 11.0, 12.5, 20.0]),
    ask_redshift=st.booleans(),
    max_hosts=st.sampled_from([1, 3, 16, 1000]),
)
def test_damaged_halo_files_read_cleanly(case, name, cut, ask_redshift, max_hosts):
    with case_of("halo files", "test_damaged_halo_files_read_cleanly"), workdir() as root:
        path = root / f"{name}.hdf5"
        case.write(path)
        redshift = case.attrs.get("redshift") if ask_redshift else None
        if redshift is not None and not isinstance(redshift, float | int):
            redshift = 0.5
        read_halos(case, path, cut, redshift, max_hosts)


# Damage HDF5Source once let through or crashed on (what it did): now a clean error naming
# the attribute or dataset, or (EITHER) halos that are correct.
FIXED_HALO_BUG_CASES = {
    "attr:box_size:text": "ValueError from float('abc') in HDF5Source.__init__",
    "attr:box_size:nan": "accepted: every position wrapped to NaN",
    "attr:Om0:zero": "accepted: Cosmology.fb divided by zero when the box was generated",
    "attr:h:negative": "accepted: log10(h) NaN: the mass cut silently dropped every halo",
    "attr:redshift:one_element": "TypeError from float(array([0.5]))",
    "group:mass": "TypeError: a group sliced as a dataset in HDF5Source._read",
    "group:id": "AttributeError: Group has no shape in HDF5Source.__init__",
    "link:id": "KeyError from h5py for a dangling soft link",
    "shape:radius:short": "IndexError: the mass cut's mask did not fit the shorter radius",
    "shape:pos:column": "accepted: positions of shape (n, 1) reached the model",
    "shape:id:scalar": "IndexError: f['id'].shape[0] of a scalar dataset",
    "shape:mass:wide": "IndexError in halos.cut",
    "dtype:vel:compound": "TypeError: compound dtype cast to float64 in HDF5Source._read",
    "dtype:mass:text": "accepted: text parsed as numbers",
    "dtype:radius:complex": "accepted: the imaginary part dropped (ComplexWarning)",
    "values:mass:nan": "accepted: the halo silently dropped by the mass cut",
    "values:mass:zero": "accepted: log10(0) = -inf passed a cut of -inf, mass 0 reached the model",
    "values:mass:negative": "accepted: the halo silently dropped by the mass cut (log10 NaN)",
    "values:radius:inf": "accepted: an infinite radius reached the model",
    "values:pos:nan": "accepted: NaN positions reached the model",
    "values:vel:inf": "accepted: infinite velocities reached the model",
    "ids:duplicate": "accepted: two hosts got the same random draws",
}


@pytest.mark.parametrize("kind", list(FIXED_HALO_BUG_CASES))
def test_fixed_halo_file_bug(kind, tmp_path):
    """HDF5Source on one damage it once mishandled (FIXED_HALO_BUG_CASES): a clean error
    naming the dataset or attribute, or correct halos."""
    case = single_damage(kind)
    path = tmp_path / "halos.hdf5"
    case.write(path)
    with case_of("halo files", "test_fixed_halo_file_bug", generated=False):
        read_halos(case, path, -np.inf, None, 4)


MODEL_PARAMS = '{"batch_min": 512, "batch_max": 512}'  # one padded shape: two compiles


def generate(case: HaloFile, root: Path, name: str, overwrite: bool = False) -> None:
    """``covmocks generate --source hdf5`` on ``case`` (5 hosts): a catalog that passes
    validation (with the right hosts, for a valid file), or one clean error line naming the
    file; never a partly written output."""
    from covmocks.catalog.validation import check_file

    path = root / f"{name}.hdf5"
    case.write(path)
    out_dir = root / "out" / name
    output, stats = out_dir / "mock.hdf5", out_dir / "stats.hdf5"
    argv = ["generate", "--source", "hdf5", "--input", str(path), "--output", str(output),
            "--statistics", str(stats), "--host-limit", "5", "--model-params",
            MODEL_PARAMS, "-q"] + (["--overwrite"] if overwrite else [])  # fmt: skip
    result = run_cli(argv)
    check_cli(result)
    left = sorted(p.name for p in out_dir.iterdir()) if out_dir.is_dir() else []
    if result.status == 0:
        note("generate: catalog written")
        assert case.expect != ERROR, f"generated from {case.kinds}"
        assert left == ["mock.hdf5", "stats.hdf5"], left
        assert check_file(output) == []
        summary = json.loads(result.out)
        assert summary["output"] == str(output) and summary["n_hosts"] <= 5
        if case.expect == OK:
            assert summary["n_hosts"] == min(5, len(case.good_rows(-np.inf)))
    else:
        note("generate: error")
        assert case.expect != OK, f"{case.kinds}: refused: {result.err}"
        assert str(path) in result.err
        assert left == [], f"left behind after an error: {left}"


@fuzz_settings(GENERATIONS)
@given(case=halo_files(), name=NAME_TEXT, overwrite=st.booleans())
def test_damaged_halo_files_through_generate(case, name, overwrite):
    # the halo file's name (sim_name by default) and text attributes reach the catalog
    with case_of("halo files", "test_damaged_halo_files_through_generate"), workdir() as root:
        generate(case, root, name, overwrite)


@pytest.mark.parametrize("name", ["[run1]", "{x}", "null", '{"a": 1}'])
def test_fixed_generate_bug_json_like(name, tmp_path):
    """A valid halo file named ``[run1].hdf5``: its catalog reads back with the name as it
    is (read_catalog once decoded any text that looked like JSON)."""
    from covmocks.catalog.hdf5 import read_catalog

    case = single_damage("values:pos:zero")  # (a valid file)
    assert case.expect == OK
    with case_of("halo files", "test_fixed_generate_bug_json_like", generated=False):
        generate(case, tmp_path, name)
    catalog = read_catalog(tmp_path / "out" / name / "mock.hdf5")
    assert catalog.attrs["sim_name"] == name
    assert catalog.attrs["input_catalog"] == str(tmp_path / f"{name}.hdf5")


# Damage ``covmocks generate`` once crashed on or made a catalog of that fails validation
# (what it did): now a clean error naming the file, or a catalog that passes.
FIXED_GENERATE_BUG_CASES = {
    "attr:box_size:huge": "OverflowError: float(box_size) ** 3 in SampleCollector (samples.py)",
    "attr:h:huge": "OverflowError: omega_b / h**2 in Cosmology.fb (catalog_attrs)",
    "attr:redshift:negative": "OverflowError: snapshot id -500 in jax fold_in (snapshot_key)",
    "attr:omega_b:zero": "exit 0 with a catalog that fails mstar_below_baryon_budget",
    "values:mass:huge": "exit 0 with a catalog that fails finite_values",
    "dtype:mass:bool": "masses of 1 Msun/h: exit 0 with a catalog that fails finite_values",
    "values:mass:zero": "ValueError from np.repeat (negative satellite count) in the model",
    "values:vel:huge": "exit 0 with a catalog of infinite velocities",
    "values:radius:large": "exit 0 with a catalog that fails satellites_near_host",
    "ids:duplicate": "exit 0 with a catalog that fails one_central_per_host (the two hosts "
    "get the same random draws)",
}


@pytest.mark.parametrize("kind", list(FIXED_GENERATE_BUG_CASES))
def test_fixed_generate_bug(kind, tmp_path):
    """``covmocks generate`` on one damage it once mishandled: a clean error naming the file,
    or a catalog that passes validation."""
    with case_of("halo files", "test_fixed_generate_bug", generated=False):
        generate(single_damage(kind), tmp_path, "halos")


# Valid files (by docs/schema.md) whose catalog once failed validation with exit 0: (host
# mass Msun/h, redshift, radius in R200m, what happened).
VALID_FILE_CASES = {
    "hosts of 1e15 at z=3": (1e15, 3.0, 1.0, "NaN central histories for most random draws "
                             "(ids 3, 7, 8, ... of seed 0): exit 0, catalog fails finite_values"),
    "radius of 10 R200m": (1e13, 0.5, 10.0, "satellites placed inside the input radius: exit 0, "
                           "catalog fails satellites_near_host (<= 3 R200m)"),
}  # fmt: skip


@pytest.mark.parametrize("bug", list(VALID_FILE_CASES))
def test_fixed_generate_bug_valid_file(bug, tmp_path):
    """Five identical hosts of a mass or radius out of the model's range: a clean error
    naming the file (the input refused, or the catalog failing validation, removed), or a
    catalog that passes."""
    mass, redshift, radius, _ = VALID_FILE_CASES[bug]
    n = 5
    masses = np.full(n, mass)
    datasets = {"id": np.arange(n), "pos": np.full((n, 3), 5.0), "vel": np.zeros((n, 3)),
                "mass": masses, "radius": radius * units.r200m_h(masses, 0.3)}  # fmt: skip
    attrs = {"box_size": 100.0, "h": 0.7, "Om0": 0.3, "omega_b": 0.022, "redshift": redshift}
    case = HaloFile(datasets, attrs, {})
    case.damage("values:mass:out_of_range", EITHER, "mass", "radius")
    with case_of("halo files", "test_fixed_generate_bug_valid_file", generated=False):
        generate(case, tmp_path, "halos")


# ====================================================================== 3. command lines


@functools.cache
def cli_template() -> Path:
    """The files command lines name (tests/fuzz_cli.py): written once, copied per case."""
    root = Path(tempfile.mkdtemp(prefix="covmocks-fuzz-cli-"))
    atexit.register(shutil.rmtree, root, True)
    make_template(root)
    with mock.patch.object(DiffskySFH, "populate", fake_populate), contextlib.chdir(root):
        assert run_cli(["plan", "-q", str(root / "valid.yaml")]).status == 0
        argv = ["generate", "--source", "synthetic", "--n-hosts", "20", "--output",
                str(root / "catalog.hdf5"), "-q"]  # fmt: skip
        assert run_cli(argv).status == 0
    return root


def _watch_once(campaign, every_s, *args, **kwargs):
    """``report --watch`` builds the report once (it would rebuild until the campaign is
    done); what it does with ``every_s`` between builds is
    test_fixed_cli_bug_watch_without_pause's."""
    return REAL_WATCH(campaign, every_s, lambda: True)


REAL_WATCH = page.watch


def run_command_line(argv: list[str], root: Path, watch=_watch_once) -> CliResult:
    """``argv`` (placeholders filled) in a fresh copy of the template under ``root``, with
    the stand-in galaxy model."""
    directory, out = root / "d", root / "o"
    shutil.copytree(cli_template(), directory, symlinks=True)
    out.mkdir()
    argv = [a.replace("@DIR@", str(directory)).replace("@OUT@", str(out)) for a in argv]
    with (
        mock.patch.object(DiffskySFH, "populate", fake_populate),
        mock.patch.object(page, "watch", watch),
        contextlib.chdir(directory),
    ):
        return run_cli(argv)


def check_command_line(argv: list[str]) -> None:
    """Any command line: success (0; 1 where ``validate`` or ``run`` report failures),
    argparse's usage error, or ``covmocks: error: ...`` with status 2; never a traceback,
    never a command run from a value, and a failed ``generate`` leaves no catalog."""
    with workdir() as root:
        result = run_command_line(argv, root)
        verb = argv[0] if argv else None
        check_cli(result, ok=(0, 1) if verb in ("validate", "run", "retry") else (0,))
        note(f"cli: {verb} " + ("usage" if result.usage else f"status {result.status}"))
        out = root / "o"
        temporaries = [p.name for p in out.rglob("*") if ".tmp-" in p.name or ".mpi-" in p.name]
        assert not temporaries, temporaries
        if verb == "generate" and not result.usage:
            output = option(argv, "--output")
            output = Path(output.replace("@OUT@", str(out))) if output else None
            if result.status == 0:
                assert output is not None and output.is_file()
                assert json.loads(result.out)["output"] == str(output)
            elif output is not None:
                with contextlib.suppress(OSError):  # a name too long cannot exist
                    assert not output.exists() or output.is_dir(), f"left {output}"
        hits = [p.name for p in root.rglob("pwned*")]
        assert not hits, f"a value ran a command: {hits}"


@fuzz_settings(CASES_PER_SURFACE)
@given(argv=command_lines())
def test_command_lines_end_cleanly(argv):
    with case_of("command lines", "test_command_lines_end_cleanly"):
        check_command_line(argv)


_GEN = ["generate", "--source", "synthetic", "--n-hosts", "10", "--output", "@OUT@/m.hdf5"]
_RULES = ["--samples", "@OUT@/s.hdf5", "--sample-rules"]
# Command lines that once ended in a traceback (or a corrupt output), with what they did:
# now a clean error, or a correct result.
FIXED_CLI_BUG_CASES = [
    (_GEN + ["--seed", "-1"], "ValueError from numpy SeedSequence (box.halo_seed)"),
    (_GEN + ["--seed", str(2**64)], "OverflowError from jax PRNGKey (model.snapshot_key)"),
    (_GEN + ["--realization", str(2**32)], "OverflowError: uint32 in jax fold_in"),
    (_GEN + ["--snapshot", str(2**31)], "OverflowError: uint32 in jax fold_in"),
    (_GEN + ["--redshift", "nan"], "ValueError: int(round(nan)) in box.snapshot_id"),
    (_GEN + ["--redshift", "inf"], "OverflowError in box.snapshot_id"),
    (_GEN + ["--redshift", "-0.5"], "OverflowError: snapshot -500 in jax fold_in"),
    (_GEN + ["--redshift", "1000"], "ZeroDivisionError: HMF density 0 (SyntheticSource)"),
    (_GEN + ["--log10-mhost-min-msun", "1e300"], "ZeroDivisionError: HMF density 0"),
    (_GEN + ["--log10-mhost-min-msun", "nan"], "accepted: no host passes a NaN cut"),
    (_GEN[:2] + ["hdf5", "--input", "@DIR@/halos.hdf5", "--log10-mhost-min-msun", "1e300",
                 "--output", "@OUT@/m.hdf5"], "(worked: an empty catalog)"),
    (_GEN + ["--statistics", "@OUT@/m.hdf5"],
     "FileNotFoundError in catalog.publish; a corrupt file was left as the catalog"),
    (_GEN[:-1] + ["@OUT@/dir", "--statistics", "@OUT@/dir/s.hdf5", "--overwrite"],
     "IsADirectoryError from os.replace onto the directory (catalog.publish)"),
    (_GEN + _RULES + ['[{"name": "x", "select": "bogus"}]'], "KeyError in samples.py"),
    (_GEN + _RULES + ['[{"name": "m", "select": "mstar"}]'], "TypeError: floor None"),
    (_GEN + _RULES + ['[{"nme": 1}]'], "TypeError: Rule() unexpected keyword (BoxSpec)"),
    (_GEN + _RULES + ["[1]"], "TypeError: Rule(**1) (BoxSpec)"),
    (_GEN + _RULES + ['{"a": 1}'], "TypeError: Rule(**'a') (BoxSpec)"),
    (_GEN + ["--model-params", '{"foo": 1}'], "TypeError: unexpected keyword (get_model)"),
    (_GEN + ["--model-params", "[1]"], "TypeError: ** of a list (get_model)"),
    (_GEN + ["--model-params", '{"batch_min": "x"}'], "ValueError: int('x') in DiffskySFH"),
    (_GEN + ["--model-params", '{"diffstarpop": 5}'], "TypeError in model._override"),
    (["report", "@DIR@/valid.yaml", "--watch", "inf"], "OverflowError: int(inf) report.py"),
    (["report", "@DIR@/valid.yaml", "--watch", "nan"], "ValueError: int(nan) report.py"),
    (["plan", "@DIR@/new\nline.yaml"], "the path printed as it is: on two lines"),
    (_GEN[:2] + ["hdf5", "--input", "x\ry", "--output", "@OUT@/m.hdf5"],
     "the path printed as it is: on two lines"),
    (["plan", "--nope\u2028x", "@DIR@/valid.yaml"], "argparse's error on two lines"),
    (["validate", "a" * 300], "OSError ENAMETOOLONG from Path.is_file (check_file)"),
    (_GEN[:2] + ["hdf5", "--input", "a" * 300, "--output", "@OUT@/m.hdf5"],
     "OSError ENAMETOOLONG from Path.is_file (HDF5Source)"),
    (_GEN[:2] + ["abacus", "--input", "a" * 300, "--output", "@OUT@/m.hdf5"],
     "OSError ENAMETOOLONG in AbacusSource"),
    (_GEN[:-1] + ["@OUT@/" + "a" * 300],
     "OSError ENAMETOOLONG from Path.exists (catalog.check_output_path)"),
    (_GEN + ["--statistics", "@OUT@/" + "a" * 300],
     "OSError ENAMETOOLONG writing the statistics file (generator.write_statistics)"),
    (["plan", "@DIR@/" + "a" * 300 + ".yaml"], "(a clean error)"),
]  # fmt: skip


def _cli_case_id(argv: list[str]) -> str:
    text = " ".join(argv[len(_GEN) :] if argv[: len(_GEN)] == _GEN else argv)
    return text.replace("a" * 300, "a*300")


@pytest.mark.parametrize(
    "argv", [pytest.param(argv, id=_cli_case_id(argv)) for argv, _ in FIXED_CLI_BUG_CASES]
)
def test_fixed_cli_bug(argv):
    """Command lines that once ended in a traceback: now a clean error or a result."""
    with case_of("command lines", "test_fixed_cli_bug", generated=False):
        check_command_line(argv)


@pytest.mark.parametrize("every", ["0", "-1", "-0", "1e-320"])
def test_fixed_cli_bug_watch_without_pause(every, tmp_path):
    """``covmocks report --watch 0`` (or -1): refused (as ``estimate --nodes 0`` is), not a
    report rebuilt as fast as the CPU allows (once accepted: a busy loop; here stopped after
    3 builds)."""
    builds = []
    real_build = page._build

    def build(*args, **kwargs):
        builds.append(1)
        if len(builds) > 3:
            raise KeyboardInterrupt  # report --watch ends quietly on Ctrl-C
        return real_build(*args, **kwargs)

    with mock.patch.object(page, "_build", build):
        result = run_command_line(["report", "@DIR@/valid.yaml", "--watch", every], tmp_path,
                                  watch=REAL_WATCH)  # fmt: skip
    assert result.usage or result.status == 2, f"{len(builds)} builds, status {result.status}"
