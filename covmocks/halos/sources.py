"""Opening a halo source by kind: ``abacus``, ``hdf5`` or ``synthetic``."""

from __future__ import annotations

import numpy as np

from covmocks.core.errors import InputError
from covmocks.core.limits import SOURCE_KINDS
from covmocks.halos.abacus import AbacusSource
from covmocks.halos.blocks import HDF5Source
from covmocks.halos.synthetic import SyntheticSource


def open_source(kind: str, path=None, *, redshift=None, log10_mhost_min_msun=-np.inf,
                n_hosts: int | None = None, seed: int = 0, cleandir=None,
                box_size: float | None = None, host_fraction: float | None = None):  # fmt: skip
    """Open a halo source by kind: 'abacus' (path, and ``cleandir`` for the cleaned catalog),
    'hdf5' (path) or 'synthetic' (a finite ``log10_mhost_min_msun``, ``box.BoxSpec.mass_cut``
    gives its default; and either n_hosts, or ``box_size`` in Mpc/h and ``host_fraction``,
    default 1)."""
    if cleandir is not None and kind != "abacus":
        raise InputError(f"halo cleaning applies to AbacusSummit catalogs, not source {kind}")
    if kind == "abacus":
        return AbacusSource(path, log10_mhost_min_msun, redshift, cleandir)
    if kind == "hdf5":
        return HDF5Source(path, log10_mhost_min_msun, redshift)
    if kind == "synthetic":
        if n_hosts is None and box_size is None:
            raise InputError("synthetic source needs n_hosts or box_size")
        z = 0.0 if redshift is None else redshift
        fraction = 1.0 if host_fraction is None else host_fraction
        return SyntheticSource(n_hosts, log10_mhost_min_msun, z, seed, box_size=box_size,
                               host_fraction=fraction)  # fmt: skip
    raise InputError(f"unknown halo source {kind!r}; expected one of {', '.join(SOURCE_KINDS)}")
