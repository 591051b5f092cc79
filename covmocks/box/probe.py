"""The completeness probe of a box: a random subsample of the halos within ``PROBE_DEX`` below
its host cut, populated by the box's model and counted in its statistics
(``BoxStatistics.add_probe``), never written to the catalog. From it the box measures the
limits above which the cut misses less than 1% of the galaxies
(``covmocks.catalog.completeness``).

Its halos and galaxies have streams of their own: the synthetic halos are drawn with
``probe_seed``, the subsample is a hash of halo id and ``probe_seed``, and galaxy draws are
keyed by ``fold_in(snapshot key, PROBE_STREAM)`` then host id: the catalog's galaxies are the
same draws with or without the probe. Subsampled to ``probe_fraction``, so that a box
populates about ``PROBE_HOSTS`` x (window halos per host above the cut, about 2) of them at
most, whatever its size.
"""

from __future__ import annotations

import itertools
import logging
import math
import time

import numpy as np

from covmocks.core.limits import PROBE_DEX, PROBE_HOSTS, SYNTHETIC_MHOST_RANGE
from covmocks.halos.probe import BelowCut

PROBE_STREAM = 0x70726F62  # "prob": the probe's stream id, folded into the snapshot key

log = logging.getLogger(__name__)


def probe_fraction(n_hosts: int) -> float:
    """Sampling fraction of the probe of a box of ``n_hosts`` hosts above its cut."""
    return min(1.0, PROBE_HOSTS / n_hosts) if n_hosts else float("nan")


def probe_seed(spec) -> int:
    """The probe's seed (synthetic halos, subsample hash) of a resolved ``BoxSpec``."""
    entropy = [spec.seed, spec.realization, spec.snapshot, PROBE_STREAM]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])


def open_probe(spec, source, fraction: float) -> BelowCut | None:
    """The probe's halos of the box of ``spec`` (resolved) and its opened ``source``; None
    where there is nothing to probe: no host cut, a ``host_limit`` (a part of a box), no
    hosts (``fraction`` NaN), or a synthetic cut at the mass function's lower end."""
    from covmocks.halos import sources

    cut = spec.mass_cut
    if not math.isfinite(cut) or spec.host_limit is not None or not fraction > 0:
        return None
    lower = cut - PROBE_DEX
    synthetic = spec.source == "synthetic"
    if synthetic:
        lower = max(lower, SYNTHETIC_MHOST_RANGE[0])
        if lower >= cut:
            return None
    seed = probe_seed(spec)
    below = sources.open_source(
        spec.source, spec.input, redshift=spec.redshift, log10_mhost_min_msun=lower, seed=seed,
        cleandir=spec.cleaning, box_size=source.header.box_size if synthetic else None,
        host_fraction=spec.host_fraction if synthetic else None,
    )  # fmt: skip
    return BelowCut(below, cut, fraction, seed)


def run_probe(probe: BelowCut | None, model, snap, root, stats, spec, units=None) -> dict:
    """Populate the probe's halos with ``model`` and count their galaxies in ``stats``:
    the units ``units(n_units)`` (a range; None: all of them). Returns ``n_hosts``,
    ``n_galaxies`` and ``wall_s`` (zeros for no probe)."""
    import jax.random as jran

    out = {"n_hosts": 0, "n_galaxies": 0, "wall_s": 0.0}
    if probe is None:
        return out
    t0 = time.perf_counter()
    key = jran.fold_in(root, PROBE_STREAM)
    share = (
        range(probe.n_units(spec.chunk_hosts))
        if units is None
        else units(probe.n_units(spec.chunk_hosts))
    )
    stream = probe.read_units(spec.chunk_hosts, share.start, share.stop)
    for hosts in itertools.chain.from_iterable(stream):
        if len(hosts):
            galaxies = model.populate(hosts, snap, key)
            stats.add_probe(galaxies)
            out["n_hosts"] += len(hosts)
            out["n_galaxies"] += len(galaxies["is_central"])
    out["wall_s"] = time.perf_counter() - t0
    log.info("completeness probe: %d halos below the cut (fraction %.3g) -> %d galaxies "
             "in %.2f s", out["n_hosts"], probe.fraction, out["n_galaxies"],
             out["wall_s"])  # fmt: skip
    return out
