"""Campaign files: YAML -> validated configuration, merged over a machine profile.

A campaign file has five sections, ``campaign``, ``science``, ``execution``, ``resources``
and ``outputs`` (reference: docs/campaigns.md). Values come from three tiers, later wins:
the machine profile (``covmocks/configs/<name>.yaml`` or a file path) -> the campaign
file -> per-snapshot overrides (``resources.by_redshift``); keys set nowhere take the
built-in defaults. Every merged value remembers where it came from.

Problems are collected, not raised one at a time: each names the file, the YAML line,
the key path and what was expected, and all of them are raised together as one
``ConfigError``. Relative paths in a campaign file are relative to the file's
directory; ``${NAME}`` and ``${NAME:-default}`` expand environment variables.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import os
import re
import string
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from covmocks.catalog import COMPRESSIONS
from covmocks.errors import ConfigError
from covmocks.halos import SOURCE_KINDS
from covmocks.model import MODELS

CONFIGS = Path(__file__).resolve().parent / "configs"
MAX_REALIZATIONS = 1_000_000
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
WALLTIME_PATTERN = r"^\d+:\d{2}:\d{2}$"
PATH_SOURCES = ("abacus", "hdf5")
SECTIONS = ("campaign", "science", "execution", "profile", "resources", "outputs")


# ---------------------------------------------------------------- YAML with line numbers


def format_path(path: tuple) -> str:
    """``('science', 'redshifts', 3)`` -> ``science.redshifts[3]``."""
    text = ""
    for part in path:
        if isinstance(part, str) and part.isidentifier():
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]" if isinstance(part, str) else f"[{part}]"
    return text or "(top level)"


@dataclasses.dataclass(frozen=True)
class YamlDoc:
    """A parsed YAML file: its data and the 1-based line of every key path it spells out."""

    label: str
    data: Any
    lines: dict[tuple, int]

    def line(self, path: tuple) -> int | None:
        """The line of ``path``, else of its nearest enclosing key in the file."""
        for n in range(len(path), 0, -1):
            if path[:n] in self.lines:
                return self.lines[path[:n]]
        return None

    def problem(self, path: tuple, message: str) -> tuple[int, str]:
        """``(line, 'file:line key.path: message')``; line 0 where unknown."""
        line = self.line(path)
        where = f"{self.label}:{line}" if line else self.label
        return line or 0, f"{where} {format_path(path)}: {message}"


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _yaml_problem(label: str, exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"{label}:{mark.line + 1}:{mark.column + 1}" if mark else label
    what = "; ".join(_one_line(Exception(t)) for t in (exc.context, exc.problem) if t)
    return f"{where}: invalid YAML: {what}"


def _walk(loader, node, path: tuple, lines: dict, problems: list, label: str, visited: set):
    """Record the line of every key path under ``node``; report duplicate keys. A node
    reached again through an alias is not walked again (no blow-up, no recursion)."""
    if id(node) in visited:
        return
    visited.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = loader.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                message = f"{label}:{line} {format_path(path + (key,))}: duplicate key"
                problems.append((line, message))
            seen.add(key)
            lines[path + (key,)] = line
            _walk(loader, value_node, path + (key,), lines, problems, label, visited)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[path + (i,)] = item.start_mark.line + 1
            _walk(loader, item, path + (i,), lines, problems, label, visited)


def parse_yaml(text: str, label: str) -> YamlDoc:
    """Parse YAML text; syntax problems become a ``ConfigError`` naming ``label`` and line."""
    loader = None
    problems: list = []
    try:
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
        if node is None:
            raise ConfigError([f"{label}: the file is empty; expected a campaign mapping"])
        lines: dict = {}
        _walk(loader, node, (), lines, problems, label, set())
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        raise ConfigError([_yaml_problem(label, exc)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{label}: invalid YAML: {_one_line(exc)}"]) from None
    except (ValueError, OverflowError, RecursionError) as exc:
        raise ConfigError([f"{label}: invalid YAML value: {_one_line(exc)}"]) from None
    finally:
        if loader is not None:
            loader.dispose()
    if problems:
        raise ConfigError([text for _, text in sorted(problems, key=lambda p: p[0])])
    return YamlDoc(label, data, lines)


def read_yaml(path: Path, label: str | None = None) -> tuple[YamlDoc, str]:
    """Read and parse a YAML file -> (document, text exactly as in the file)."""
    label = label or str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{label}: no such file"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{label}: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None
    except OSError as exc:
        raise ConfigError([f"{label}: cannot read: {exc.strerror}"]) from None
    return parse_yaml(text, label), text


# ---------------------------------------------------------------- templates


_ENV = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def expand_env(text: str) -> str:
    """Replace ``${NAME}`` and ``${NAME:-default}`` with environment values."""

    def value(match: re.Match) -> str:
        found = os.environ.get(match[1], match[2])
        if found is None:
            raise ValueError(
                f"environment variable {match[1]} is not set (write ${{{match[1]}:-DEFAULT}} "
                "to give a default)"
            )
        return found

    return _ENV.sub(value, text)


def check_template(template: str, fields: dict) -> None:
    """Raise ValueError unless ``template`` formats with exactly these field names."""
    text = expand_env(template)
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
        unknown = sorted({re.split(r"[.\[]", name)[0] for name in names} - set(fields))
        if not unknown:
            text.format(**fields)
    except (ValueError, KeyError, IndexError, AttributeError, TypeError) as exc:
        raise ValueError(f"bad template {template!r}: {_one_line(exc)}") from None
    if unknown:
        allowed = ", ".join(f"{{{f}}}" for f in fields) or "no fields"
        shown = ", ".join(f"{{{u}}}" for u in unknown)
        raise ValueError(f"template {template!r} uses {shown}; allowed: {allowed}")


def resolve_path(text: str, base_dir: Path) -> str:
    """Expand the environment and ``~``; a relative path joins ``base_dir``."""
    path = os.path.expanduser(expand_env(text))
    return os.path.normpath(path if os.path.isabs(path) else os.path.join(base_dir, path))


# ---------------------------------------------------------------- file schema


def _fail(info: ValidationInfo, path: tuple, message: str) -> None:
    """Record a cross-field problem at ``path``; the loader reports them with the rest."""
    if info.context is None:
        raise ValueError(f"{format_path(path)}: {message}")
    info.context.append((path, message))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


Name = Annotated[str, Field(pattern=NAME_PATTERN)]
NonNegInt = Annotated[int, Field(ge=0)]
PosInt = Annotated[int, Field(ge=1)]
Seconds = Annotated[float, Field(gt=0)]
Redshift = Annotated[float, Field(ge=0)]


class CampaignSection(_Section):
    """``campaign``: names the campaign and fixes its random seed."""

    name: Name
    version: Name = "1"
    description: str = ""
    tags: list[str] = []
    seed: Annotated[int, Field(ge=0, lt=2**31)]

    @field_validator("version", mode="before")
    @classmethod
    def _number_as_text(cls, value):
        return (
            str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
        )


class RealizationRange(_Section):
    """Realizations ``first`` to ``last``, both included, minus ``exclude``."""

    first: NonNegInt
    last: NonNegInt
    exclude: list[NonNegInt] = []

    @model_validator(mode="after")
    def _bounds(self):
        if self.last < self.first:
            raise ValueError(f"last ({self.last}) is before first ({self.first})")
        if self.last - self.first >= MAX_REALIZATIONS:
            raise ValueError(f"more than {MAX_REALIZATIONS} realizations")
        outside = [r for r in self.exclude if not self.first <= r <= self.last]
        if outside:
            raise ValueError(f"exclude lists {outside}, outside {self.first}..{self.last}")
        return self

    def values(self) -> list[int]:
        skip = set(self.exclude)
        return [r for r in range(self.first, self.last + 1) if r not in skip]


def _realizations_kind(value) -> str | None:
    if isinstance(value, list):
        return "<list>"
    return "<range>" if isinstance(value, dict | RealizationRange) else None


TAGS = ("<list>", "<range>")
Realizations = Annotated[
    Annotated[list[NonNegInt], Tag("<list>")] | Annotated[RealizationRange, Tag("<range>")],
    Discriminator(
        _realizations_kind,
        custom_error_type="realizations",
        custom_error_message="expected a list of integers or a mapping {first, last, exclude}",
    ),
]


def model_parameters(model: str) -> list[str]:
    """Constructor parameter names of a registered galaxy model (no instantiation)."""
    names = inspect.signature(MODELS[model].__init__).parameters
    return [n for n in names if n != "self"]


class ScienceSection(_Section):
    """``science``: what every box contains. Masses log10(Msun), no h."""

    source: Literal[SOURCE_KINDS]
    input: str | None = None
    n_hosts: PosInt | None = None
    realizations: Realizations
    redshifts: Annotated[list[Redshift], Field(min_length=1)]
    log10_mhost_min_msun: float | None = None
    model: str = "diffsky_sfh"
    model_params: dict[str, Any] = {}

    @field_validator("input")
    @classmethod
    def _input_template(cls, value):
        if value is not None:
            check_template(value, {"realization": 0, "redshift": 0.0})
        return value

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
        if self.source in PATH_SOURCES and self.input is None:
            _fail(info, ("science", "input"), f"required for source {self.source!r}: a path "
                  "template over {realization} and {redshift}")  # fmt: skip
        if self.source not in PATH_SOURCES and self.input is not None:
            _fail(info, ("science", "input"), f"not used by source {self.source!r}")
        if self.source == "synthetic" and self.n_hosts is None:
            _fail(info, ("science", "n_hosts"), "required for source 'synthetic'")
        if self.source != "synthetic" and self.n_hosts is not None:
            _fail(info, ("science", "n_hosts"), f"not used by source {self.source!r}")
        allowed = model_parameters(self.model)
        for key in self.model_params:
            if key not in allowed:
                _fail(info, ("science", "model_params", key), f"not a parameter of model "
                      f"{self.model!r}; expected one of: {', '.join(allowed)}")  # fmt: skip
        return self

    def realization_list(self) -> list[int]:
        r = self.realizations
        return list(r) if isinstance(r, list) else r.values()


class ExecutionValues(_Section):
    """How tasks run: retries, backoff and walltime in seconds, concurrency, output."""

    retries: NonNegInt = 2
    backoff_base_s: Seconds = 10.0
    backoff_cap_s: Seconds = 600.0
    task_walltime_s: Seconds = 3600.0
    max_in_flight: PosInt = 64
    compression: Literal[COMPRESSIONS] = "gzip"
    chunk_hosts: PosInt = 65536


class ProviderValues(_Section):
    """Where workers come from (Parsl provider and launcher settings)."""

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
    workers_per_node: PosInt = 1
    available_accelerators: NonNegInt | None = None
    launcher: Literal["srun", "simple"] = "simple"
    mpi_launcher: Literal["srun", "mpiexec"] = "mpiexec"


class ResourceValues(_Section):
    """Per task: nodes, MPI ranks and GPUs (totals for the task)."""

    nodes: PosInt = 1
    ranks: PosInt = 1
    gpus: NonNegInt = 0


class SnapshotResources(ResourceValues):
    """Per-snapshot overrides; ``walltime_s`` replaces ``execution.task_walltime_s``."""

    walltime_s: Seconds | None = None


class CostFigures(_Section):
    """Per-task cost for ``covmocks estimate`` before any task has run."""

    seconds_per_task: Seconds = 600.0
    seconds_by_redshift: dict[Redshift, Seconds] = {}
    gigabytes_per_task: Annotated[float, Field(ge=0)] = 1.0


class ProfileFile(_Section):
    """A machine profile: executor, provider, and defaults for execution and resources."""

    description: str = ""
    executor: Literal["htex", "mpi"] = "htex"
    provider: ProviderValues = ProviderValues()
    execution: ExecutionValues = ExecutionValues()
    resources: ResourceValues = ResourceValues()
    cost: CostFigures = CostFigures()


class ExecutionSection(ExecutionValues):
    """``execution``: the machine profile, and values that override the profile's."""

    profile: str = "local"
    provider: ProviderValues = ProviderValues()


