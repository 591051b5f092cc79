"""Halo sources: the real CompaSO catalog, the generic HDF5 schema, synthetic hosts; reading
only some work units; transient versus deterministic read errors."""

import errno

import numpy as np
import pytest

from covmocks.core import units
from covmocks.core.errors import InputError, TransientInputError
from covmocks.halos import abacus, sources, synthetic
from covmocks.halos import blocks as halos
from tests.fuzz_halos import valid_halo_file

FIELDS = ("ids", "pos", "vel", "mass", "radius")

PARTICLE_MASS_H = 10882397390.0  # Msun/h, from the Mini_N64_L32 header


def _all(source, max_hosts=10**6):
    blocks = list(source.iter_blocks(max_hosts))
    return _join(blocks)


def _join(blocks):
    return halos.HaloBlock(*(np.concatenate([getattr(b, f) for b in blocks]) for f in FIELDS))


def test_abacus_header_units_and_counts(mini_catalog_dir):
    src = sources.open_source("abacus", mini_catalog_dir, redshift=0.0)
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
    src = sources.open_source("abacus", mini_catalog_dir, log10_mhost_min_msun=cut)
    block = _all(src)
    full = _all(sources.open_source("abacus", mini_catalog_dir))
    expected = np.sum(np.log10(full.mass / 0.6736) >= cut)
    assert 0 < len(block) == expected < 381


def test_abacus_missing_and_wrong_redshift(tmp_path, mini_catalog_dir):
    with pytest.raises(InputError, match=str(tmp_path / "nowhere")):
        sources.open_source("abacus", tmp_path / "nowhere")
    with pytest.raises(InputError, match="redshift"):
        sources.open_source("abacus", mini_catalog_dir, redshift=1.0)


def test_hdf5_source_round_trip(tmp_path, mini_catalog_dir):
    src = sources.open_source("abacus", mini_catalog_dir)
    block = _all(src)
    path = tmp_path / "halos.hdf5"
    halos.write_hdf5_halos(path, block, src.header)
    back = sources.open_source("hdf5", path, redshift=0.0)
    assert back.header.box_size == 32.0
    assert back.header.cosmology == src.header.cosmology
    chunks = list(back.iter_blocks(100))
    assert [len(c) for c in chunks] == [100, 100, 100, 81]
    np.testing.assert_array_equal(_all(back).ids, block.ids)
    np.testing.assert_array_equal(_all(back).pos, block.pos)


def test_hdf5_source_without_box_size(halo_file_without_box_size):
    with pytest.raises(InputError, match="box_size"):
        sources.open_source("hdf5", halo_file_without_box_size)


def test_synthetic_is_reproducible_and_chunk_independent():
    a = sources.open_source("synthetic", n_hosts=70000, seed=5, log10_mhost_min_msun=11.0)
    b = sources.open_source("synthetic", n_hosts=70000, seed=5, log10_mhost_min_msun=11.0)
    whole, chunked = _all(a), _all(b, max_hosts=999)
    assert len(whole) == 70000
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(whole, f), getattr(chunked, f))
    lgm = units.log_mass_h_to_msun(np.log10(whole.mass), a.header.cosmology.h)
    assert lgm.min() >= 11.0 - 1e-9
    assert whole.pos.min() >= 0 and whole.pos.max() < a.header.box_size
    other = _all(sources.open_source("synthetic", n_hosts=70000, seed=6, log10_mhost_min_msun=11.0))
    assert not np.array_equal(other.mass, whole.mass)


def test_synthetic_box_matches_mass_function_density():
    src = sources.open_source("synthetic", n_hosts=1000, log10_mhost_min_msun=11.0)
    _, _, density = synthetic._hmf_tables(11.0, 0.0)  # per Mpc^3
    volume_mpc3 = (src.header.box_size / src.header.cosmology.h) ** 3
    assert density * volume_mpc3 == pytest.approx(1000, rel=1e-6)


def test_unknown_source_kind():
    with pytest.raises(InputError, match="unknown halo source"):
        sources.open_source("gadget", "x")


def test_synthetic_needs_a_finite_mass_cut():
    """The synthetic default cut is the box spec's (limits.SYNTHETIC_MHOST_MIN), not the
    source's."""
    with pytest.raises(InputError, match="finite host mass cut"):
        sources.open_source("synthetic", n_hosts=10)


def _counting(monkeypatch, cls, name):
    """Wrap ``cls.name`` to record its positional arguments, call by call."""
    calls = []
    real = getattr(cls, name)

    def wrapper(self, *args):
        calls.append(args)
        return real(self, *args)

    monkeypatch.setattr(cls, name, wrapper)
    return calls


