"""Shared fixtures: the real AbacusSummit-format test catalog, the model, and
campaign files (``make_campaign``, or ``write_campaign`` / ``campaign_file`` outside fixtures).
"""

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import covmocks  # noqa: F401  (sets the XLA flag before anything imports jax)

pytest_plugins = ["tests.slurm_cluster"]


def pytest_configure(config):
    """``$COVMOCKS_REQUIRE`` names only what ``require_or_skip`` knows (a typo would require
    nothing). One JAX compilation cache for the whole test run, shared by every test
    campaign's workers and ranks through ``$JAX_COMPILATION_CACHE_DIR``
    (``covmocks.galaxies.jaxenv.cache_dir``): the kernels compile once per run, not once per
    campaign (minutes of CI). A cache the user already set is kept."""
    unknown = required() - set(REQUIRABLE)
    if unknown:
        raise pytest.UsageError(
            f"COVMOCKS_REQUIRE: unknown {', '.join(sorted(unknown))} "
            f"(known: {', '.join(REQUIRABLE)})"
        )
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        path = tempfile.mkdtemp(prefix="covmocks-tests-jax-cache-")
        os.environ["JAX_COMPILATION_CACHE_DIR"] = config._covmocks_jax_cache = path


def pytest_terminal_summary(terminalreporter, config):
    """What the run's compilation cache holds at the end (issue 25 asks for its size)."""
    path = getattr(config, "_covmocks_jax_cache", None)
    if path:
        from covmocks.galaxies import jaxenv

        terminalreporter.write_line(f"compilation cache {jaxenv.describe(path)}")


def pytest_unconfigure(config):
    path = getattr(config, "_covmocks_jax_cache", None)
    if path:
        shutil.rmtree(path, ignore_errors=True)
        os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)


REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("COVMOCKS_TEST_DATA", REPO.parent / "shared" / "data" / "Mini_N64_L32"))
MINI_Z0 = DATA / "halos" / "z0.000"

# What a test may skip for lack of, named by the words of $COVMOCKS_REQUIRE: the AbacusSummit
# test catalog, the local Slurm cluster, the parallel-HDF5 venv (.venv-mpio).
REQUIRABLE = ("data", "slurm", "mpio")


def required() -> set[str]:
    """The words of ``$COVMOCKS_REQUIRE`` (comma-separated), read at each call."""
    return {w.strip() for w in os.environ.get("COVMOCKS_REQUIRE", "").split(",") if w.strip()}