class ResourcesSection(ResourceValues):
    """``resources``: per-task resources, and overrides keyed by snapshot redshift."""

    by_redshift: dict[Redshift, SnapshotResources] = {}


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


class CampaignFile(_Section):
    """The whole campaign file."""

    campaign: CampaignSection
    science: ScienceSection
    execution: ExecutionSection = ExecutionSection()
    resources: ResourcesSection = ResourcesSection()
    outputs: OutputsSection = OutputsSection()

    @model_validator(mode="after")
    def _overrides_match_snapshots(self, info: ValidationInfo):
        names = {f"{z:.3f}" for z in self.science.redshifts}
        for z in self.resources.by_redshift:
            if f"{z:.3f}" not in names:
                _fail(info, ("resources", "by_redshift", z), "not one of science.redshifts")
        return self


# ---------------------------------------------------------------- validation messages

_EXPECTED = {
    "float_type": "a number",
    "int_type": "an integer",
    "string_type": "a string",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "finite_number": "a finite number",
    "greater_than": "a number greater than {gt}",
    "greater_than_equal": "a number at least {ge}",
    "less_than": "a number less than {lt}",
    "less_than_equal": "a number at most {le}",
    "too_short": "at least {min_length} item(s)",
    "invalid_key": "text keys",
    "realizations": "a list of integers or a mapping {{first, last, exclude}}",
}
_PATTERNS = {
    NAME_PATTERN: "a name of letters, digits, '.', '_' and '-'",
    WALLTIME_PATTERN: "a walltime HH:MM:SS",
}


