"""A campaign's k bins checked against the box of every snapshot, when it is planned.

The bins lie on the box's lattice (``covmocks.clustering.power``: ``dk`` fundamentals k_f = 2 pi / L
wide, edges at (1/2 + j dk) k_f up to ``k_max``), so whether a setting works depends on the
box size L: a ``k_max`` above the mesh's Nyquist frequency pi nmesh / L, or below the first
bin's upper edge, is refused here, before a box is made, naming the key and the file. The
box size comes from the halo catalog's header (AbacusSummit, generic HDF5: read once per
snapshot, from its first box whose input exists) or the synthetic source's definition
(the mass function, in a spawned process, for a box of ``n_hosts``).
Without an explicit ``k_max`` the bins scale with 1/L and any box size gives the same
verdict.
"""

from __future__ import annotations

import logging

from covmocks.core.errors import ConfigError

log = logging.getLogger(__name__)


def snapshot_box_sizes(campaign, plan) -> dict[float, float]:
    """{redshift: box size in Mpc/h}: a synthetic ``box_size``; a synthetic box of ``n_hosts``
    from the mass function (in a spawned process: JAX stays out of the driver); else the
    header of each snapshot's first task whose input is there (snapshots with every input
    missing are left out)."""
    from covmocks.box.spec import SYNTHETIC_MHOST_MIN, BoxSpec

    sci = campaign.science
    if sci.source == "synthetic" and sci.box_size is not None:
        return dict.fromkeys(sci.redshifts, float(sci.box_size))
    if sci.source == "synthetic":
        from covmocks.halos.synthetic import box_sizes, spawned

        cut = SYNTHETIC_MHOST_MIN if sci.log10_mhost_min_msun is None else sci.log10_mhost_min_msun
        sizes = spawned(box_sizes, sci.n_hosts, cut, list(sci.redshifts))
        return dict(zip(sci.redshifts, sizes, strict=True))
    sizes: dict[float, float] = {}
    for task in plan.tasks:
        if task.redshift in sizes or task.state == "blocked":
            continue
        source = BoxSpec.for_task(campaign, task).open_source()
        sizes[task.redshift] = float(source.header.box_size)
    return sizes


def check(campaign, plan) -> None:
    """Raise ConfigError (one line per snapshot, ``file:line clustering.k_max: ...``) where
    the campaign's k bins do not fit a snapshot's box."""
    from covmocks.campaign import parse_yaml
    from covmocks.clustering.measure import settings

    if campaign.clustering is None:
        return
    power = settings(campaign.clustering)
    if power.k_max is None:
        sizes = {None: 1.0}  # the bins scale with 1/L: one check answers for every box
    else:
        sizes = snapshot_box_sizes(campaign, plan)
    doc = parse_yaml(campaign.text, str(campaign.path))
    key = ("clustering", "k_max") if power.k_max is not None else ("clustering", "dk")
    problems = []
    for z, box_size in sizes.items():
        why = power.problem(box_size)
        if why:
            where = "" if z is None else f" at z={z:g}"
            problems.append(doc.problem(key, f"{why}{where}")[1])
    if problems:
        raise ConfigError(problems)
    if sizes and power.k_max is not None:
        nbins = {z: len(power.k_edges(L)) - 1 for z, L in sizes.items()}
        log.info("k bins checked on %d snapshots' boxes: %s bins of %d k_f", len(sizes),
                 "/".join(map(str, sorted(set(nbins.values())))), power.dk)  # fmt: skip
