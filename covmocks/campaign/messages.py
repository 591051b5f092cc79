"""Pydantic validation errors -> one line each, worded for the person editing the file:
``file:line key.path: expected ..., got ...`` (``validate``), and raising them together as
one ``ConfigError`` (``raise_problems``)."""

from __future__ import annotations

import difflib
import typing

from pydantic import BaseModel, ValidationError

from covmocks.campaign.realizations import TAGS
from covmocks.campaign.schema import NAME_PATTERN, WALLTIME_PATTERN
from covmocks.campaign.yamldoc import YamlDoc, format_path, one_line
from covmocks.core.errors import ConfigError

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
# Keys that provider sections held before executor and launcher got sections of their own:
# (old section, key) -> [(new section, key, what it means)].
MOVED = {
    ("provider", "workers_per_node"): [
        ("executor", "workers_per_node", "HTEX: tasks a node runs at once"),
        ("executor", "mpi_tasks_per_block", "MPI executor: MPI tasks a block runs at once"),
    ],
    ("provider", "available_accelerators"): [("executor", "available_accelerators", "")],
    ("provider", "launcher"): [("launcher", "kind", "")],
    ("provider", "mpi_launcher"): [("launcher", "mpi_launcher", "")],
    ("clustering", "k_bins"): [
        (
            "clustering",
            "dk",
            "k-bin width in fundamentals 2 pi / L: bins lie on the box's "
            "lattice, as many as fit below k_max",
        ),
    ],
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


def _moved(path: tuple) -> str | None:
    """Where a key that moved to another section lives now, or None."""
    if len(path) < 2 or (path[-2], path[-1]) not in MOVED:
        return None
    places = [
        format_path(path[:-2] + (section, key)) + (f" ({meaning})" if meaning else "")
        for section, key, meaning in MOVED[path[-2], path[-1]]
    ]
    return f"unknown key; it moved to {' or '.join(places)}"


def _message(cls: type[BaseModel], path: tuple, error: dict) -> str:
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "missing":
        return "missing required key"
    if kind == "extra_forbidden":
        moved = _moved(path)
        if moved:
            return moved
        allowed = _allowed_keys(cls, path[:-1])
        close = difflib.get_close_matches(str(path[-1]), allowed, n=1)
        if close:
            return f"unknown key; did you mean {close[0]!r}?"
        return f"unknown key; expected one of: {', '.join(allowed)}"
    if kind in ("value_error", "assertion_error"):
        return one_line(ctx["error"])
    if kind == "literal_error":
        expected = f"one of {ctx['expected']}"
    elif kind == "string_pattern_mismatch":
        expected = _PATTERNS.get(ctx["pattern"], f"text matching {ctx['pattern']}")
    elif kind in _EXPECTED:
        expected = _EXPECTED[kind].format(**ctx)
    else:
        return error["msg"]
    message = f"expected {expected}, got {_show(error['input'])}"
    if kind == "model_type" and path[-1:] == ("executor",) and error["input"] in ("htex", "mpi"):
        message += f" (write {{kind: {error['input']}}})"
    return message


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


def raise_problems(problems: list) -> None:
    """Raise every ``(line, text)`` problem as one ConfigError; nothing if there are none."""
    if problems:
        raise ConfigError([text for _, text in problems])
