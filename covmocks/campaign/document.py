"""The whole campaign file: the sections of ``covmocks.campaign.schema`` and the clustering
section (``covmocks.campaign.clustering``), and the checks across them."""

from __future__ import annotations

from pydantic import ValidationInfo, model_validator

from covmocks.campaign.clustering import ClusteringSection
from covmocks.campaign.schema import (
    CampaignSection,
    ExecutionSection,
    OutputsSection,
    ResourcesSection,
    ScienceSection,
    _Section,
    record_problem,
)


class CampaignFile(_Section):
    """The whole campaign file."""

    campaign: CampaignSection
    science: ScienceSection
    execution: ExecutionSection = ExecutionSection()
    resources: ResourcesSection = ResourcesSection()
    outputs: OutputsSection = OutputsSection()
    clustering: ClusteringSection | None = None

    @model_validator(mode="after")
    def _overrides_match_snapshots(self, info: ValidationInfo):
        names = {f"{z:.3f}" for z in self.science.redshifts}
        for z in self.resources.by_redshift:
            if f"{z:.3f}" not in names:
                record_problem(
                    info, ("resources", "by_redshift", z), "not one of science.redshifts"
                )
        if self.clustering is not None:
            self.clustering.check_snapshots(self.science.redshifts, info)
        return self
