"""Campaign files: YAML -> a validated ``Campaign``, merged over a machine profile.

A campaign file has five sections, ``campaign``, ``science``, ``execution``, ``resources``
and ``outputs`` (reference: docs/campaigns.md). Values come from three tiers, later wins:
the machine profile (``covmocks/configs/<name>.yaml`` or a file path) -> the campaign
file -> per-snapshot overrides (``resources.by_redshift``); every merged value remembers
where it came from. The modules, one job each:

- ``yamldoc``: YAML text -> data with the line of every key; ``file:line key.path`` wording
- ``templates``: ``${ENV}`` expansion, ``{field}`` templates, paths relative to the file
- ``schema``: the pydantic sections of campaign and profile files, and of a merged campaign
- ``messages``: pydantic errors -> one line each naming file, line, key and expectation
- ``profiles``: finding and reading the machine profile a campaign names
- ``merge``: the three-tier merge with provenance, and the merged typed sections
- ``model``: the ``Campaign`` object and how it is built

This package imports neither the planner nor the runner.
"""

from covmocks.campaign.merge import Entry
from covmocks.campaign.model import Campaign
from covmocks.campaign.profiles import CONFIGS, profile_names, profile_path
from covmocks.campaign.schema import (
    CostFigures,
    Execution,
    ExecutorValues,
    LauncherValues,
    Profile,
    ProviderValues,
    Resources,
    Science,
)
from covmocks.campaign.templates import expand_env, resolve_path
from covmocks.campaign.yamldoc import format_path, parse_yaml, read_yaml
from covmocks.core.layout import redshift_label

__all__ = [
    "CONFIGS",
    "Campaign",
    "CostFigures",
    "Entry",
    "Execution",
    "ExecutorValues",
    "LauncherValues",
    "Profile",
    "ProviderValues",
    "Resources",
    "Science",
    "expand_env",
    "format_path",
    "parse_yaml",
    "profile_names",
    "profile_path",
    "read_yaml",
    "resolve_path",
    "redshift_label",
]
