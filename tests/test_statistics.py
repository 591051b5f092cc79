"""Per-box statistics: counted right, identical whatever the chunking or the MPI ranks,
complete above the stated limits, compact."""

import os
import sys
import warnings

import numpy as np
import pytest

from covmocks.box import populate
from covmocks.box.spec import BoxSpec
from covmocks.catalog import summary as statistics
from covmocks.catalog.summary import BoxStatistics
from tests.test_mpi import MPIEXEC, mpibox


def _columns(mstar, sfr, mhalo, is_central, host_index, mpeak=None, quenched=None) -> dict:
    mstar, sfr = np.asarray(mstar, "f4"), np.asarray(sfr, "f4")
    n = len(mstar)
    return {
        "log10_mstar_surviving": mstar, "log10_mstar": mstar + np.float32(0.2),
        "log10_sfr": sfr, "log10_ssfr": sfr - mstar,
        "log10_mhalo": np.asarray(mhalo, "f4"),
        "log10_mpeak": np.asarray(mhalo if mpeak is None else mpeak, "f4"),
        "is_central": np.asarray(is_central, bool), "host_index": np.asarray(host_index),
        "is_quenched": np.zeros(n, bool) if quenched is None else np.asarray(quenched, bool),
    }  # fmt: skip


def test_counts_sums_and_occupation_of_a_hand_made_chunk():
    # host 0 (log Mh 12.05) with two satellites, host 3 (log Mh 11.05) alone; rows from 100
    cols = _columns(mstar=[10.55, 9.25, 8.05, 9.55], sfr=[0.5, -0.5, -1.0, 0.0],
                    mhalo=[12.05, 11.05, 10.55, 11.05], is_central=[1, 0, 0, 1],
                    host_index=[100, 100, 100, 103], quenched=[0, 1, 0, 0])  # fmt: skip
    st = BoxStatistics()
    st.add(cols, first_row=100)
    c = st.counts
    assert (st.n_centrals, st.n_satellites) == (2, 2)
    assert c["smf_all"].sum() == 4 and c["smf_satellites"].sum() == 2
    assert c["smf_centrals"][np.searchsorted(statistics.MSTAR_EDGES, 10.55) - 1] == 1
    assert c["smf_quenched"].sum() == 1
    assert c["hosts_mhalo"].sum() == 2
    occupation = c["occupation_mhalo"]  # thresholds 8, 9, 10, 11 x host mass bin
    bin12 = np.searchsorted(statistics.MHALO_EDGES, 12.05) - 1
    bin11 = np.searchsorted(statistics.MHALO_EDGES, 11.05) - 1
    assert list(occupation[:, bin12]) == [3, 2, 1, 0]  # M* > 8, 9, 10, 11 in host 0
    assert list(occupation[:, bin11]) == [1, 1, 0, 0]
    mstar_sum = sum(round(10 ** float(np.float32(m)) / 1e3) for m in (10.55, 9.25, 8.05, 9.55))
    assert st.mstar_sum == mstar_sum
    summary = st.summary(box_size=10.0, h=0.5, log10_mhost_min_msun=11.0,
                         log10_msub_min_msun=10.5, probe_fraction=float("nan"))  # fmt: skip
    assert summary["number_density_h3_mpc3"] == 4 / 1000
    assert summary["mstar_density_msun_mpc3"] == pytest.approx(mstar_sum * 1e3 / 8000)
    # the mass formed (0.2 dex above the surviving mass here) is summed on its own
    formed = cols["log10_mstar"].astype(np.float64)
    assert st.mstar_formed_sum == sum(round(10**m / 1e3) for m in formed)
    assert summary["mstar_formed_density_msun_mpc3"] == pytest.approx(
        st.mstar_formed_sum * 1e3 / 8000
    )


