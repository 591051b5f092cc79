"""AbacusSummit's directory conventions: simulation names and where abacusutils looks for a
snapshot's cleaned catalog. Paths only (no numpy, h5py or abacusutils), so that the planner
and the covariance's provenance can ask without loading the reader (``halos.abacus``).
"""

from __future__ import annotations

import re
from pathlib import Path

from covmocks.core.errors import InputError

# An AbacusSummit simulation's name as its directories spell it (AbacusSummit_small_c000_ph3000).
SIM_NAME = re.compile(r"AbacusSummit_[A-Za-z0-9_]+")


def cleaning_dir(halo_dir: Path, cleandir: Path) -> Path:
    """Where abacusutils looks for the cleaned catalog of ``halo_dir`` (``<sim>/halos/zZ.ZZZ``)
    under the cleaning root ``cleandir``: ``cleandir / <sim relative to cleandir's parent> /
    zZ.ZZZ``, holding ``cleaned_halo_info/cleaned_halo_info_NNN.asdf`` (the rule of
    ``CompaSOHaloCatalog._setup_file_paths``). The root must sit in an ancestor of the
    simulation directory, as AbacusSummit's ``cleaning/`` does."""
    halo_dir, cleandir = Path(halo_dir).absolute(), Path(cleandir).absolute()
    try:
        rel = (halo_dir.parents[1] / halo_dir.name).relative_to(cleandir.parent)
    except (ValueError, IndexError):
        raise InputError(
            f"cleaning root {cleandir} cannot hold the cleaned catalog of {halo_dir}: its "
            "parent must contain the simulation directory (AbacusSummit's layout: "
            ".../cleaning/<sim>/zZ.ZZZ beside .../<sim>/halos/zZ.ZZZ)"
        ) from None
    return cleandir / rel / "cleaned_halo_info"
