"""The campaign directory's layout: every path under it, and how tasks and snapshots are named.

Every other module asks this one for a path; none spells out a directory name itself::

    <campaign dir>/
      metadata/  campaign.yaml      the campaign file as given
                 config.json        merged configuration and where each value came from
                 science.json       what fixes the catalogs' content, and its sha256
                 provenance.json    software versions, git commit, host, user, time
                 plan.jsonl         the manifest: one task per line
                 plan.json          counts by state, time of planning
                 events.jsonl       the driver's journal
                 driver.lock        the driver's flock
                 faults.json        fault injection (tests and rehearsals only)
                 monitoring.db      Parsl's monitoring database
                 thresholds.json    sample thresholds fixed per snapshot (clustering)
      catalogs/rNNNN/mock_zZ.ZZZ.hdf5
      qa/rNNNN_zZ.ZZZ.json          written last: with the catalog, marks the task done
         rNNNN_zZ.ZZZ.stats.hdf5    the box's science statistics
         rNNNN_zZ.ZZZ.samples.hdf5  the galaxies the clustering samples are cut from
         rNNNN_zZ.ZZZ.pk.hdf5       the box's clustering: multipoles of each sample
         report.html                the campaign report
      covariance.hdf5               the clustering covariance (``covmocks covariance``)
      logs/rNNNN_zZ.ZZZ.out, .err   the task's output; .timeout and .faults markers beside
           driver.log, driver.console, parsl/, dry-run/, htar/
      release/<name>_<version>/     the release (``covmocks release``; ``ReleaseLayout``)
    metadata/release.json           what was released, where and when: the version is frozen

The payload of a release is every file under ``catalogs/`` and ``qa/`` (``RELEASED``).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

SUBDIRS = ("metadata", "catalogs", "logs", "qa")
RELEASED = ("catalogs", "qa")  # the payload of a release: every file under these
TASK_ID = re.compile(r"^r(\d{4,})_z(\d+\.\d{3})$")
CATALOG = re.compile(r"^r(\d{4,})/mock_z(\d+\.\d{3})\.hdf5$")  # under catalogs/


def redshift_label(redshift: float) -> str:
    """``1.1`` -> ``'1.100'``: how a redshift appears in task names and file names."""
    return f"{redshift:.3f}"


def task_id(realization: int, redshift: float) -> str:
    """``(3, 1.1)`` -> ``'r0003_z1.100'``."""
    return f"r{realization:04d}_z{redshift_label(redshift)}"


def parse_task_id(text: str) -> tuple[int, str]:
    """``'r0003_z1.100'`` -> ``(3, '1.100')``; ValueError for anything else."""
    match = TASK_ID.match(text)
    if not match:
        raise ValueError(f"not a task id: {text!r} (expected rNNNN_zZ.ZZZ, e.g. r0001_z0.500)")
    return int(match[1]), match[2]


@dataclasses.dataclass(frozen=True, slots=True)
class Layout:
    """The paths of one campaign directory (absolute where ``root`` is)."""

    root: Path

    @property
    def metadata(self) -> Path:
        return self.root / "metadata"

    @property
    def catalogs(self) -> Path:
        return self.root / "catalogs"

    @property
    def qa(self) -> Path:
        return self.root / "qa"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def subdirs(self) -> list[Path]:
        return [self.root / name for name in SUBDIRS]

    # metadata/
    @property
    def campaign_file(self) -> Path:
        return self.metadata / "campaign.yaml"

    @property
    def config(self) -> Path:
        return self.metadata / "config.json"

    @property
    def science(self) -> Path:
        return self.metadata / "science.json"

    @property
    def provenance(self) -> Path:
        return self.metadata / "provenance.json"

    @property
    def manifest(self) -> Path:
        return self.metadata / "plan.jsonl"

    @property
    def plan_summary(self) -> Path:
        return self.metadata / "plan.json"

    @property
    def journal(self) -> Path:
        return self.metadata / "events.jsonl"

    @property
    def lock(self) -> Path:
        return self.metadata / "driver.lock"

    @property
    def faults(self) -> Path:
        return self.metadata / "faults.json"

    @property
    def monitoring_db(self) -> Path:
        return self.metadata / "monitoring.db"

    # logs/
    @property
    def driver_log(self) -> Path:
        return self.logs / "driver.log"

    @property
    def driver_console(self) -> Path:
        return self.logs / "driver.console"

    @property
    def parsl_runs(self) -> Path:
        return self.logs / "parsl"

    @property
    def dry_run(self) -> Path:
        return self.logs / "dry-run"

    @property
    def htar_logs(self) -> Path:
        """The listings and done markers of a release's htar script."""
        return self.logs / "htar"

    # one task
    @staticmethod
    def realization_dir_name(realization: int) -> str:
        return f"r{realization:04d}"

    @staticmethod
    def catalog_name(redshift: float) -> str:
        return f"mock_z{redshift_label(redshift)}.hdf5"

    @staticmethod
    def task_of_catalog(realization_dir: str, name: str) -> str | None:
        """``('r0003', 'mock_z1.100.hdf5')`` -> ``'r0003_z1.100'``: the task whose catalog
        ``catalogs/<realization_dir>/<name>`` is; None for any other name."""
        match = CATALOG.match(f"{realization_dir}/{name}")
        return f"r{match[1]}_z{match[2]}" if match else None

    def catalog(self, realization: int, redshift: float) -> Path:
        """The galaxy catalog of one box."""
        return self.catalogs / self.realization_dir_name(realization) / self.catalog_name(redshift)

    def box_files(self, realization: int, redshift: float) -> list[Path]:
        """Every file of one box: its catalog, QA record, statistics, samples, clustering
        record and logs."""
        task = task_id(realization, redshift)
        stem = self.log_stem(task)
        return [self.catalog(realization, redshift), self.qa_record(task),
                self.statistics(task), self.samples(task), self.clustering(task),
                stem.with_name(f"{task}.out"), stem.with_name(f"{task}.err")]  # fmt: skip

    def qa_record(self, task: str) -> Path:
        """The QA record of task ``task`` (a task id)."""
        return self.qa / f"{task}.json"

    @property
    def report(self) -> Path:
        """The campaign report (``covmocks report``)."""
        return self.qa / "report.html"

    def statistics(self, task: str) -> Path:
        """The science statistics of task ``task`` (``covmocks.catalog.summary``)."""
        return self.qa / f"{task}.stats.hdf5"

    def samples(self, task: str) -> Path:
        """The galaxies a box's clustering samples are cut from
        (``covmocks.clustering.samples``)."""
        return self.qa / f"{task}.samples.hdf5"

    def clustering(self, task: str) -> Path:
        """The clustering record of task ``task`` (``covmocks.clustering.power``)."""
        return self.qa / f"{task}.pk.hdf5"

    @property
    def thresholds(self) -> Path:
        """The sample thresholds, fixed per snapshot for the ensemble
        (``covmocks.clustering.samples``)."""
        return self.metadata / "thresholds.json"

    @property
    def covariance(self) -> Path:
        """The clustering covariance of the campaign (``covmocks.covariance.ensemble``)."""
        return self.root / "covariance.hdf5"

    def log_stem(self, task: str) -> Path:
        """Stem of a task's logs: ``.out``, ``.err``, ``.timeout`` and ``.faults`` follow."""
        return self.logs / task

    # release
    def payload(self) -> list[Path]:
        """The directories whose every file a release holds (``RELEASED``)."""
        return [self.root / name for name in RELEASED]

    def release(self, name: str, version: str) -> Path:
        """The default release directory of campaign ``name`` version ``version``."""
        return self.root / "release" / f"{name}_{version}"

    @property
    def release_record(self) -> Path:
        """The record that this version is released (and so frozen)."""
        return self.metadata / "release.json"


