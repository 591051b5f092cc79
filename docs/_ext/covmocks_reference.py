"""Sphinx extension: the pages of the covmocks site that are generated from the code at
build time, so that they cannot drift from it.

Directives:

- ``covmocks-campaign-reference`` (argument ``campaign`` or ``profile``): every section and
  key of a campaign file (``covmocks.campaign.document.CampaignFile``) or of a machine
  profile (``covmocks.campaign.schema.ProfileFile``), walked from the pydantic models:
  type, default, constraints and description. The description is the field's
  ``description``, else the comment on the field's line in the model's source, else the
  meaning given for the key in the guide's tables (``docs/campaigns.md``).
- ``covmocks-file-layout``: in ``covmocks_schema`` (the format page's tables, checked both
  ways against files the package's writers wrote).
- ``covmocks-profiles``: the machine profiles shipped in ``covmocks/configs/``.
- ``covmocks-model-parameters``: every registered model's parameters, defaults and meanings.
- ``covmocks-api``: ``automodule`` of every module of the package (for an ``.rst`` page).

At ``builder-inited`` the guide's key tables (``docs/campaigns.md``) are checked against
the models: a key the models do not have, a section key missing from the guide, or a
default that differs, is a warning.
"""

from __future__ import annotations

import inspect
import json
import pkgutil
import re
import types
import typing
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from pydantic import BaseModel
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

log = logging.getLogger(__name__)
DOCS = Path(__file__).resolve().parents[1]
GUIDE = DOCS / "campaigns.md"

# ---------------------------------------------------------------- table helpers


def _inline(text: str) -> list[nodes.Node]:
    """Text with `backquoted` parts as literals."""
    out: list[nodes.Node] = []
    for i, part in enumerate(re.split(r"`([^`]*)`", text)):
        if part:
            out.append(nodes.literal(part, part) if i % 2 else nodes.Text(part))
    return out


def _table(headers: list[str], rows: list[list[str]], widths=None) -> nodes.table:
    table = nodes.table(classes=["covmocks-generated"])
    group = nodes.tgroup(cols=len(headers))
    table += group
    for w in widths or [1] * len(headers):
        group += nodes.colspec(colwidth=w)
    head = nodes.thead()
    group += head
    body = nodes.tbody()
    group += body
    for target, cells in ((head, headers), *((body, r) for r in rows)):
        row = nodes.row()
        for cell in cells:
            entry = nodes.entry()
            entry += nodes.paragraph("", "", *_inline(str(cell)))
            row += entry
        target += row
    return table


def _section(title: str, ident: str) -> nodes.section:
    sec = nodes.section(ids=[nodes.make_id(ident)])
    sec += nodes.title(title, "", *_inline(title))
    return sec


# ---------------------------------------------------------------- pydantic models -> text


def _constraints(metadata) -> list[str]:
    out = []
    for m in metadata:
        if hasattr(m, "metadata") and not isinstance(m, type):  # a FieldInfo in Annotated
            out += _constraints(m.metadata)
            continue
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(m, attr, None)
            if value is not None:
                out.append(f"{sign} {_number(value)}")
        if getattr(m, "min_length", None) is not None:
            out.append(f"at least {m.min_length} item{'s' * (m.min_length != 1)}")
        if getattr(m, "max_length", None) is not None:
            out.append(f"at most {m.max_length} items")
        if getattr(m, "pattern", None) is not None:
            out.append(f"matches `{m.pattern}`")
    return out


def _number(value) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, int) and value >= 2**16 and value & (value - 1) == 0:
        return f"2^{value.bit_length() - 1}"
    return str(value)


SCALARS = {int: "integer", float: "number", str: "text", bool: "true/false",
           typing.Any: "any", Path: "path", type(None): "null"}  # fmt: skip


def type_text(tp, links: dict) -> str:
    """Readable type of an annotation; nested models are named by their key path."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        base = type_text(args[0], links)
        extra = _constraints(args[1:])
        return f"{base} ({', '.join(extra)})" if extra else base
    if origin in (typing.Union, types.UnionType):
        parts = [type_text(a, links) for a in args if a is not type(None)]
        text = " or ".join(parts)
        return f"{text} or null" if type(None) in args else text
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin in (list, tuple):
        item = [a for a in args if a is not Ellipsis]
        return f"list of {type_text(item[0], links)}" if item else "list"
    if origin is dict:
        return f"mapping {type_text(args[0], links)} -> {type_text(args[1], links)}"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return f"mapping (`{links.get(tp, tp.__name__)}`)"
    return SCALARS.get(tp, getattr(tp, "__name__", str(tp)))


def default_text(field) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "`null`"
    if isinstance(value, BaseModel):
        return "see its keys"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float | int):
        return f"`{_number(value)}`"
    return f"`{json.dumps(value)}`"


def source_comments(cls) -> dict[str, str]:
    """``name: ...  # comment`` lines of a class body: field -> comment."""
    out = {}
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return out
    for line in lines:
        m = re.match(r"^    (\w+)\s*:[^#]*#\s*(.+)$", line)
        if m and not m.group(2).startswith("fmt:"):
            out[m.group(1)] = m.group(2).strip()
    return out


