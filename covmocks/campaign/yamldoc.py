"""YAML text -> data, with the 1-based line of every key path, and problems worded as
``file:line key.path: message``.

Syntax errors, duplicate keys, empty files and unreadable files become a ``ConfigError``
with one clean line each. Nothing here knows the campaign schema.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from covmocks.core.errors import ConfigError


def format_path(path: tuple) -> str:
    """``('science', 'redshifts', 3)`` -> ``science.redshifts[3]``."""
    text = ""
    for part in path:
        if isinstance(part, str) and part.isidentifier():
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]" if isinstance(part, str) else f"[{part}]"
    return text or "(top level)"


def one_line(exc: Exception | str) -> str:
    """An exception's text with its whitespace (newlines included) collapsed."""
    return " ".join(str(exc).split())


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


def _yaml_problem(label: str, exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"{label}:{mark.line + 1}:{mark.column + 1}" if mark else label
    what = "; ".join(one_line(t) for t in (exc.context, exc.problem) if t)
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
        raise ConfigError([f"{label}: invalid YAML: {one_line(exc)}"]) from None
    except (ValueError, OverflowError, RecursionError) as exc:
        raise ConfigError([f"{label}: invalid YAML value: {one_line(exc)}"]) from None
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