@pytest.mark.parametrize("max_hosts", [999, 65536, 70000])
def test_synthetic_block_range_draws_only_overlapping_blocks(monkeypatch, max_hosts):
    """Blocks [first, last) of a 3-BLOCK box (140,000 hosts) are exactly that slice of the
    full stream, drawn from only the random-number BLOCKs they overlap."""
    src = sources.open_source("synthetic", n_hosts=140000, seed=5, log10_mhost_min_msun=11.0)
    whole = _all(src)
    drawn = _counting(monkeypatch, synthetic.SyntheticSource, "_block")
    n_units = src.n_units(max_hosts)
    assert n_units == -(-140000 // max_hosts)
    block = src.BLOCK
    for first, last in [(0, 1), (1, 2), (n_units // 2, n_units), (n_units - 1, n_units),
                        (0, n_units), (2, 2)]:  # fmt: skip
        drawn.clear()
        units_read = list(src.read_units(max_hosts, first, last))
        assert [len(u) for u in units_read] == [1] * (last - first)
        start, stop = first * max_hosts, min(last * max_hosts, 140000)
        assert [len(u[0]) for u in units_read] == [
            min(max_hosts, 140000 - r) for r in range(start, stop, max_hosts)
        ]
        if last == first:
            assert drawn == []
            continue
        got = _join([u[0] for u in units_read])
        for f in FIELDS:
            np.testing.assert_array_equal(getattr(got, f), getattr(whole, f)[start:stop], f)
        assert [b for (b,) in drawn] == list(range(start // block, -(-stop // block)))


def test_hdf5_block_range_reads_only_its_rows(tmp_path, monkeypatch):
    """Blocks [first, last) of an HDF5 catalog read only their rows, and match the stream
    (each block cut by mass, possibly to nothing)."""
    synthetic = sources.open_source("synthetic", n_hosts=1000, seed=3, log10_mhost_min_msun=11.0)
    path = tmp_path / "halos.hdf5"
    halos.write_hdf5_halos(path, _all(synthetic), synthetic.header)
    src = sources.open_source("hdf5", path, log10_mhost_min_msun=11.5)
    stream = list(src.iter_blocks(150))
    assert len(stream) == src.n_units(150) == 7
    reads = _counting(monkeypatch, halos.HDF5Source, "_read")
    got = list(src.read_units(150, 2, 5))
    assert [(start, stop) for _, start, stop in reads] == [(300, 450), (450, 600), (600, 750)]
    for (block,), want in zip(got, stream[2:5], strict=True):
        np.testing.assert_array_equal(block.ids, want.ids)
        np.testing.assert_array_equal(block.pos, want.pos)
    assert src.unit_name(3) == "host block 3"


def test_abacus_units_are_slabs_read_alone(mini_catalog_dir, monkeypatch):
    src = sources.open_source("abacus", mini_catalog_dir)
    whole = _all(src)
    assert src.n_units(1000) == 3 and src.unit_name(1) == "halo_info_001.asdf"
    reads = _counting(monkeypatch, abacus.AbacusSource, "read_slab")
    (blocks,) = list(src.read_units(50, 1, 2))
    assert [slab.name for (slab,) in reads] == ["halo_info_001.asdf"]
    assert all(len(b) <= 50 for b in blocks)
    first_slab = len(_join(next(src.read_units(10**6, 0, 1))))
    np.testing.assert_array_equal(
        _join(blocks).ids, whole.ids[first_slab : first_slab + sum(len(b) for b in blocks)]
    )


def _eio(*args, **kwargs):
    raise OSError(errno.EIO, "Input/output error")


def test_hdf5_read_errors_transient_or_not(tmp_path, monkeypatch):
    """EIO while reading blocks, or opening the file: TransientInputError (retried);
    a missing or corrupt file: InputError (fails at once)."""
    import h5py

    synthetic = sources.open_source("synthetic", n_hosts=300, seed=3, log10_mhost_min_msun=11.0)
    path = tmp_path / "halos.hdf5"
    halos.write_hdf5_halos(path, _all(synthetic), synthetic.header)
    src = sources.open_source("hdf5", path)
    with monkeypatch.context() as m:
        m.setattr(h5py.Dataset, "__getitem__", _eio)
        with pytest.raises(TransientInputError, match="halos.hdf5: Input/output error"):
            list(src.iter_blocks(100))
    with monkeypatch.context() as m:
        m.setattr(h5py, "File", _eio)
        with pytest.raises(TransientInputError):
            sources.open_source("hdf5", path)
        with pytest.raises(TransientInputError):
            list(src.read_blocks(100, 1, 2))
    with pytest.raises(InputError) as missing:
        sources.open_source("hdf5", tmp_path / "nowhere.hdf5")
    assert not isinstance(missing.value, TransientInputError)
    path.unlink()
    with pytest.raises(InputError) as gone:
        list(src.iter_blocks(100))  # deleted after opening: ENOENT, not transient
    assert not isinstance(gone.value, TransientInputError)
    corrupt = tmp_path / "corrupt.hdf5"
    corrupt.write_bytes(b"\x89HDF this is not a catalog")
    with pytest.raises(InputError) as bad:
        sources.open_source("hdf5", corrupt)
    assert not isinstance(bad.value, TransientInputError)


def test_abacus_read_errors_transient_or_not(mini_catalog_dir, monkeypatch):
    from abacusnbody.data import compaso_halo_catalog

    src = sources.open_source("abacus", mini_catalog_dir)
    monkeypatch.setattr(compaso_halo_catalog, "CompaSOHaloCatalog", _eio)
    with pytest.raises(TransientInputError, match="halo_info_000.asdf"):
        list(src.iter_blocks(1000))

    def missing(*args, **kwargs):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory")

    monkeypatch.setattr(compaso_halo_catalog, "CompaSOHaloCatalog", missing)
    with pytest.raises(InputError) as exc:
        list(src.iter_blocks(1000))
    assert not isinstance(exc.value, TransientInputError)


# -- the generic HDF5 file's checks (covmocks.halos.checks) ---------------------------------


@pytest.mark.parametrize(
    "changes, named",
    [
        ({"box_size": np.nan}, "box_size"),
        ({"box_size": "50"}, "box_size"),
        ({"h": -0.7}, "h"),
        ({"Om0": 0.0}, "Om0"),
        ({"omega_b": 0.0}, "omega_b"),
        ({"omega_b": 0.5}, "omega_b"),  # Omega_b > Om0
        ({"redshift": -0.5}, "redshift"),
        ({"redshift": np.array([0.5, 0.6])}, "redshift"),
        ({"mass": "group"}, "'mass' is a group"),
        ({"id": np.arange(6.0)}, "'id' must hold integers"),
        ({"pos": np.ones((6, 2))}, "'pos' has shape"),
        ({"radius": np.ones(5)}, "differ in length"),
        ({"vel": np.ones((6, 3), complex)}, "'vel' must hold numbers"),
        ({"id": np.array([0, 1, 2, 3, 4, 4])}, "'id' repeats 1 ids"),
        ({"id": np.array([0, 1, 2, 3, 4, -5])}, "'id' has negative ids"),
        ({"mass": np.array([1e12, np.nan, 1e12, 1e12, 1e12, 1e12])}, "'mass': 1 rows"),
        ({"mass": np.full(6, 1e300)}, "'mass': 4 rows are outside"),
        ({"mass": np.full(6, 1e12), "radius": np.full(6, 100.0)}, "R200m"),
        ({"radius": np.zeros(6)}, "'radius'"),
        ({"pos": np.full((6, 3), np.inf)}, "'pos'"),
        ({"vel": np.full((6, 3), 1e6)}, "faster than light"),
    ],
)
def test_hdf5_source_refuses_bad_input_in_one_line(tmp_path, changes, named):
    path = valid_halo_file(tmp_path / "halos.hdf5", **changes)
    with pytest.raises(InputError) as err:
        list(sources.open_source("hdf5", path).iter_blocks(4))
    message = str(err.value)
    assert named in message and str(path) in message and "\n" not in message


def test_hdf5_source_accepts_what_the_schema_allows(tmp_path):
    """Attributes of one element, integer masses, float32 positions, ids in any order,
    optional text of any kind: read as they are."""
    path = valid_halo_file(tmp_path / "halos.hdf5", redshift=np.array([0.5]),
                      id=np.array([9, 3, 7, 1, 2**40, 5]), mass=np.full(6, 10**12, np.int64),
                      pos=np.full((6, 3), 60.0, np.float32))  # fmt: skip
    src = sources.open_source("hdf5", path, redshift=0.5)
    block = _all(src)
    assert src.header.redshift == 0.5 and len(block) == 6
    np.testing.assert_array_equal(block.pos, 10.0)  # wrapped into the 50 Mpc/h box


def test_synthetic_mass_cut_outside_the_mass_function_is_refused():
    for cut in (1e300, 20.0, 5.0):
        with pytest.raises(InputError, match="mass"):
            sources.open_source("synthetic", n_hosts=10, log10_mhost_min_msun=cut)
