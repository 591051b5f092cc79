"""Shared fixtures: the real AbacusSummit-format test catalog and a generated mini catalog."""

import os
from pathlib import Path

import pytest

import covmocks  # noqa: F401  (sets the XLA flag before anything imports jax)

pytest_plugins = ["tests.slurm_cluster"]

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("COVMOCKS_TEST_DATA", REPO.parent / "shared" / "data" / "Mini_N64_L32"))
MINI_Z0 = DATA / "halos" / "z0.000"


@pytest.fixture(scope="session")
def mini_catalog_dir():
    """The Mini_N64_L32 z=0 CompaSO directory, or skip with the reason."""
    if not (MINI_Z0 / "halo_info").is_dir():
        pytest.skip(
            f"AbacusSummit test catalog not found at {MINI_Z0} (set COVMOCKS_TEST_DATA to the "
            "Mini_N64_L32 directory)"
        )
    return MINI_Z0


@pytest.fixture(scope="session")
def model():
    from covmocks.model import get_model

    return get_model("diffsky_sfh", {"batch_min": 256, "batch_max": 4096})


@pytest.fixture(scope="session")
def mini_mock(tmp_path_factory, mini_catalog_dir, model):
    """A catalog generated from the mini Abacus box (seed 7, realization 0, snapshot 0)."""
    from covmocks import catalog, generator, halos

    out = tmp_path_factory.mktemp("mini") / "mock.hdf5"
    source = halos.open_source("abacus", mini_catalog_dir, redshift=0.0)
    req = generator.BoxRequest(output=out, seed=7, realization=0, snapshot=0, max_hosts=1000)
    generator.generate_box(source, model, req)
    return catalog.read_catalog(out)


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