def _show(value) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return str(value).lower()
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _model_classes(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _model_classes(arg)]


def _allowed_keys(cls: type[BaseModel], path: tuple) -> list[str]:
    """Keys the section at ``path`` accepts (mapping keys and list indices pass through)."""
    models = [cls]
    for part in path:
        inner = [
            m
            for model in models
            if part in model.model_fields
            for m in _model_classes(model.model_fields[part].annotation)
        ]
        models = inner or models
    return [key for model in models for key in model.model_fields]


def _message(cls: type[BaseModel], path: tuple, error: dict) -> str:
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "missing":
        return "missing required key"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(cls, path[:-1])
        close = difflib.get_close_matches(str(path[-1]), allowed, n=1)
        if close:
            return f"unknown key; did you mean {close[0]!r}?"
        return f"unknown key; expected one of: {', '.join(allowed)}"
    if kind in ("value_error", "assertion_error"):
        return _one_line(ctx["error"])
    if kind == "literal_error":
        expected = f"one of {ctx['expected']}"
    elif kind == "string_pattern_mismatch":
        expected = _PATTERNS.get(ctx["pattern"], f"text matching {ctx['pattern']}")
    elif kind in _EXPECTED:
        expected = _EXPECTED[kind].format(**ctx)
    else:
        return error["msg"]
    return f"expected {expected}, got {_show(error['input'])}"


