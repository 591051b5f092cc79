"""Completeness limits that promise something: a box's in-box probe of the halos below its
host cut agrees with the direct measurement (the same halos populated with the cut 0.5 dex
lower), and leaves the catalog's galaxies as they are."""

import h5py
import numpy as np
import pytest

from covmocks.box import populate, probe
from covmocks.box.spec import BoxSpec
from covmocks.catalog import completeness
from covmocks.catalog import summary as statistics
from covmocks.core.limits import PROBE_DEX
from covmocks.core.units import log_mass_h_to_msun
from covmocks.halos.blocks import write_hdf5_halos
from covmocks.halos.synthetic import SyntheticSource

CUT = 11.0


def _box(tmp_path, model, hosts, cut: float, name: str) -> tuple[dict, dict]:
    spec = BoxSpec(source="hdf5", input=str(hosts), log10_mhost_min_msun=cut, seed=5,
                   redshift=0.5, chunk_hosts=700, output=tmp_path / f"{name}.hdf5",
                   statistics=tmp_path / f"{name}.stats.hdf5")  # fmt: skip
    source = spec.open_source()
    result = populate.generate_box(source, model, spec.resolved(source.header))
    return result, statistics.read(spec.statistics)


@pytest.mark.slow
def test_probe_agrees_with_the_box_populated_0p5_dex_lower(tmp_path, model, monkeypatch):
    # synthetic hosts down to 10^10.5 Msun in one file: both boxes hold the same halos
    halos = SyntheticSource(None, CUT - PROBE_DEX, 0.5, seed=11, box_size=20.0)  # 1221 hosts
    block = next(halos.read_blocks(halos.n_hosts))
    hosts = tmp_path / "hosts.hdf5"
    write_hdf5_halos(hosts, block, halos.header)
    n_above = int((log_mass_h_to_msun(np.log10(block.mass), halos.header.cosmology.h)
                   >= CUT).sum())  # fmt: skip
    low_result, low = _box(tmp_path, model, hosts, CUT - PROBE_DEX, "low")
    monkeypatch.setattr(probe, "PROBE_HOSTS", n_above // 2)  # sample half the window
    result, box = _box(tmp_path, model, hosts, CUT, "box")
    f = box["attrs"]["completeness_probe_fraction"]
    assert f == pytest.approx(0.5, rel=0.01) and result["n_hosts"] == n_above
    window = low_result["n_hosts"] - n_above
    assert abs(result["probe"]["n_hosts"] - f * window) < 4 * np.sqrt(window * f * (1 - f))
    # the catalog's galaxies are those of the same hosts in the lower-cut box, bit for bit
    with h5py.File(tmp_path / "box.hdf5") as a, h5py.File(tmp_path / "low.hdf5") as b:
        kept = np.isin(b["halo_id"][...], a["halo_id"][...])
        for name in set(a) - {"host_index"}:  # rows differ: the lower box has more
            np.testing.assert_array_equal(a[name][...], b[name][...][kept], err_msg=name)
    # the galaxies the cut misses: estimated (P / f) against counted (lower box - box)
    for select, (main_key, probe_key) in completeness.HISTOGRAM_OF.items():
        main, added, sampled = box[main_key], low[main_key] - box[main_key], box[probe_key]
        cum = [np.cumsum(x[::-1])[::-1] for x in (added, sampled)]
        sigma = np.sqrt(cum[1] / f**2 + cum[0])  # independent draws of the same halos
        assert (np.abs(cum[1] / f - cum[0]) <= 4 * sigma + 2).all(), select
        edges = statistics.EDGES[select]
        direct = completeness.limit(main, added, 1.0, edges)["value"]
        assert abs(box["attrs"][completeness.limit_name(select)] - direct) <= 0.2 + 1e-9
        assert added.sum() > 0.05 * main.sum()  # the cut misses many faint galaxies