def require_or_skip(what: str, reason: str):
    """Skip the calling test with ``reason``, or fail it with the same reason where
    ``$COVMOCKS_REQUIRE`` names ``what`` (CI sets it: a CI machine without the stack fails)."""
    assert what in REQUIRABLE, what
    if what in required():
        pytest.fail(f"{reason} [COVMOCKS_REQUIRE has {what!r}]", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def mini_catalog_dir():
    """The Mini_N64_L32 z=0 CompaSO directory, or ``require_or_skip("data", why)``."""
    if not (MINI_Z0 / "halo_info").is_dir():
        require_or_skip(
            "data",
            f"AbacusSummit test catalog not found at {MINI_Z0} (set COVMOCKS_TEST_DATA to the "
            "Mini_N64_L32 directory)",
        )
    return MINI_Z0


@dataclass(frozen=True)
class Demo:
    """The demo campaign run to the end: ``root`` holds ``campaigns/`` and ``campaign-runs/``;
    ``run`` is the finished command."""

    root: Path
    run: subprocess.CompletedProcess

    @property
    def campaign(self):
        from covmocks.campaign import Campaign

        return Campaign.load(self.root / "campaigns" / "demo.yaml")


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> Demo:
    """``campaigns/demo.yaml`` run once per test session by the quickstart's set-up command
    (``tests/test_quickstart.py``, which checks the result against docs/quickstart.md), in a
    copy of ``campaigns/`` with this venv linked as ``.venv``. Tests read it; a test that runs
    the driver on it again must leave it as it found it (the quickstart's checks follow)."""
    from tests.test_quickstart import QUICKSTART, code_blocks, run_bash, setup_command

    venv = Path(sys.prefix)
    if not (venv / "bin" / "python").exists() or sys.prefix == sys.base_prefix:
        pytest.skip("the quickstart runs with the tests' virtual environment; none is active")
    root = tmp_path_factory.mktemp("quickstart") / "repo"
    shutil.copytree(REPO / "campaigns", root / "campaigns")
    (root / ".venv").symlink_to(venv)
    (code,) = [
        code for marker, _, code in code_blocks(QUICKSTART.read_text()) if marker == "set-up"
    ]
    return Demo(root, run_bash(setup_command(code), root))


@pytest.fixture(scope="session")
def model():
    from covmocks.galaxies.registry import get_model

    return get_model("diffsky_sfh", {"batch_min": 256, "batch_max": 4096})


@pytest.fixture
def halo_file_without_box_size(tmp_path):
    """A generic HDF5 halo file whose header lacks ``box_size``."""
    import h5py
    import numpy as np

    path = tmp_path / "no_box.hdf5"
    with h5py.File(path, "w") as f:
        for name in ("id", "mass", "radius"):
            f[name] = np.ones(3)
        f["pos"] = f["vel"] = np.ones((3, 3))
        f.attrs.update(h=0.7, Om0=0.3, omega_b=0.022, redshift=0.0)
    return path


# --- campaign files ---------------------------------------------------------------------

# The smallest valid campaign: synthetic halos, 2 boxes, the local profile's defaults.
DEFAULT_CAMPAIGN = {
    "campaign": {"name": "test", "seed": 1},
    "science": {"source": "synthetic", "n_hosts": 100, "realizations": [0, 1], "redshifts": [0.0]},
}

# A campaign that runs quickly through real Parsl workers on this machine: one worker (one MPI
# task at a time), small model batches, short backoffs. A layer: ``make_campaign(LOCAL_RUN, ...)``.
LOCAL_RUN = {
    "campaign": {"seed": 5},
    "science": {
        "n_hosts": 200,
        "log10_mhost_min_msun": 11.0,
        "model_params": {"batch_min": 256, "batch_max": 1024},
    },
    "execution": {
        "profile": "local",
        "max_in_flight": 2,
        "retries": 2,
        "backoff_base_s": 1,
        "backoff_cap_s": 4,
        "task_walltime_s": 600,
        "executor": {"workers_per_node": 1, "mpi_tasks_per_block": 1},
    },
}


def deep_merge(base: dict, override: dict) -> dict:
    """``override`` over ``base``, recursively where both hold a mapping; any other value
    (a list, a scalar, None written as YAML null) replaces. Neither argument is changed."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _plain(value):
    """Paths -> text, recursively, for yaml.safe_dump."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, Path) else value


def campaign_file(directory: Path, *layers: dict, file: str | None = None, **sections) -> Path:
    """Write a campaign file into ``directory`` and return its path (not loaded: it may be
    invalid on purpose).

    The file is ``DEFAULT_CAMPAIGN`` with each of ``layers`` (mappings of sections, e.g.
    ``LOCAL_RUN``), then ``sections`` (``science={...}``, ``execution={...}``, ...)
    deep-merged over it in turn (``deep_merge``), written with ``yaml.safe_dump`` in key
    order. Its name is ``file``, by default ``<campaign.name>.yaml``: campaigns of different
    names never share a file, nor (with the default ``outputs``) a campaign directory, which
    is ``<directory>/campaign-runs/<name>_<version>``.
    """
    data = functools.reduce(deep_merge, [*layers, sections], DEFAULT_CAMPAIGN)
    path = Path(directory) / (file or f"{data['campaign']['name']}.yaml")
    path.write_text(yaml.safe_dump(_plain(data), sort_keys=False))
    return path


def write_campaign(directory: Path, *layers: dict, file: str | None = None, **sections):
    """``campaign_file``, loaded: the ``covmocks.campaign.Campaign``."""
    from covmocks.campaign import Campaign

    return Campaign.load(campaign_file(directory, *layers, file=file, **sections))


@pytest.fixture
def make_campaign(tmp_path):
    """``make_campaign(*layers, file=None, **sections) -> Campaign``: ``write_campaign`` into
    the test's ``tmp_path``, e.g. ``make_campaign(science={"redshifts": [0.0, 1.0]})``."""
    return functools.partial(write_campaign, tmp_path)
