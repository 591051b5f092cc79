"""``science.realizations``: a list of distinct realization ids, or a range ``{first, last,
exclude}``; each id a random-stream id in [0, 2**31) (``limits.RANDOM_ID_LIMIT``), at least one."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from covmocks.core.limits import RANDOM_ID_LIMIT

MAX_REALIZATIONS = 1_000_000
RealizationId = Annotated[int, Field(ge=0, lt=RANDOM_ID_LIMIT)]


class _Section(BaseModel):
    """A section of a campaign or profile file (every section's base, ``schema``)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class RealizationRange(_Section):
    """Realizations ``first`` to ``last``, both included, minus ``exclude``."""

    first: RealizationId  # the first realization, included
    last: RealizationId  # the last realization, included
    exclude: list[RealizationId] = []  # realizations left out of the range

    @model_validator(mode="after")
    def _bounds(self):
        if self.last < self.first:
            raise ValueError(f"last ({self.last}) is before first ({self.first})")
        if self.last - self.first >= MAX_REALIZATIONS:
            raise ValueError(f"more than {MAX_REALIZATIONS} realizations")
        outside = [r for r in self.exclude if not self.first <= r <= self.last]
        if outside:
            raise ValueError(f"exclude lists {outside}, outside {self.first}..{self.last}")
        if not self.values():
            raise ValueError(f"exclude removes every realization of {self.first}..{self.last}")
        return self

    def values(self) -> list[int]:
        skip = set(self.exclude)
        return [r for r in range(self.first, self.last + 1) if r not in skip]


def _realizations_kind(value) -> str | None:
    if isinstance(value, list):
        return "<list>"
    return "<range>" if isinstance(value, dict | RealizationRange) else None


TAGS = ("<list>", "<range>")  # discriminator tags: not part of a key path
Realizations = Annotated[
    Annotated[list[RealizationId], Field(min_length=1), Tag("<list>")]
    | Annotated[RealizationRange, Tag("<range>")],
    Discriminator(
        _realizations_kind,
        custom_error_type="realizations",
        custom_error_message="expected a list of integers or a mapping {first, last, exclude}",
    ),
]
