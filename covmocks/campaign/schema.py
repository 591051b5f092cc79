"""The campaign file and machine profile schema: one frozen pydantic model per section,
and the typed values a merged campaign holds (``Science``, ``Execution`` with its
``executor``, ``provider`` and ``launcher`` sections, ``Resources``, ``Profile``).

Field names are the YAML keys. Cross-field checks record their problems through
``record_problem`` so the loader reports them with the rest (reference: docs/campaigns.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from covmocks.campaign.realizations import Realizations, _Section
from covmocks.campaign.templates import check_template
from covmocks.campaign.yamldoc import format_path
from covmocks.core.limits import (
    CHUNK_HOSTS,
    COMPRESSIONS,
    MAX_REDSHIFT,
    PATH_SOURCES,
    RANDOM_ID_LIMIT,
    SOURCE_KINDS,
    SYNTHETIC_MHOST_RANGE,
)
from covmocks.galaxies.registry import MODELS

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
WALLTIME_PATTERN = r"^\d+:\d{2}:\d{2}$"
AFFINITY_PATTERN = r"^(none|block|block-reverse|alternating|list:.+)$"  # Parsl's cpu_affinity


def record_problem(info: ValidationInfo, path: tuple, message: str) -> None:
    """Record a cross-field problem at ``path``; the loader reports them with the rest."""
    if info.context is None:
        raise ValueError(f"{format_path(path)}: {message}")
    info.context.append((path, message))


Name = Annotated[str, Field(pattern=NAME_PATTERN)]
NonNegInt = Annotated[int, Field(ge=0)]
PosInt = Annotated[int, Field(ge=1)]
Seconds = Annotated[float, Field(gt=0)]
Redshift = Annotated[float, Field(ge=0, le=MAX_REDSHIFT)]


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError(f"text with a NUL character: {value!r}")
    return value


# Free text that reaches paths, commands or arguments: no NUL (no system call takes one).
Text = Annotated[str, AfterValidator(_no_nul)]


# ---------------------------------------------------------------- campaign, science


class Notify(_Section):
    """``campaign.notify``: a command (an argv list, never run by a shell) that gets a
    one-line summary as its last argument when the campaign's run finishes, and once when
    the fraction of this run's tasks that failed reaches ``failure_fraction``."""

    command: Annotated[list[Text], Field(min_length=1)]  # argv; the summary is appended
    failure_fraction: Annotated[float, Field(gt=0, le=1)] = 0.1  # of this run's tasks failed


class CampaignSection(_Section):
    """``campaign``: names the campaign and fixes its random seed."""

    name: Name
    version: Name = "1"
    description: Text = ""
    tags: list[Text] = []
    seed: Annotated[int, Field(ge=0, lt=RANDOM_ID_LIMIT)]
    notify: Notify | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _number_as_text(cls, value):
        return (
            str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
        )


def model_parameters(model: str) -> list[str]:
    """Constructor parameter names of a registered galaxy model (no instantiation)."""
    return list(MODELS[model].parameters)


class _ScienceValues(_Section):
    """Science keys that read the same in the file and in the merged campaign."""

    source: Literal[SOURCE_KINDS]
    n_hosts: PosInt | None = None
    box_size: Annotated[float, Field(gt=0)] | None = None  # comoving Mpc/h, synthetic
    host_fraction: Annotated[float, Field(gt=0, le=1)] | None = None  # with box_size: 1
    log10_mhost_min_msun: float | None = None
    model: str = "diffsky_sfh"
    model_params: dict[str, Any] = {}

    @field_validator("model")
    @classmethod
    def _known_model(cls, value):
        if value not in MODELS:
            raise ValueError(
                f"unknown galaxy model {value!r}; expected one of: {', '.join(MODELS)}"
            )
        return value

    @field_validator("model_params")
    @classmethod
    def _plain_data(cls, value):
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"expected plain data (numbers, text, lists, mappings): {exc}"
            ) from None
        return value


