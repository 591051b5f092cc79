"""Clustering samples: what each box keeps of its galaxies for them, and how a sample is cut.

While its catalog is written, a box keeps, in a small per-box file (``qa/<task>.samples.hdf5``),
the galaxies that could enter any of the campaign's samples (``SampleCollector``): for a
sample with a given threshold, the galaxies at or above it; for a number-density sample, the
``margin`` x n x volume galaxies highest in the selection variable (ties at the floor kept);
for ``all``, every galaxy. Whatever the chunking or the number of MPI ranks, the kept set is
the same (a floor only rises as galaxies arrive, and nothing at or above the final floor is
dropped), and it is stored in catalog row order.

A number-density sample's threshold is fixed once per snapshot for the whole ensemble, as a
survey's flux limit is: the value x at which the mean n(>=x) of the snapshot's first
``calibration_boxes`` realizations reaches n (``ensemble_threshold``), recorded in
``metadata/thresholds.json``. Boxes are then cut at x, never re-ranked to hit n, so the
box-to-box fluctuation of the number of objects stays in the covariance.

Units: log10 SFR [Msun/yr], log10 M* [Msun], number densities (h/Mpc)^3, positions
comoving Mpc/h in [0, box_size), velocities km/s.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np

from covmocks.catalog.completeness import SELECT_COLUMN, limit_name

COLUMNS = {"pos": "f4", "vel": "f4", "log10_mstar_surviving": "f4", "log10_sfr": "f4",
           "is_central": "?", "row": "i8"}  # fmt: skip
COMPLETE_ATTR = {select: limit_name(select) for select in SELECT_COLUMN}


@dataclasses.dataclass(frozen=True)
class Rule:
    """What a box keeps for one sample: galaxies with ``select`` at or above ``floor``, or
    its ``density`` [(h/Mpc)^3] x volume highest (ties kept), or (``all``) every one."""

    name: str
    select: str  # "all", "sfr", "mstar"
    floor: float | None = None
    density: float | None = None

    def keep_count(self, volume: float) -> int:
        return math.ceil(self.density * volume)


def rules_for(clustering, redshift: float) -> tuple[Rule, ...]:
    """The keep rules of a snapshot from the campaign's clustering section (None: none)."""
    if clustering is None:
        return ()
    rules = []
    for s in clustering.samples:
        if not s.measured_at(redshift):
            continue
        threshold, density = s.at(redshift)
        rules.append(
            Rule(
                s.name,
                s.select,
                floor=threshold,
                density=None if density is None else clustering.margin * density,
            )
        )
    return tuple(rules)


def _kth_largest(values: np.ndarray, k: int) -> float:
    """The k-th largest of ``values`` (NaN ignored); -inf when there are fewer than k."""
    finite = values[~np.isnan(values)]
    if k <= 0 or len(finite) < k:
        return -np.inf
    return float(np.partition(finite, len(finite) - k)[len(finite) - k])