def validate(cls: type[BaseModel], doc: YamlDoc, problems: list) -> BaseModel | None:
    """Validate ``doc`` against ``cls``; add ``(line, text)`` problems; None if any."""
    found: list = []
    mine = []
    try:
        model = cls.model_validate(doc.data, context=found)
    except ValidationError as exc:
        model = None
        for error in exc.errors():
            path = tuple(p for p in error["loc"] if p not in TAGS and p != "[key]")
            mine.append(doc.problem(path, _message(cls, path, error)))
    mine.extend(doc.problem(path, message) for path, message in found)
    problems.extend(sorted(mine, key=lambda p: p[0]))
    return None if mine else model


def _raise(problems: list) -> None:
    if problems:
        raise ConfigError([text for _, text in problems])


# ---------------------------------------------------------------- merged campaign


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


@dataclasses.dataclass(frozen=True)
class Science:
    """What every task computes. Masses log10(Msun), no h; ``None`` cut: none (synthetic: 11)."""

    source: str
    input_template: str | None  # absolute, environment expanded; fields realization, redshift
    n_hosts: int | None
    realizations: tuple[int, ...]
    redshifts: tuple[float, ...]
    log10_mhost_min_msun: float | None
    model: str
    model_params: dict

    def input_path(self, realization: int, redshift: float) -> str | None:
        """The halo catalog of one box, or None for synthetic halos."""
        if self.input_template is None:
            return None
        return self.input_template.format(realization=realization, redshift=redshift)


@dataclasses.dataclass(frozen=True)
class Execution:
    """Merged execution settings; seconds for times. ``profile``: the machine profile as a
    dict (name, path, description, executor, provider settings merged, cost figures)."""

    profile: dict
    retries: int
    backoff_base_s: float
    backoff_cap_s: float
    task_walltime_s: float
    max_in_flight: int
    compression: str
    chunk_hosts: int


