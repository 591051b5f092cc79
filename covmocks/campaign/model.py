"""The ``Campaign``: a campaign file read, validated and merged over its machine profile
into typed sections, with the provenance of every value and the record of its science.

Problems are collected, not raised one at a time: each names the file, the YAML line, the
key path and what was expected, and all of them are raised together as one ``ConfigError``.
Relative paths in a campaign file are relative to the file's directory.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from covmocks.campaign import merge
from covmocks.campaign.clustering import ClusteringSection
from covmocks.campaign.document import CampaignFile
from covmocks.campaign.merge import Entry
from covmocks.campaign.messages import raise_problems, validate
from covmocks.campaign.profiles import load_profile, profile_ref
from covmocks.campaign.schema import Execution, Notify, Profile, Resources, Science
from covmocks.campaign.templates import resolve_path
from covmocks.campaign.yamldoc import YamlDoc, format_path, parse_yaml, read_yaml
from covmocks.core.layout import Layout, redshift_label
from covmocks.galaxies.registry import MODELS


@dataclasses.dataclass(frozen=True)
class Campaign:
    """A validated campaign: merged configuration, its provenance, and the plan's inputs.

    ``execution`` holds the run settings and the Parsl ``executor``, ``provider`` and
    ``launcher`` sections; ``profile`` the machine profile's name, file, description and
    cost figures; ``entries`` every merged value with its source (``config show``).
    """

    path: Path
    text: str
    name: str
    version: str
    description: str
    tags: tuple[str, ...]
    seed: int
    notify: Notify | None
    directory: Path
    science: Science
    execution: Execution
    profile: Profile
    resources: Resources
    by_redshift: dict[str, Resources]  # redshift_label(z) -> resources of that snapshot
    clustering: ClusteringSection | None  # the samples and estimator; None: no clustering
    entries: dict[tuple, Entry] = dataclasses.field(repr=False)
    science_record: dict = dataclasses.field(repr=False)

    @classmethod
    def load(cls, path) -> Campaign:
        """Read, validate and merge a campaign file; raise ConfigError with every problem."""
        doc, text = read_yaml(Path(path))
        return _build(Path(path), text, doc)

    @classmethod
    def from_text(cls, text: str, path) -> Campaign:
        """As ``load``, for text said to come from ``path`` (relative paths resolve there)."""
        return _build(Path(path), text, parse_yaml(text, str(path)))

    @property
    def layout(self) -> Layout:
        """The paths of the campaign directory."""
        return Layout(self.directory)

    @property
    def compilation_cache(self) -> Path | None:
        """``execution.compilation_cache`` expanded (environment, ``~``; relative to the
        campaign file); None where unset (``covmocks.galaxies.jaxenv.cache_dir`` chooses)."""
        configured = self.execution.compilation_cache
        return Path(resolve_path(configured, self.path.resolve().parent)) if configured else None

    def resources_for(self, redshift: float) -> Resources:
        return self.by_redshift.get(redshift_label(redshift), self.resources)

    def config(self) -> dict:
        """The merged configuration as nested mappings."""
        tree: dict = {}
        for path, entry in self.entries.items():
            node = tree
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = entry.value
        return tree

    def sources(self) -> dict[str, str]:
        """``key.path`` -> where its value came from."""
        return {format_path(path): entry.source for path, entry in self.entries.items()}


def _build(path: Path, text: str, doc: YamlDoc) -> Campaign:
    problems: list = []
    cf = validate(CampaignFile, doc, problems)
    base_dir = path.resolve().parent
    loaded, profile_problems = load_profile(profile_ref(doc.data), base_dir, doc, problems)
    raise_problems(sorted(problems, key=lambda p: p[0]) + profile_problems)
    profile, pdoc, ppath = loaded
    entries = merge.merge(cf, doc, profile, pdoc)
    execution = merge.execution(entries)

    if execution.backoff_base_s > execution.backoff_cap_s:
        cap_from = entries[("execution", "backoff_cap_s")].source
        problems.append(doc.problem(("execution", "backoff_base_s"),
                        f"{execution.backoff_base_s} s exceeds backoff_cap_s "
                        f"({execution.backoff_cap_s} s, {cap_from})"))  # fmt: skip
    try:  # expanded again: the environment may have changed since validation
        name = cf.outputs.directory.format(name=cf.campaign.name, version=cf.campaign.version)
        directory = Path(resolve_path(cf.outputs.base, base_dir)) / name
        template = cf.science.input and resolve_path(cf.science.input, base_dir)
        cleaning = cf.science.cleaning and resolve_path(cf.science.cleaning, base_dir)
    except ValueError as exc:
        problems.append((0, f"{doc.label}: {exc}"))
    raise_problems(problems)
    entries[("profile", "path")] = Entry(str(ppath), "derived from execution.profile")
    entries[("outputs", "campaign_dir")] = Entry(str(directory), "derived")
    if template:
        entries[("science", "input_resolved")] = Entry(template, "derived")
    if cleaning:
        entries[("science", "cleaning_resolved")] = Entry(cleaning, "derived")

    resources, by_redshift = merge.resources(entries, execution.task_walltime_s)
    sci = cf.science
    realizations = sci.realization_list()
    fraction = None if sci.box_size is None else sci.host_fraction or 1.0
    # recorded where given only: the records of campaigns without them stay as they were
    synthetic_box = {} if fraction is None else {"science.box_size": sci.box_size,
                                                 "science.host_fraction": fraction}  # fmt: skip
    return Campaign(
        path=path,
        text=text,
        name=cf.campaign.name,
        version=cf.campaign.version,
        description=cf.campaign.description,
        tags=tuple(cf.campaign.tags),
        seed=cf.campaign.seed,
        notify=cf.campaign.notify,
        directory=directory,
        science=Science(
            source=sci.source,
            input=template,
            cleaning=cleaning,
            n_hosts=sci.n_hosts,
            box_size=sci.box_size,
            host_fraction=fraction,
            realizations=tuple(realizations),
            redshifts=tuple(sci.redshifts),
            log10_mhost_min_msun=sci.log10_mhost_min_msun,
            model=sci.model,
            model_params=dict(sci.model_params),
        ),
        execution=execution,
        profile=Profile(
            name=cf.execution.profile,
            path=ppath,
            description=profile.description,
            cost=profile.cost,
        ),
        resources=resources,
        by_redshift={redshift_label(z): r for z, r in by_redshift.items()},
        clustering=cf.clustering,
        entries=merge.sorted_entries(entries),
        # what fixes a box's content; not which boxes (realizations, redshifts: a version
        # grows and shrinks), nor where the halos lie (their identity is checked instead:
        # ``covmocks.workflow.metadata.input_identity``), nor parameters that only cut work
        science_record={
            "campaign.seed": cf.campaign.seed,
            "science.source": sci.source,
            "science.cleaned": sci.cleaning is not None,
            "science.n_hosts": sci.n_hosts,
            **synthetic_box,
            "science.log10_mhost_min_msun": sci.log10_mhost_min_msun,
            "science.model": sci.model,
            "science.model_version": MODELS[sci.model].version,
            "science.model_params": {
                k: v for k, v in sci.model_params.items() if k in MODELS[sci.model].recorded
            },  # fmt: skip
            # the samples fix the per-box sample files and clustering records
            "clustering": cf.clustering and cf.clustering.model_dump(mode="json"),
        },
    )