@dataclasses.dataclass(frozen=True, slots=True)
class ReleaseLayout:
    """The files of a release directory: a manifest-only BagIt bag whose payload is the
    campaign directory's ``RELEASED`` files (``payload`` in ``record`` says where)::

        bagit.txt, bag-info.txt       BagIt's declaration and the bag's description
        manifest-sha256.txt           payload files: sha256 and path from the campaign directory
        tagmanifest-sha256.txt        this directory's other files: sha256 and path
        release.json                  what, when, where the payload is, sizes, missing boxes
        boxes.csv                     one row per box
        README.md, datamodel.md       the data card and the data model
        campaign.yaml, config.json    the campaign file as given, and merged
        science.json, provenance.json, thresholds.json, covariance.hdf5, report.html
        htar/                         the plan to tape (``covmocks release --htar-plan``)
    """

    root: Path

    bagit = property(lambda self: self.root / "bagit.txt")
    bag_info = property(lambda self: self.root / "bag-info.txt")
    manifest = property(lambda self: self.root / "manifest-sha256.txt")
    tagmanifest = property(lambda self: self.root / "tagmanifest-sha256.txt")
    record = property(lambda self: self.root / "release.json")
    boxes = property(lambda self: self.root / "boxes.csv")
    card = property(lambda self: self.root / "README.md")
    datamodel = property(lambda self: self.root / "datamodel.md")
    htar = property(lambda self: self.root / "htar")

    def copy_of(self, source: Path) -> Path:
        """Where the release keeps its copy of the campaign file ``source`` (same name)."""
        return self.root / source.name
