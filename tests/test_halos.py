"""Halo sources: the real CompaSO catalog, the generic HDF5 schema, synthetic hosts."""

import numpy as np
import pytest

from covmocks import halos, units
from covmocks.errors import InputError

PARTICLE_MASS_H = 10882397390.0  # Msun/h, from the Mini_N64_L32 header


def _all(source, max_hosts=10**6):
    blocks = list(source.iter_blocks(max_hosts))
    return halos.HaloBlock(
        *(
            np.concatenate([getattr(b, f) for b in blocks])
            for f in ("ids", "pos", "vel", "mass", "radius")
        )
    )


def test_abacus_header_units_and_counts(mini_catalog_dir):
    src = halos.open_source("abacus", mini_catalog_dir, redshift=0.0)
    hdr = src.header
    assert hdr.box_size == 32.0 and hdr.redshift == 0.0
    assert hdr.cosmology.h == pytest.approx(0.6736)
    assert hdr.cosmology.Om0 == pytest.approx(0.315192)
    assert hdr.cosmology.fb == pytest.approx(0.02237 / 0.6736**2 / 0.315192)
    block = _all(src)
    assert len(block) == 381
    assert block.ids.dtype == np.uint64 and len(np.unique(block.ids)) == 381
    # positions shifted from [-L/2, L/2) to [0, L)
    assert block.pos.min() >= 0.0 and block.pos.max() < 32.0
    # mass = N x particle mass (Msun/h): 35 to 10,418 particles
    n_particles = block.mass / PARTICLE_MASS_H
    np.testing.assert_allclose(n_particles, np.round(n_particles), rtol=1e-12)
    assert round(n_particles.min()) == 35 and round(n_particles.max()) == 10418
    assert np.all(block.radius > 0) and np.all(block.radius < 3.0)  # comoving Mpc/h


def test_abacus_mass_cut_is_in_msun_without_h(mini_catalog_dir):
    cut = 12.5  # log10 Msun
    src = halos.open_source("abacus", mini_catalog_dir, log10_mmin_msun=cut)
    block = _all(src)
    full = _all(halos.open_source("abacus", mini_catalog_dir))
    expected = np.sum(np.log10(full.mass / 0.6736) >= cut)
    assert 0 < len(block) == expected < 381


def test_abacus_missing_and_wrong_redshift(tmp_path, mini_catalog_dir):
    with pytest.raises(InputError, match=str(tmp_path / "nowhere")):
        halos.open_source("abacus", tmp_path / "nowhere")
    with pytest.raises(InputError, match="redshift"):
        halos.open_source("abacus", mini_catalog_dir, redshift=1.0)


def test_hdf5_source_round_trip(tmp_path, mini_catalog_dir):
    src = halos.open_source("abacus", mini_catalog_dir)
    block = _all(src)
    path = tmp_path / "halos.hdf5"
    halos.write_hdf5_halos(path, block, src.header)
    back = halos.open_source("hdf5", path, redshift=0.0)
    assert back.header.box_size == 32.0
    assert back.header.cosmology == src.header.cosmology
    chunks = list(back.iter_blocks(100))
    assert [len(c) for c in chunks] == [100, 100, 100, 81]
    np.testing.assert_array_equal(_all(back).ids, block.ids)
    np.testing.assert_array_equal(_all(back).pos, block.pos)


def test_hdf5_source_without_box_size(halo_file_without_box_size):
    with pytest.raises(InputError, match="box_size"):
        halos.open_source("hdf5", halo_file_without_box_size)


def test_synthetic_is_reproducible_and_chunk_independent():
    a = halos.open_source("synthetic", n_hosts=70000, seed=5, log10_mmin_msun=11.0)
    b = halos.open_source("synthetic", n_hosts=70000, seed=5, log10_mmin_msun=11.0)
    whole, chunked = _all(a), _all(b, max_hosts=999)
    assert len(whole) == 70000
    for f in ("ids", "pos", "vel", "mass", "radius"):
        np.testing.assert_array_equal(getattr(whole, f), getattr(chunked, f))
    lgm = units.log_mass_h_to_msun(np.log10(whole.mass), a.header.cosmology.h)
    assert lgm.min() >= 11.0 - 1e-9
    assert whole.pos.min() >= 0 and whole.pos.max() < a.header.box_size
    other = _all(halos.open_source("synthetic", n_hosts=70000, seed=6, log10_mmin_msun=11.0))
    assert not np.array_equal(other.mass, whole.mass)


def test_synthetic_box_matches_mass_function_density():
    src = halos.open_source("synthetic", n_hosts=1000, log10_mmin_msun=11.0)
    _, _, density = halos._hmf_tables(11.0, 0.0)  # per Mpc^3
    volume_mpc3 = (src.header.box_size / src.header.cosmology.h) ** 3
    assert density * volume_mpc3 == pytest.approx(1000, rel=1e-6)


def test_unknown_source_kind():
    with pytest.raises(InputError, match="unknown halo source"):
        halos.open_source("gadget", "x")