@dataclasses.dataclass(frozen=True)
class Resources:
    """What one task gets: nodes, MPI ranks and GPUs (task totals), walltime in seconds."""

    nodes: int
    ranks: int
    gpus: int
    walltime_s: float


def snapshot_name(redshift: float) -> str:
    """``1.1`` -> ``'1.100'``: how a redshift appears in task names and file names."""
    return f"{redshift:.3f}"


@dataclasses.dataclass(frozen=True)
class Campaign:
    """A validated campaign: merged configuration, its provenance, and the plan's inputs."""

    path: Path
    text: str
    name: str
    version: str
    description: str
    tags: tuple[str, ...]
    seed: int
    directory: Path
    science: Science
    execution: Execution
    resources: Resources
    by_redshift: dict[str, Resources]  # snapshot_name(z) -> resources of that snapshot
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

    def resources_for(self, redshift: float) -> Resources:
        return self.by_redshift.get(snapshot_name(redshift), self.resources)

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

    def plan(self):
        """The tasks and their states now (``covmocks.plan.make_plan``)."""
        from covmocks.plan import make_plan

        return make_plan(self)

    def run(self, block: bool = True, monitoring: bool = True):
        """Run the campaign: here until done (returns outcome counts), or, with
        ``block=False``, in a driver process (returns a ``covmocks.run.RunHandle``)."""
        from covmocks.run import RunHandle, Runner

        if not block:
            return RunHandle(self, monitoring=monitoring)
        return Runner(self, monitoring=monitoring).run()

    def status(self):
        """Counts by state, throughput, ETA and failures (``covmocks.state.Status``)."""
        from covmocks.state import campaign_status

        return campaign_status(self)


def profile_names() -> list[str]:
    """Names of the machine profiles shipped in ``covmocks/configs``."""
    return sorted(p.stem for p in CONFIGS.glob("*.yaml"))


def profile_path(ref: str, base_dir: Path) -> Path:
    """A profile name -> its shipped file; a path (has '/' or ends .yaml) -> that file."""
    if "/" in ref or ref.endswith((".yaml", ".yml")):
        return Path(resolve_path(ref, base_dir))
    return CONFIGS / f"{ref}.yaml"


def _profile_ref(data) -> str | None:
    execution = data.get("execution", {}) if isinstance(data, dict) else None
    ref = execution.get("profile", "local") if isinstance(execution, dict) else None
    return ref if isinstance(ref, str) else None


def _load_profile(ref: str | None, base_dir: Path, doc: YamlDoc, problems: list):
    """-> (ProfileFile, its YamlDoc, its path), or (None, [problems in the profile file])."""
    if ref is None:
        return None, []
    try:
        path = profile_path(ref, base_dir)
    except ValueError as exc:
        problems.append(doc.problem(("execution", "profile"), str(exc)))
        return None, []
    if not path.is_file():
        problems.append(doc.problem(("execution", "profile"), (
            f"no machine profile {ref!r} ({path} not found); expected one of "
            f"{', '.join(profile_names())} or a path to a profile file"
        )))  # fmt: skip
        return None, []
    try:
        pdoc, _ = read_yaml(path)
    except ConfigError as exc:
        return None, [(0, p) for p in exc.problems]
    found: list = []
    profile = validate(ProfileFile, pdoc, found)
    return (None if profile is None else (profile, pdoc, path)), found


def _merge(cf: CampaignFile, doc: YamlDoc, profile: ProfileFile, pdoc: YamlDoc) -> dict:
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

    ex, pex = ("execution",), ("execution", "provider")
    from_file(file, ("campaign",), cf.campaign)
    from_file(file, ("science",), cf.science)
    merged(ex, ["profile"], [(file, ex, cf.execution)])
    merged(
        ex, ExecutionValues.model_fields, [(file, ex, cf.execution), (prof, ex, profile.execution)]
    )
    provider = [(file, pex, cf.execution.provider), (prof, ("provider",), profile.provider)]
    merged(pex, ProviderValues.model_fields, provider)
    merged(("profile",), ["description", "executor"], [(prof, (), profile)])
    from_file(prof, ("profile", "cost"), profile.cost, ("cost",))
    res = ("resources",)
    merged(
        res,
        ResourceValues.model_fields,
        [(file, res, cf.resources), (prof, res, profile.resources)],
    )
    for z, values in cf.resources.by_redshift.items():
        for key in SnapshotResources.model_fields:
            source = override.source(res + ("by_redshift", z, key))
            if source:
                entries[res + ("by_redshift", z, key)] = Entry(getattr(values, key), source)
    from_file(file, ("outputs",), cf.outputs)
    return entries