class SampleCollector:
    """The galaxies a box keeps for ``rules``, accumulated chunk by chunk (``add``) or rank by
    rank (``merge``); ``floors`` gives each rule's floor so far."""

    def __init__(self, rules, box_size: float):
        self.rules = tuple(rules)
        self.volume = float(box_size) ** 3
        self.kept = {k: np.zeros((0, 3) if k in ("pos", "vel") else 0, d)
                     for k, d in COLUMNS.items()}  # fmt: skip

    def __bool__(self) -> bool:
        return bool(self.rules)

    def floors(self) -> dict[str, float]:
        out = {}
        for r in self.rules:
            if r.select == "all":
                out[r.name] = -np.inf
            elif r.density is None:
                out[r.name] = r.floor
            else:
                values = self.kept[SELECT_COLUMN[r.select]]
                out[r.name] = _kth_largest(values, r.keep_count(self.volume))
        return out

    def _prune(self) -> None:
        floors = self.floors()
        keep = np.zeros(len(self.kept["row"]), bool)
        for r in self.rules:
            if r.select == "all":
                keep[:] = True
                break
            keep |= self.kept[SELECT_COLUMN[r.select]] >= floors[r.name]
        self.kept = {k: v[keep] for k, v in self.kept.items()}

    def _append(self, part: dict) -> None:
        self.kept = {k: np.concatenate([self.kept[k], part[k]]) for k in COLUMNS}
        self._prune()

    def add(self, columns: dict, first_row: int) -> None:
        """Consider one chunk of catalog columns whose first galaxy is row ``first_row``."""
        if not self.rules:
            return
        n = len(columns["is_central"])
        part = {k: np.asarray(columns[k], COLUMNS[k]) for k in COLUMNS if k != "row"}
        self._append(part | {"row": first_row + np.arange(n, dtype=np.int64)})

    def shifted(self, offset: int) -> SampleCollector:
        """This collector with its rows moved by ``offset`` (an MPI unit's first row)."""
        out = SampleCollector(self.rules, self.volume ** (1 / 3))
        out.kept = {**self.kept, "row": self.kept["row"] + offset}
        return out

    def merge(self, other: SampleCollector) -> None:
        """Take in the galaxies another part of the same box kept."""
        self._append(other.kept)

    def write(self, path, attrs: dict) -> None:
        """Write the kept galaxies in row order, the floors and ``attrs``, atomically."""
        from covmocks.catalog.hdf5 import replaced_file, write_attrs

        order = np.argsort(self.kept["row"], kind="stable")
        with replaced_file(path) as f:
            for name, values in self.kept.items():
                f.create_dataset(name, data=values[order], compression="gzip", shuffle=True)
            rules = [dataclasses.asdict(r) for r in self.rules]
            floors = {k: None if v == -np.inf else v for k, v in self.floors().items()}
            write_attrs(f, {**attrs, "rules": rules, "floors": floors,  # strict JSON
                            "units": "pos comoving Mpc/h in [0, box_size); vel km/s; "
                            "log10_mstar_surviving log10 Msun; log10_sfr log10 Msun/yr; row: "
                            "the galaxy's row in its catalog"})  # fmt: skip


def read(path) -> dict:
    """A sample file: ``{"attrs": {...}, "floors": {name: floor}, column: array}``; its JSON
    attributes decoded (``rules``, ``floors``: strict JSON, null for no floor, which is
    -inf here; files written before held -Infinity in text)."""
    import h5py

    from covmocks.catalog.hdf5 import read_attrs

    with h5py.File(path, "r") as f:
        out = {name: f[name][...] for name in f}
        out["attrs"] = read_attrs(f)
    floors = out["attrs"]["floors"]
    if isinstance(floors, str):
        floors = json.loads(floors, parse_constant=float)
    out["floors"] = {k: -np.inf if v is None else float(v) for k, v in floors.items()}
    return out


def cut(box: dict, name: str, select: str, threshold: float | None) -> np.ndarray:
    """Mask of the galaxies of a sample file (``read``) in sample ``name``: ``select`` at or
    above ``threshold`` (every kept galaxy for ``all``). Raises ValueError when the box did
    not keep galaxies that low (its floor lies above the threshold: raise the margin)."""
    if select == "all":
        return np.ones(len(box["row"]), bool)
    floor = box["floors"][name]
    if threshold < floor:
        raise ValueError(f"sample {name}: threshold {threshold:.4f} lies below what the box "
                         f"kept (floor {floor:.4f}); raise clustering.margin")  # fmt: skip
    return box[SELECT_COLUMN[select]] >= threshold


def ensemble_threshold(boxes: list[dict], name: str, select: str, density: float) -> float:
    """The value x at which the mean over ``boxes`` (sample files, ``read``) of n(>=x)
    [(h/Mpc)^3] first reaches ``density``: the threshold of a number-density sample."""
    values, weights = [], []
    for box in boxes:
        v = box[SELECT_COLUMN[select]].astype(np.float64)
        v = v[np.isfinite(v)]
        values.append(v)
        weights.append(np.full(len(v), 1.0 / (len(boxes) * float(box["attrs"]["box_size"]) ** 3)))
    v, w = np.concatenate(values), np.concatenate(weights)
    order = np.argsort(-v, kind="stable")
    reached = np.flatnonzero(np.cumsum(w[order]) >= density * (1 - 1e-12))
    highest_floor = max(box["floors"][name] for box in boxes)
    if not len(reached) or v[order[reached[0]]] < highest_floor:
        raise ValueError(f"sample {name}: the calibration boxes kept too few galaxies to reach "
                         f"n = {density:g} (h/Mpc)^3; raise clustering.margin")  # fmt: skip
    return float(v[order[reached[0]]])