class ScienceSection(_ScienceValues):
    """``science`` as written: what every box contains. Masses log10(Msun), no h."""

    input: str | None = None
    cleaning: str | None = None
    realizations: Realizations
    redshifts: Annotated[list[Redshift], Field(min_length=1)]

    @field_validator("input", "cleaning")
    @classmethod
    def _input_template(cls, value):
        if value is not None:
            check_template(value, {"realization": 0, "redshift": 0.0})
        return value

    @field_validator("realizations")
    @classmethod
    def _distinct_realizations(cls, value):
        if isinstance(value, list) and len(set(value)) < len(value):
            repeated = sorted({r for r in value if value.count(r) > 1})
            raise ValueError(f"realizations repeat: {', '.join(map(str, repeated))}")
        return value

    @field_validator("redshifts")
    @classmethod
    def _distinct_snapshots(cls, value):
        names = [f"{z:.3f}" for z in value]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"redshifts repeat at 3 decimals (task names): {', '.join(repeated)}")
        return value

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo):
        fail = record_problem
        if self.source in PATH_SOURCES and self.input is None:
            fail(info, ("science", "input"), f"required for source {self.source!r}: a path "
                 "template over {realization} and {redshift}")  # fmt: skip
        if self.source not in PATH_SOURCES and self.input is not None:
            fail(info, ("science", "input"), f"not used by source {self.source!r}")
        if self.source != "abacus" and self.cleaning is not None:
            fail(info, ("science", "cleaning"), f"cleaned catalogs are AbacusSummit's: not "
                 f"used by source {self.source!r}")  # fmt: skip
        if self.source == "synthetic" and self.n_hosts is None and self.box_size is None:
            fail(info, ("science", "n_hosts"), "required for source 'synthetic' (or box_size)")
        if self.n_hosts is not None and self.box_size is not None:
            fail(info, ("science", "box_size"), "give one of n_hosts and box_size, not both")
        for key in ("n_hosts", "box_size"):
            if self.source != "synthetic" and getattr(self, key) is not None:
                fail(info, ("science", key), f"not used by source {self.source!r}")
        if self.host_fraction is not None and self.box_size is None:
            fail(info, ("science", "host_fraction"), "only with box_size (a fraction of the "
                 "hosts the mass function puts in the box)")  # fmt: skip
        low, high = SYNTHETIC_MHOST_RANGE
        cut = self.log10_mhost_min_msun
        if self.source == "synthetic" and cut is not None and not low <= cut <= high:
            fail(info, ("science", "log10_mhost_min_msun"), f"expected a host mass cut in "
                 f"[{low:g}, {high:g}] (the synthetic mass function's), got {cut!r}")  # fmt: skip
        allowed = model_parameters(self.model)
        for key in self.model_params:
            if key not in allowed:
                fail(info, ("science", "model_params", key), f"not a parameter of model "
                     f"{self.model!r}; expected one of: {', '.join(allowed)}")  # fmt: skip
        return self

    def realization_list(self) -> list[int]:
        r = self.realizations
        return list(r) if isinstance(r, list) else r.values()


class Science(_ScienceValues):
    """The merged campaign's science: realizations expanded, input resolved. Masses
    log10(Msun), no h; ``None`` cut: none (synthetic: 11)."""

    input: str | None = None  # absolute, environment expanded; fields realization, redshift
    cleaning: str | None = None  # the same, for the cleaning root (abacus only)
    realizations: tuple[int, ...]
    redshifts: tuple[float, ...]

    def input_path(self, realization: int, redshift: float) -> str | None:
        """The halo catalog of one box, or None for synthetic halos."""
        if self.input is None:
            return None
        return self.input.format(realization=realization, redshift=redshift)

    def cleaning_path(self, realization: int, redshift: float) -> str | None:
        """The cleaning root of one box's cleaned catalog, or None: raw halos."""
        if self.cleaning is None:
            return None
        return self.cleaning.format(realization=realization, redshift=redshift)


# ---------------------------------------------------------------- execution (Parsl)


class ExecutionValues(_Section):
    """How tasks run: retries, backoff and walltime in seconds, concurrency, output."""

    retries: NonNegInt = 2
    backoff_base_s: Seconds = 10.0
    backoff_cap_s: Seconds = 600.0
    task_walltime_s: Seconds = 3600.0
    max_in_flight: PosInt = 64
    compression: Literal[COMPRESSIONS] = "gzip"
    chunk_hosts: PosInt = CHUNK_HOSTS
    # files are created 0666 & ~umask (directories 0777 & ~umask) by the driver and tasks
    umask: Annotated[str, Field(pattern=r"^0?[0-7]{3}$")] = "0022"
    # JAX's compilation cache, shared by campaigns ("": the user's, covmocks.galaxies.jaxenv)
    compilation_cache: str = ""
    # a driver holding boxes for want of disk space looks at the free space this often
    space_poll_s: Seconds = 10.0

    @field_validator("umask")
    @classmethod
    def _not_world_writable(cls, value):
        if not int(value, 8) & 0o002:
            raise ValueError(f"umask {value} lets anyone write the campaign's files: it must "
                             "mask others' write permission (e.g. 0022 or 0027)")  # fmt: skip
        return value