def nested_models(tp) -> list[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [m for a in typing.get_args(tp) for m in nested_models(a)]


def walk_models(root: type[BaseModel], prefix: str = "") -> list[tuple[str, type[BaseModel]]]:
    """(key path, model) of ``root`` and every model nested in it, depth first."""
    out = [(prefix, root)]
    for name, field in root.model_fields.items():
        for model in nested_models(field.annotation):
            is_list = typing.get_origin(field.annotation) is list or any(
                typing.get_origin(a) is list for a in typing.get_args(field.annotation)
            )
            is_map = typing.get_origin(field.annotation) is dict
            key = f"{prefix}.{name}" if prefix else name
            key += "[]" if is_list else ".<redshift>" if is_map else ""
            out += walk_models(model, key)
    return out


ROOTS = {
    "campaign": ("covmocks.campaign.document", "CampaignFile", "a campaign file"),
    "profile": ("covmocks.campaign.schema", "ProfileFile", "a machine profile file"),
}


def root_model(kind: str) -> type[BaseModel]:
    import importlib

    module, name, _ = ROOTS[kind]
    return getattr(importlib.import_module(module), name)


# ---------------------------------------------------------------- the guide's key tables


def guide_tables(path: Path = GUIDE) -> dict[str, dict[str, tuple[str, str]]]:
    """The key tables of ``docs/campaigns.md``: section -> key -> (default, meaning).
    The section of a table is the heading above it (`campaign`, `science`, ...) or, for the
    Parsl sections, the line "Executor keys:" and so on."""
    tables: dict[str, dict[str, tuple[str, str]]] = {}
    section = None
    for line in path.read_text().splitlines():
        heading = re.match(r"^##+ `?([\w ]+?)`?$", line)
        if heading:
            section = {"Machine profiles": "<profile>"}.get(heading.group(1), heading.group(1))
            continue
        lead = re.match(r"^(Executor|Provider|Launcher) keys:", line)
        if lead:
            section = f"execution.{lead.group(1).lower()}"
            continue
        if not line.startswith("| `") or section is None:
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        keys = re.findall(r"`([^`]+)`", cells[0])
        if len(cells) == 2:  # profile table: key | meaning
            cells = [cells[0], "", cells[1]]
        defaults = [d.strip() for d in cells[1].split(",")]
        if len(defaults) != len(keys):
            defaults = [cells[1]] * len(keys)
        for key, default in zip(keys, defaults, strict=True):
            sub, _, leaf = key.rpartition(".")
            where = f"{section}.{sub}" if sub else section
            tables.setdefault(where, {})[leaf] = (default, cells[2])
            if sub.endswith("[]"):  # `samples[].name` documents `samples` too
                tables.setdefault(section, {}).setdefault(sub[:-2], ("", ""))
    return tables


def _same_default(hand: str, field) -> bool | None:
    """Whether the guide's default agrees with the model's; None where it is prose."""
    text = hand.strip().strip("`")
    if not text:
        return None
    if text == "required":
        return field.is_required()
    if field.is_required():
        return False
    value = field.get_default(call_default_factory=True)
    if text in ("none", "null"):
        return value is None
    if text in ("[]", "{}"):
        return value in ([], {})
    if re.fullmatch(r'"[^"]*"', text):
        return value == text.strip('"')
    try:
        number = float(text)
    except ValueError:
        return value == text if re.fullmatch(r"[a-z_]+", text) and isinstance(value, str) else None
    return isinstance(value, int | float) and not isinstance(value, bool) and value == number


GUIDE_SECTIONS = {  # guide table -> key path of the model in the campaign or profile file
    "campaign": ("campaign", "campaign"),
    "science": ("campaign", "science"),
    "clustering": ("campaign", "clustering"),
    "clustering.samples[]": ("campaign", "clustering.samples[]"),
    "execution": ("campaign", "execution"),
    "execution.executor": ("campaign", "execution.executor"),
    "execution.provider": ("campaign", "execution.provider"),
    "execution.launcher": ("campaign", "execution.launcher"),
    "resources": ("campaign", "resources"),
    "outputs": ("campaign", "outputs"),
    "<profile>": ("profile", ""),
}


def check_guide(app=None) -> list[str]:
    """Problems of the guide's key tables against the models (each also logged)."""
    tables = guide_tables()
    models = {kind: dict(walk_models(root_model(kind))) for kind in ROOTS}
    problems = []
    for table, (kind, key) in GUIDE_SECTIONS.items():
        model = models[kind].get(key)
        hand = tables.get(table, {})
        if model is None:
            problems.append(f"the models have no section {key!r} (guide table {table!r})")
            continue
        for name in hand.keys() - model.model_fields.keys():
            problems.append(f"{GUIDE.name}: `{table}.{name}` is not a key of the models")
        for name in model.model_fields.keys() - hand.keys():
            problems.append(f"{GUIDE.name}: key `{key or 'profile'}.{name}` is missing from "
                            f"the guide's `{table}` table")  # fmt: skip
        for name in hand.keys() & model.model_fields.keys():
            same = _same_default(hand[name][0], model.model_fields[name])
            if same is False:
                problems.append(f"{GUIDE.name}: `{table}.{name}` default {hand[name][0]!r} "
                                f"differs from the model's "
                                f"{default_text(model.model_fields[name])}")  # fmt: skip
    for p in problems:
        log.warning(p, type="covmocks", subtype="guide")
    return problems


def guide_meaning(tables, kind: str, key: str, name: str) -> str:
    for table, (k, path) in GUIDE_SECTIONS.items():
        if k == kind and path == key:
            return tables.get(table, {}).get(name, ("", ""))[1].replace("\\|", "|")
    return ""


class CampaignReference(SphinxDirective):
    """Every section and key of a campaign (or profile) file, from the pydantic models."""

    required_arguments = 1

    def run(self):
        kind = self.arguments[0]
        root = root_model(kind)
        tables = guide_tables()
        self.env.note_dependency(str(GUIDE))
        walked = walk_models(root)
        links = {model: (path or kind) for path, model in walked}
        meanings = model_meanings(tables)
        out = []
        for path, model in walked:
            title = f"`{path}`" if path else f"The whole of {ROOTS[kind][2]}"
            sec = _section(title, f"{kind}-{path or 'file'}")
            doc = inspect.getdoc(model) or ""
            if doc:
                sec += nodes.paragraph("", "", *_inline(doc.replace("``", "`")))
            comments = source_comments(model)
            for base in model.__mro__[1:]:
                if isinstance(base, type) and issubclass(base, BaseModel):
                    comments = {**source_comments(base), **comments}
            rows = []
            for name, field in model.model_fields.items():
                description = (
                    field.description
                    or comments.get(name)
                    or guide_meaning(tables, kind, path, name)
                    or meanings.get((model, name))
                    or _model_summary(field)
                )
                rows.append([f"`{name}`", type_text(_annotation(field), links),
                             default_text(field), description or "(no description)"])  # fmt: skip
            sec += _table(["key", "type", "default", "description"], rows, [2, 3, 2, 6])
            out.append(sec)
        return out


def model_meanings(tables) -> dict:
    """(model class, key) -> the guide's meaning, for every class that has the key, so that a
    profile's sections (the same models as the campaign's) get the campaign's meanings."""
    out = {}
    for path, model in walk_models(root_model("campaign")):
        for name in model.model_fields:
            meaning = guide_meaning(tables, "campaign", path, name)
            for cls in model.__mro__:
                if meaning and name in getattr(cls, "model_fields", {}):
                    out.setdefault((cls, name), meaning)
    return out


def _model_summary(field) -> str:
    """The first sentence of the docstring of a field's nested model."""
    for model in nested_models(field.annotation):
        doc = (inspect.getdoc(model) or "").replace("``", "`").replace("\n", " ")
        if doc:
            return doc.split(". ")[0].rstrip(".") + "."
    return ""


def _annotation(field):
    """The field's annotation with its own constraints put back (pydantic moves them)."""
    tp = field.annotation
    return typing.Annotated[tp, *field.metadata] if field.metadata else tp


# ---------------------------------------------------------------- profiles, API


class Profiles(SphinxDirective):
    """The machine profiles shipped with the package."""

    def run(self):
        from covmocks.campaign.profiles import profile_names, profile_path
        from covmocks.campaign.schema import ProfileFile
        from covmocks.campaign.yamldoc import read_yaml

        rows = []
        for name in profile_names():
            path = profile_path(name, DOCS)
            self.env.note_dependency(str(path))
            doc, _ = read_yaml(path)
            p = ProfileFile.model_validate(doc.data)
            ex, pr, la = p.executor, p.provider, p.launcher
            where = (f"Slurm, qos `{pr.qos}`, constraint `{pr.constraint}`, {pr.nodes_per_block} "
                     f"node(s)/block, up to {pr.max_blocks} blocks of {pr.walltime}"
                     if pr.kind == "slurm" else "this computer")  # fmt: skip
            how = f"`{ex.kind}`, {ex.workers_per_node} worker(s)/node"
            if ex.available_accelerators:
                how += f", {ex.available_accelerators} accelerators"
            how += f"; launcher `{la.kind}`, MPI tasks by `{la.mpi_launcher}`"
            rows.append([f"`{name}`", p.description, where, how,
                         f"{_number(p.execution.task_walltime_s)} s, "
                         f"{p.resources.gpus} GPU(s)/task"])  # fmt: skip
        return [_table(["profile", "description", "blocks", "workers", "walltime, GPUs"],
                       rows, [2, 4, 4, 4, 2])]  # fmt: skip


class ModelParameters(SphinxDirective):
    """Each registered model's parameters (``covmocks.galaxies.registry.MODELS``): default,
    whether it changes a catalog (recorded, and locked in ``metadata/science.json``), and
    what it means (``covmocks.galaxies.params.MEANINGS``)."""

    def run(self):
        from covmocks.galaxies import params
        from covmocks.galaxies.registry import MODELS

        rows = []
        for entry in MODELS.values():
            for name in entry.parameters:
                default = params.DEFAULTS[name]
                shown = "none" if default is None else f"`{json.dumps(default)}`"
                rows.append([f"`{entry.name}` {entry.version}", f"`{name}`", shown,
                             "yes" if name in entry.recorded else "no",
                             params.MEANINGS[name]])  # fmt: skip
        headers = ["model", "parameter", "default", "changes catalogs", "meaning"]
        return [_table(headers, rows, [2, 3, 2, 2, 6])]


def api_modules() -> list[str]:
    import covmocks

    names = ["covmocks"]
    for info in pkgutil.walk_packages(covmocks.__path__, "covmocks."):
        names.append(info.name)
    return sorted(names)


class Api(SphinxDirective):
    """``automodule`` of every module of the package (use it in an ``.rst`` page)."""

    def run(self):
        lines = []
        for name in api_modules():
            lines += [name, "-" * len(name), "", f".. automodule:: {name}",
                      "   :members:", ""]  # fmt: skip
        node = nodes.section()
        node.document = self.state.document
        nested_parse_with_titles(self.state, StringList(lines, source="covmocks-api"), node)
        return node.children


BARS = re.compile(r"(?<![|\\\w])\|(?=\S)([^|`\n]+?)(?<=\S)\|(?![|\w])")


PLURAL = re.compile(r"(``[^`]+``)(s)\b")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def plain_docstring(app, what, name, obj, options, lines) -> None:
    """The package's docstrings are plain text read as reStructuredText; three habits of
    plain text are made valid RST here: ``|x|`` is an absolute value (not a substitution),
    ````name````s a plural, and a "- " list may follow or precede its paragraph without a
    blank line."""
    out: list[str] = []
    list_indent = None  # indent of the "- " items of the list being read
    for line in lines:
        if not line.lstrip().startswith(("|", "+-")):
            line = BARS.sub(lambda m: "\\|" + m.group(1) + "\\|", line)
        line = PLURAL.sub(r"\1\\ \2", line)
        bullet = line.lstrip().startswith("- ")
        if not line.strip():
            list_indent = None
        elif bullet and list_indent is None:
            if out and out[-1].strip() and _indent(out[-1]) <= _indent(line):
                out.append("")
            list_indent = _indent(line)
        elif list_indent is not None and not bullet and _indent(line) <= list_indent:
            out.append("")
            list_indent = None
        out.append(line)
    lines[:] = out


def setup(app):
    app.connect("autodoc-process-docstring", plain_docstring)
    app.add_directive("covmocks-campaign-reference", CampaignReference)
    app.add_directive("covmocks-profiles", Profiles)
    app.add_directive("covmocks-model-parameters", ModelParameters)
    app.add_directive("covmocks-api", Api)
    app.connect("builder-inited", check_guide)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