def _build(path: Path, text: str, doc: YamlDoc) -> Campaign:
    problems: list = []
    cf = validate(CampaignFile, doc, problems)
    base_dir = path.resolve().parent
    loaded, profile_problems = _load_profile(_profile_ref(doc.data), base_dir, doc, problems)
    _raise(sorted(problems, key=lambda p: p[0]) + profile_problems)
    profile, pdoc, ppath = loaded
    entries = _merge(cf, doc, profile, pdoc)

    def value(*key):
        return entries[key].value

    base_s, cap_s = value("execution", "backoff_base_s"), value("execution", "backoff_cap_s")
    if base_s > cap_s:
        cap_from = entries[("execution", "backoff_cap_s")].source
        problems.append(doc.problem(("execution", "backoff_base_s"),
                        f"{base_s} s exceeds backoff_cap_s ({cap_s} s, {cap_from})"))  # fmt: skip
    try:  # expanded again: the environment may have changed since validation
        name = cf.outputs.directory.format(name=cf.campaign.name, version=cf.campaign.version)
        directory = Path(resolve_path(cf.outputs.base, base_dir)) / name
        template = cf.science.input and resolve_path(cf.science.input, base_dir)
    except ValueError as exc:
        problems.append((0, f"{doc.label}: {exc}"))
    _raise(problems)
    entries[("profile", "path")] = Entry(str(ppath), "derived from execution.profile")
    entries[("outputs", "campaign_dir")] = Entry(str(directory), "derived")
    if template:
        entries[("science", "input_resolved")] = Entry(template, "derived")
    entries = dict(sorted(entries.items(), key=lambda item: SECTIONS.index(item[0][0])))

    execution = Execution(
        profile={
            "name": cf.execution.profile,
            "path": str(ppath),
            "description": value("profile", "description"),
            "executor": value("profile", "executor"),
            "provider": {k: value("execution", "provider", k) for k in ProviderValues.model_fields},
            "cost": profile.cost.model_dump(),
        },
        **{k: value("execution", k) for k in ExecutionValues.model_fields},
    )
    base = Resources(
        **{k: value("resources", k) for k in ResourceValues.model_fields},
        walltime_s=execution.task_walltime_s,
    )
    by_redshift = {}
    for z, values in cf.resources.by_redshift.items():
        changes = {k: getattr(values, k) for k in SnapshotResources.model_fields
                   if ("resources", "by_redshift", z, k) in entries}  # fmt: skip
        by_redshift[snapshot_name(z)] = dataclasses.replace(base, **changes)
    sci = cf.science
    realizations = sci.realization_list()
    return Campaign(
        path=path,
        text=text,
        name=cf.campaign.name,
        version=cf.campaign.version,
        description=cf.campaign.description,
        tags=tuple(cf.campaign.tags),
        seed=cf.campaign.seed,
        directory=directory,
        science=Science(
            source=sci.source,
            input_template=template,
            n_hosts=sci.n_hosts,
            realizations=tuple(realizations),
            redshifts=tuple(sci.redshifts),
            log10_mhost_min_msun=sci.log10_mhost_min_msun,
            model=sci.model,
            model_params=dict(sci.model_params),
        ),
        execution=execution,
        resources=base,
        by_redshift=by_redshift,
        entries=entries,
        science_record={
            "campaign.seed": cf.campaign.seed,
            "science.source": sci.source,
            "science.input": sci.input,
            "science.n_hosts": sci.n_hosts,
            "science.realizations": sorted(realizations),
            "science.redshifts": sorted(float(snapshot_name(z)) for z in sci.redshifts),
            "science.log10_mhost_min_msun": sci.log10_mhost_min_msun,
            "science.model": sci.model,
            "science.model_params": sci.model_params,
        },
    )
