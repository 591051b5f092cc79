"""The three-tier merge, later wins: machine profile -> campaign file -> per-snapshot
override (``resources.by_redshift``); keys set nowhere take the schema's defaults.

Every merged value is an ``Entry`` that remembers where it came from (``profile file
local.yaml:14``, ``campaign file c.yaml:9``, ``override c.yaml:30``, ``default``); the typed
sections of a campaign (``Execution``, ``Resources``) are validated from those entries.
A key counts as set in a file when the file spells it out (``account: null`` included).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel

from covmocks.campaign.document import CampaignFile
from covmocks.campaign.schema import (
    Execution,
    ExecutionValues,
    ExecutorValues,
    LauncherValues,
    ProfileFile,
    ProviderValues,
    Resources,
    ResourceValues,
    SnapshotResources,
)
from covmocks.campaign.yamldoc import YamlDoc

SECTIONS = ("campaign", "science", "execution", "profile", "resources", "outputs")
EX = ("execution",)
RES = ("resources",)
# The Parsl sections: name, schema; in a profile at top level, in a campaign in execution.
PARSL_SECTIONS = {
    "executor": ExecutorValues,
    "provider": ProviderValues,
    "launcher": LauncherValues,
}


class Entry(NamedTuple):
    """A merged value and where it came from."""

    value: Any
    source: str


@dataclasses.dataclass(frozen=True)
class _Tier:
    name: str
    doc: YamlDoc

    def source(self, path: tuple) -> str | None:
        line = self.doc.lines.get(path)
        return None if line is None else f"{self.name} {Path(self.doc.label).name}:{line}"


def _leaves(prefix: tuple, value):
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _leaves(prefix + (key,), item)
    else:
        yield prefix, value


def merge(cf: CampaignFile, doc: YamlDoc, profile: ProfileFile, pdoc: YamlDoc) -> dict:
    """Every configuration value with its source: profile -> campaign file -> override."""
    file, prof = _Tier("campaign file", doc), _Tier("profile file", pdoc)
    override = _Tier("override", doc)
    entries: dict[tuple, Entry] = {}

    def from_file(tier: _Tier, out: tuple, model: BaseModel, prefix: tuple | None = None) -> None:
        """Leaves of ``model``, found at ``prefix`` (default: ``out``) in the tier's file."""
        prefix = out if prefix is None else prefix
        for key, value in _leaves((), model.model_dump()):
            entries[out + key] = Entry(value, tier.source(prefix + key) or "default")

    def merged(out: tuple, keys, layers) -> None:
        """``layers``: (tier, path prefix in its file, model), highest priority first."""
        for key in keys:
            for tier, prefix, model in layers:
                source = tier.source(prefix + (key,))
                if source:
                    entries[out + (key,)] = Entry(getattr(model, key), source)
                    break
            else:
                entries[out + (key,)] = Entry(getattr(layers[-1][2], key), "default")

    from_file(file, ("campaign",), cf.campaign)
    from_file(file, ("science",), cf.science)
    merged(EX, ["profile"], [(file, EX, cf.execution)])
    ex_layers = [(file, EX, cf.execution), (prof, EX, profile.execution)]
    merged(EX, ExecutionValues.model_fields, ex_layers)
    for name, schema in PARSL_SECTIONS.items():
        layers = [
            (file, EX + (name,), getattr(cf.execution, name)),
            (prof, (name,), getattr(profile, name)),
        ]
        merged(EX + (name,), schema.model_fields, layers)
    merged(("profile",), ["description"], [(prof, (), profile)])
    from_file(prof, ("profile", "cost"), profile.cost, ("cost",))
    merged(
        RES,
        ResourceValues.model_fields,
        [(file, RES, cf.resources), (prof, RES, profile.resources)],
    )
    for z, values in cf.resources.by_redshift.items():
        for key in SnapshotResources.model_fields:
            source = override.source(RES + ("by_redshift", z, key))
            if source:
                entries[RES + ("by_redshift", z, key)] = Entry(getattr(values, key), source)
    from_file(file, ("outputs",), cf.outputs)
    return entries


def sorted_entries(entries: dict) -> dict:
    """Entries in section order (campaign, science, execution, profile, resources, outputs),
    keeping the order within a section."""
    return dict(sorted(entries.items(), key=lambda item: SECTIONS.index(item[0][0])))


def _section(entries: dict, prefix: tuple, schema: type[BaseModel]):
    return schema.model_validate(
        {key: entries[prefix + (key,)].value for key in schema.model_fields}
    )


def execution(entries: dict) -> Execution:
    """The merged ``execution`` with its executor, provider and launcher sections."""
    sections = {name: _section(entries, EX + (name,), schema)
                for name, schema in PARSL_SECTIONS.items()}  # fmt: skip
    values = {key: entries[EX + (key,)].value for key in ExecutionValues.model_fields}
    return Execution.model_validate(values | sections)


def resources(entries: dict, walltime_s: float) -> tuple[Resources, dict[float, Resources]]:
    """-> (the resources of every task, {snapshot redshift: resources} for overridden ones)."""
    base = {key: entries[RES + (key,)].value for key in ResourceValues.model_fields}
    base = Resources.model_validate(base | {"walltime_s": walltime_s})
    by_redshift: dict[float, dict] = {}
    for path, entry in entries.items():
        if path[:2] == RES + ("by_redshift",) and entry.value is not None:
            by_redshift.setdefault(path[2], {})[path[3]] = entry.value
    overridden = {
        z: Resources.model_validate(base.model_dump() | changes)
        for z, changes in by_redshift.items()
    }
    return base, overridden
