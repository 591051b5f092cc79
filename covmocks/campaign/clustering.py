"""The campaign file's ``clustering`` section: the tracer samples whose power-spectrum
multipoles every box measures, and the estimator's settings (``covmocks.clustering.samples``,
``covmocks.clustering.power``). Without the section, no clustering is measured.

A sample selects galaxies with ``select`` (``sfr``: log10 SFR [Msun/yr]; ``mstar``: log10
M* [Msun]; ``all``: every galaxy) at or above a threshold, given (``threshold``) or fixed
for the ensemble of a snapshot from a target ``number_density`` [(h/Mpc)^3]. Either may be
one number for every snapshot or a mapping redshift -> number.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, model_validator

from covmocks.campaign.schema import Name, PosInt, Redshift, _Section, record_problem

PosFloat = Annotated[float, Field(gt=0)]
Selection = Literal["all", "sfr", "mstar"]


class SampleSection(_Section):
    """One tracer sample."""

    name: Name
    select: Selection
    threshold: float | dict[Redshift, float] | None = None
    number_density: PosFloat | dict[Redshift, PosFloat] | None = None
    redshifts: list[Redshift] | None = None  # the snapshots that measure it; None: every one

    @model_validator(mode="after")
    def _one_selection(self, info: ValidationInfo):
        given = [k for k in ("threshold", "number_density") if getattr(self, k) is not None]
        if self.select == "all" and given:
            record_problem(info, ("clustering", "samples", self.name, given[0]),
                           "select 'all' takes every galaxy: no threshold")  # fmt: skip
        if self.select != "all" and len(given) != 1:
            record_problem(info, ("clustering", "samples", self.name),
                           f"select {self.select!r} needs exactly one of threshold and "
                           f"number_density, got {', '.join(given) or 'neither'}")  # fmt: skip
        return self

    def at(self, redshift: float) -> tuple[float | None, float | None]:
        """(threshold, number density) at one snapshot; None where not given."""
        return _at(self.threshold, redshift), _at(self.number_density, redshift)

    def measured_at(self, redshift: float) -> bool:
        return self.redshifts is None or any(abs(z - redshift) < 5e-4 for z in self.redshifts)


class SampleRule(_Section):
    """One box's keep rule, as a sample reaches the box (``covmocks generate --sample-rules``,
    ``covmocks.clustering.samples.Rule``): for ``sfr`` and ``mstar`` exactly one of ``floor``
    (the threshold, in the selected quantity's log10) and ``density`` (keep the density x
    volume galaxies highest in it, (h/Mpc)^3); ``all`` takes neither."""

    name: Name
    select: Selection
    floor: float | None = None
    density: PosFloat | None = None

    @model_validator(mode="after")
    def _one_cut(self):
        given = [k for k in ("floor", "density") if getattr(self, k) is not None]
        if self.select == "all" and given:
            raise ValueError(f"select 'all' takes every galaxy: no {given[0]}")
        if self.select != "all" and len(given) != 1:
            raise ValueError(f"select {self.select} needs exactly one of floor and density")
        return self


def _at(value, redshift: float):
    if not isinstance(value, dict):
        return value
    for z, v in value.items():
        if abs(z - redshift) < 5e-4:
            return v
    return None


class ClusteringSection(_Section):
    """``clustering``: the samples and the estimator (``covmocks.clustering.power.PowerSettings``).
    ``margin``: a number-density sample's box keeps its ``margin`` x n x volume galaxies
    highest in ``select``, so that the ensemble threshold (fixed from the first
    ``calibration_boxes`` realizations of the snapshot) lies within what every box kept."""

    samples: Annotated[list[SampleSection], Field(min_length=1)]
    nmesh: Annotated[int, Field(ge=8, le=4096)] = 128
    k_max: PosFloat | None = None  # h/Mpc, the last bin's upper edge at most; None: Nyquist/2
    dk: PosInt = 1  # k-bin width in units of the box's fundamental frequency 2 pi / L
    margin: Annotated[float, Field(ge=1.1)] = 2.0
    calibration_boxes: PosInt = 10

    @model_validator(mode="after")
    def _distinct_and_complete(self, info: ValidationInfo):
        names = [s.name for s in self.samples]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            record_problem(info, ("clustering", "samples"),
                           f"sample names repeat: {', '.join(repeated)}")  # fmt: skip
        return self

    def check_snapshots(self, redshifts, info: ValidationInfo) -> None:
        """Every measured snapshot has its threshold or number density; mappings and
        ``redshifts`` name only the campaign's snapshots."""
        labels = {f"{z:.3f}" for z in redshifts}
        for s in self.samples:
            for key in ("threshold", "number_density", "redshifts"):
                value = getattr(s, key)
                named = value if isinstance(value, dict | list) else ()
                for z in named:
                    if f"{z:.3f}" not in labels:
                        record_problem(info, ("clustering", "samples", s.name, key),
                                       f"redshift {z} is not one of science.redshifts")  # fmt: skip
            if s.select == "all":
                continue
            for z in redshifts:
                if s.measured_at(z) and s.at(z) == (None, None):
                    record_problem(info, ("clustering", "samples", s.name),
                                   f"no threshold or number_density for redshift {z}")  # fmt: skip
