"""Ensemble outliers: leave-one-out, number density and stellar mass function, the mass
function compared only where it is complete and counted, never tighter than Poisson."""

from types import SimpleNamespace

import numpy as np

from covmocks.catalog.summary import MSTAR_EDGES
from covmocks.report import outliers

VOLUME = 100.0**3  # (Mpc/h)^3
BINS = len(MSTAR_EDGES) - 1


def _box(i: int, smf_counts: np.ndarray, complete: float = 8.0, z: float = 0.5):
    """A record as ``report.records.BoxRecord`` has it, for the fields the outlier search reads."""
    counts = np.asarray(smf_counts, np.int64)
    return SimpleNamespace(
        task_id=f"r{i:04d}_z{z:.3f}", redshift=z, number_density=counts.sum() / VOLUME,
        smf_all=counts, values={"volume_mpc3_per_h3": VOLUME, "log10_mstar_complete": complete},
    )  # fmt: skip


def _schechter_counts(shift_dex: float = 0.0, total: float = 2e5) -> np.ndarray:
    """Expected counts per 0.1 dex bin of a Schechter-like mass function (knee 10.8)."""
    m = MSTAR_EDGES[:-1] + 0.05 - shift_dex
    shape = 10 ** ((m - 10.8) * -0.3) * np.exp(-(10 ** (m - 10.8)))
    shape[MSTAR_EDGES[:-1] < 7.0] = 0.0
    return total * shape / shape.sum()


def test_the_box_is_left_out_of_its_reference():
    boxes = [_box(i, np.full(BINS, 100 + 3 * (i % 3))) for i in range(5)]
    boxes.append(_box(5, np.full(BINS, 1000)))
    found = {(f.task_id, f.statistic == outliers.NUMBER_DENSITY) for f in outliers.find(boxes)}
    assert ("r0005_z0.500", True) in found  # in its own mean it would lie 2.2 std off
    assert {t for t, _ in found} == {"r0005_z0.500"}
    assert {f.task_id for f in outliers.find(boxes[:4] + boxes[5:])} == {"r0005_z0.500"}
    assert outliers.find(boxes[:3] + boxes[5:]) == []  # 4 boxes: none called


def test_a_shifted_mass_function_is_flagged_though_its_number_density_is_normal():
    rng = np.random.default_rng(3)
    boxes = [_box(i, rng.poisson(_schechter_counts())) for i in range(20)]
    shifted = rng.poisson(_schechter_counts(shift_dex=0.3))
    boxes.append(_box(20, shifted))
    found = outliers.find(boxes)
    assert [f.task_id for f in found] == ["r0020_z0.500"]
    assert found[0].statistic.startswith("SMF log10 M* ") and abs(found[0].sigmas) > 5
    assert abs(boxes[20].number_density / boxes[0].number_density - 1) < 0.01


def test_poisson_boxes_are_not_flagged_and_the_floor_is_poisson():
    rng = np.random.default_rng(4)
    boxes = [_box(i, rng.poisson(_schechter_counts())) for i in range(200)]
    assert outliers.find(boxes) == []
    # five identical boxes and one off by 2 Poisson deviations at 10^9 Msun: the others'
    # spread is zero, the floor sqrt(mean count) keeps it in
    mean = np.rint(_schechter_counts()).astype(np.int64)
    off = mean.copy()
    b = int(np.searchsorted(MSTAR_EDGES, 9.0))
    off[b] += int(2 * np.sqrt(mean[b]))
    same = [_box(i, mean) for i in range(5)]
    assert [f.statistic for f in outliers.find([*same, _box(5, off)])] == [
        outliers.NUMBER_DENSITY  # identical others: any difference in n is infinitely off
    ]
    off[b] = mean[b] + int(8 * np.sqrt(mean[b]))
    smf = [f for f in outliers.find([*same, _box(5, off)]) if f.statistic.startswith("SMF")]
    assert len(smf) == 1 and 7 < smf[0].sigmas < 9


def test_bins_below_completeness_or_with_few_galaxies_are_not_compared():
    rng = np.random.default_rng(5)
    base = [rng.poisson(_schechter_counts()) for _ in range(10)]
    low = base[0].copy()
    i_low = int(np.searchsorted(MSTAR_EDGES, 7.5))  # below the limit of 8.0
    low[i_low] *= 3
    low[i_low + 1] = max(int(low[i_low + 1]) - (int(low[i_low]) - int(base[0][i_low])), 0)
    for limit, flagged in ((8.0, False), (7.0, True)):  # the snapshot's median limit
        boxes = [_box(i, c, complete=limit) for i, c in enumerate([*base[1:], low])]
        assert any(f.statistic.startswith("SMF") for f in outliers.find(boxes)) == flagged
    sparse = [np.zeros(BINS, np.int64) for _ in range(10)]
    for i, c in enumerate(sparse):
        c[50] = 2 + i % 2
    sparse[9][50] = 9  # 7 std off a 2.5 +- 0.5 spread, but a bin of three galaxies
    assert not any(f.statistic.startswith("SMF") for f in outliers.find(
        [_box(i, c, complete=5.0) for i, c in enumerate(sparse)]))  # fmt: skip


def test_leave_one_out_matches_a_direct_computation():
    x = np.random.default_rng(6).normal(size=(7, 4)) * 1e3 + 1e9
    mean, std = outliers.leave_one_out(x)
    for i in range(7):
        others = np.delete(x, i, axis=0)
        np.testing.assert_allclose(mean[i], others.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(std[i], others.std(axis=0, ddof=1), rtol=1e-6)