def test_non_finite_galaxies_add_nothing_to_the_sums():
    # a NaN or infinite galaxy fails validation; its statistics must not hold a cast's garbage
    finite = _columns(mstar=[10.0, 9.0], sfr=[0.0, -1.0], mhalo=[12.0, 12.0],
                      is_central=[1, 0], host_index=[0, 0])  # fmt: skip
    bad = _columns(mstar=[10.0, 9.0, np.nan, np.inf], sfr=[0.0, -1.0, np.nan, -np.inf],
                   mhalo=[12.0, 12.0, 12.0, 12.0], is_central=[1, 0, 0, 0],
                   host_index=[0, 0, 0, 0])  # fmt: skip
    a, b = BoxStatistics(), BoxStatistics()
    a.add(finite, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b.add(bad, 0)
    assert (b.mstar_sum, b.sfr_sum) == (a.mstar_sum, a.sfr_sum)
    assert a.mstar_sum == round(1e10 / 1e3) + round(1e9 / 1e3)


def test_merging_parts_equals_counting_the_whole():
    rng = np.random.default_rng(4)
    n = 5000
    is_central = rng.random(n) < 0.4
    is_central[0] = True
    host = np.maximum.accumulate(np.where(is_central, np.arange(n), 0))
    cols = _columns(rng.normal(9.5, 1, n), rng.normal(-0.5, 1, n), rng.normal(11.5, 0.7, n),
                    is_central, host, quenched=rng.random(n) < 0.3)  # fmt: skip
    whole = BoxStatistics()
    whole.add(cols, 0)
    split = np.flatnonzero(is_central)[[10, 900, 1500]]  # chunks start at centrals
    parts = []
    for lo, hi in zip([0, *split], [*split, n], strict=True):
        part = BoxStatistics()
        part.add({k: v[lo:hi] for k, v in cols.items()}, lo)
        parts.append(part)
    merged = BoxStatistics()
    for part in reversed(parts):
        merged.merge(part)
    for key in whole.counts:
        np.testing.assert_array_equal(merged.counts[key], whole.counts[key], err_msg=key)
    assert (merged.mstar_sum, merged.sfr_sum) == (whole.mstar_sum, whole.sfr_sum)


def _probed(probe_mstar: dict) -> BoxStatistics:
    """100 catalog galaxies in each 0.1 dex M* bin 8.0-10.0, and probe galaxies (mid-bin M*:
    count) counted by ``add_probe``."""
    st = BoxStatistics()
    mstar = np.repeat(np.round(np.arange(8.05, 10.0, 0.1), 2), 100)
    n = len(mstar)
    st.add(_columns(mstar, np.zeros(n), np.full(n, 12.0), np.ones(n), np.arange(n)), 0)
    probe = np.repeat(list(probe_mstar), list(probe_mstar.values()))
    st.add_probe({"log10_mstar_surviving": np.asarray(probe, "f4"),
                  "log10_sfr": np.zeros(len(probe), "f4")})  # fmt: skip
    return st


def test_completeness_limit_is_where_halos_below_the_cut_add_less_than_one_percent():
    # probe at fraction 1/2: 100, 20 and 2 galaxies weighted at 8.05, 8.55 and 9.05
    limits = _probed({8.05: 50, 8.55: 10, 9.05: 1}).completeness(probe_fraction=0.5)
    # above 8.5: 22 of 1522 missing (1.4%); above 8.6: 2 of 1402 (0.14%)
    assert limits["log10_mstar_complete"] == pytest.approx(8.6)
    assert limits["log10_mstar_complete_missing"] == pytest.approx(2 / 1402)
    assert limits["log10_mstar_complete_missing_err"] == pytest.approx(1400 * 1 / 0.5 / 1402**2)
    # every SFR is 0 (bin 0.0-0.1), the probe's too: 122 of 2122 missing at every edge
    # below; the limit is the bin's upper edge, where nothing is left
    assert limits["log10_sfr_complete"] == pytest.approx(0.1)
    # a higher bin missing more than 1% (2 of 102 above 9.9) moves the limit above it
    high = _probed({8.05: 50, 9.95: 1}).completeness(probe_fraction=0.5)
    assert high["log10_mstar_complete"] == pytest.approx(10.0)
    # nothing below the cut at all: complete down to the lowest galaxy
    assert _probed({}).completeness(1.0)["log10_mstar_complete"] == pytest.approx(8.0)
    # no probe (no host cut, or a part of a box): no limit
    assert np.isnan(_probed({}).completeness(float("nan"))["log10_mstar_complete"])


def test_probe_subsample_is_a_fraction_of_the_ids_whatever_the_blocks():
    from covmocks.halos.probe import keep_fraction

    ids = np.arange(200_000, dtype=np.uint64) * np.uint64(7919) + np.uint64(2**40)
    kept = keep_fraction(ids, 0.1, salt=5)
    assert abs(kept.mean() - 0.1) < 0.003  # 10% within 4.5 sigma
    np.testing.assert_array_equal(
        np.concatenate([keep_fraction(ids[:777], 0.1, 5), keep_fraction(ids[777:], 0.1, 5)]), kept
    )
    assert (kept != keep_fraction(ids, 0.1, salt=6)).mean() > 0.15  # another salt, another set
    assert keep_fraction(ids, 1.0, 5).all() and not keep_fraction(ids, 0.0, 5).any()


def _synthetic(tmp_path, name, model, chunk_hosts):
    spec = BoxSpec(source="synthetic", n_hosts=1500, redshift=0.5, seed=3, realization=1,
                   chunk_hosts=chunk_hosts, output=tmp_path / f"{name}.hdf5",
                   statistics=tmp_path / f"{name}.stats.hdf5")  # fmt: skip
    source = spec.open_source()
    populate.generate_box(source, model, spec.resolved(source.header))
    return statistics.read(spec.statistics)


def _assert_same_statistics(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        if key != "attrs":
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    skip = {"catalog"}
    assert {k: v for k, v in a["attrs"].items() if k not in skip} == {
        k: v for k, v in b["attrs"].items() if k not in skip
    }


@pytest.mark.slow
def test_statistics_identical_for_any_chunking_and_recorded_in_the_catalog(tmp_path, model):
    import h5py

    one = _synthetic(tmp_path, "one", model, 1500)
    four = _synthetic(tmp_path, "four", model, 400)
    _assert_same_statistics(one, four)
    attrs = one["attrs"]
    assert attrs["n_galaxies"] == one["smf_all"].sum() > 1500 and attrs["seed"] == 3
    assert 6 < attrs["log10_mstar_complete"] < 12
    with h5py.File(tmp_path / "one.hdf5") as f:
        assert f.attrs["log10_mstar_complete"] == attrs["log10_mstar_complete"]
        assert f.attrs["n_galaxies"] == attrs["n_galaxies"]
        total = float(np.sum(10 ** f["log10_mstar_surviving"][...].astype(np.float64)))
        formed = float(np.sum(10 ** f["log10_mstar"][...].astype(np.float64)))
    volume = attrs["volume_mpc3_per_h3"] / attrs["h"] ** 3
    assert attrs["mstar_density_msun_mpc3"] == pytest.approx(total / volume, rel=1e-6)
    assert attrs["mstar_formed_density_msun_mpc3"] == pytest.approx(formed / volume, rel=1e-6)
    assert 0.5 < total / formed < 0.8  # z = 0.5: stellar mass loss of an old population
    assert os.path.getsize(tmp_path / "one.stats.hdf5") < 100_000


@pytest.mark.slow
@pytest.mark.mpi
@pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not found beside python or on PATH")
def test_statistics_identical_on_one_and_two_ranks(tmp_path):
    args = [
        "--source",
        "synthetic",
        "--n-hosts",
        1500,
        "--redshift",
        0.5,
        "--seed",
        3,
        "--chunk-hosts",
        400,
        "--model-params",
        '{"batch_min": 256, "batch_max": 4096}',
    ]
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    stats = {}
    for n in (1, 2):
        out = tmp_path / f"ranks{n}"
        rc, _, err, _ = mpibox(n, [*args, "--output", f"{out}.hdf5",
                                   "--statistics", f"{out}.stats.hdf5"], env)  # fmt: skip
        assert rc == 0, err
        stats[n] = statistics.read(f"{out}.stats.hdf5")
    _assert_same_statistics(stats[1], stats[2])