class ExecutorValues(_Section):
    """The Parsl executor: ``htex`` (HighThroughputExecutor) or ``mpi`` (MPIExecutor; also
    used, whatever ``kind`` says, when some task asks for more than one rank)."""

    kind: Literal["htex", "mpi"] = "htex"
    workers_per_node: PosInt = 1  # htex: tasks a node runs at once (workers)
    available_accelerators: NonNegInt | None = None  # htex: accelerators per node, one each
    mpi_tasks_per_block: PosInt = 1  # MPI executor: MPI tasks a block runs at once
    # htex: Parsl's cpu_affinity: "block" gives each worker its own cores (a node's cores over
    # its workers) and OMP_NUM_THREADS to match; "none": every worker sees every core
    cpu_affinity: Annotated[str, Field(pattern=AFFINITY_PATTERN)] = "none"
    # Parsl's heartbeats (whole seconds): a dead worker is seen within one period; a block
    # (its worker pool) silent for the threshold is lost and its tasks re-run
    heartbeat_period_s: PosInt = 5
    heartbeat_threshold_s: PosInt = 30

    @field_validator("heartbeat_threshold_s")
    @classmethod
    def _threshold_over_period(cls, value, info: ValidationInfo):
        period = info.data.get("heartbeat_period_s")
        if period is not None and value <= period:
            raise ValueError(f"must exceed heartbeat_period_s ({period}): a block is lost "
                             "only once heartbeats it should have sent are missing")  # fmt: skip
        return value


class ProviderValues(_Section):
    """The Parsl provider: where blocks (pilot jobs) of nodes come from."""

    kind: Literal["local", "slurm"] = "local"
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    partition: str | None = None
    walltime: Annotated[str, Field(pattern=WALLTIME_PATTERN)] = "01:00:00"
    status_polling_s: Seconds = 60.0  # how often Slurm is asked about the blocks (squeue)
    nodes_per_block: PosInt = 1
    init_blocks: NonNegInt = 1
    min_blocks: NonNegInt = 0
    max_blocks: PosInt = 1
    worker_init: str = ""
    scheduler_options: str = ""
    cores_per_node: PosInt | None = None  # Slurm: the block asks for these CPUs per node
    gpus_per_node: NonNegInt = 0
    exclusive: bool | None = None  # Slurm: whole nodes; default: yes when gpus_per_node > 0


class LauncherValues(_Section):
    """The Parsl launchers: how a block starts its workers (``kind``), and how an MPI task
    starts its ranks (``mpi_launcher``)."""

    kind: Literal["srun", "simple"] = "simple"
    mpi_launcher: Literal["srun", "mpiexec"] = "mpiexec"


class Execution(ExecutionValues):
    """Merged execution settings (seconds for times) and the Parsl executor, provider and
    launcher they run on."""

    executor: ExecutorValues = ExecutorValues()
    provider: ProviderValues = ProviderValues()
    launcher: LauncherValues = LauncherValues()


class ExecutionSection(Execution):
    """``execution``: the machine profile, and values that override the profile's."""

    profile: str = "local"


# ---------------------------------------------------------------- resources


class ResourceValues(_Section):
    """Per task: nodes, MPI ranks and GPUs (totals for the task)."""

    nodes: PosInt = 1  # nodes per task
    ranks: PosInt = 1  # MPI ranks per task, over all its nodes (1: no MPI)
    gpus: NonNegInt = 0  # GPUs per task, over all its nodes


class SnapshotResources(ResourceValues):
    """Per-snapshot overrides; ``walltime_s`` replaces ``execution.task_walltime_s``."""

    walltime_s: Seconds | None = None  # this snapshot's task walltime, seconds


class Resources(ResourceValues):
    """What one task gets: nodes, MPI ranks and GPUs (task totals), walltime in seconds."""

    walltime_s: Seconds


class ResourcesSection(ResourceValues):
    """``resources``: per-task resources, and overrides keyed by snapshot redshift."""

    by_redshift: dict[Redshift, SnapshotResources] = {}


# ---------------------------------------------------------------- profiles, outputs, file


class CostFigures(_Section):
    """Per-task cost for ``covmocks estimate`` before any task has run."""

    seconds_per_task: Seconds = 600.0  # a task's wall time, an estimate until measured
    seconds_by_redshift: dict[Redshift, Seconds] = {}  # per-snapshot wall time, overrides
    gigabytes_per_task: Annotated[float, Field(ge=0)] = 1.0  # output of one task, GB


class ProfileFile(_Section):
    """A machine profile: Parsl executor, provider and launcher, and defaults for execution
    and resources."""

    description: str = ""
    executor: ExecutorValues = ExecutorValues()
    provider: ProviderValues = ProviderValues()
    launcher: LauncherValues = LauncherValues()
    execution: ExecutionValues = ExecutionValues()
    resources: ResourceValues = ResourceValues()
    cost: CostFigures = CostFigures()


class Profile(_Section):
    """The campaign's machine profile: ``name`` as given in ``execution.profile``, the file
    it names, its description and cost figures (its other sections are merged into the
    campaign's execution and resources)."""

    name: str
    path: Path
    description: str
    cost: CostFigures


class OutputsSection(_Section):
    """``outputs``: the campaign directory is ``<base>/<directory>``."""

    base: str = "campaign-runs"
    directory: str = "{name}_{version}"

    @field_validator("base")
    @classmethod
    def _base(cls, value):
        check_template(value, {})
        return value

    @field_validator("directory")
    @classmethod
    def _directory(cls, value):
        check_template(value, {"name": "n", "version": "1"})
        return value
