"""Text templates in campaign files: ``${NAME}`` / ``${NAME:-default}`` environment
expansion, ``{field}`` format templates checked against their allowed fields, and paths
relative to the campaign file's directory."""

from __future__ import annotations

import os
import re
import string
from pathlib import Path

from covmocks.campaign.yamldoc import one_line

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
    """Raise ValueError unless ``template`` formats with exactly these field names (and holds
    no NUL character: it names a path)."""
    if "\x00" in template:
        raise ValueError(f"a path with a NUL character: {template!r}")
    text = expand_env(template)
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
        unknown = sorted({re.split(r"[.\[]", name)[0] for name in names} - set(fields))
        if not unknown:
            text.format(**fields)
    except (ValueError, KeyError, IndexError, AttributeError, TypeError) as exc:
        raise ValueError(f"bad template {template!r}: {one_line(exc)}") from None
    if unknown:
        allowed = ", ".join(f"{{{f}}}" for f in fields) or "no fields"
        shown = ", ".join(f"{{{u}}}" for u in unknown)
        raise ValueError(f"template {template!r} uses {shown}; allowed: {allowed}")


def resolve_path(text: str, base_dir: Path) -> str:
    """Expand the environment and ``~``; a relative path joins ``base_dir``."""
    path = os.path.expanduser(expand_env(text))
    return os.path.normpath(path if os.path.isabs(path) else os.path.join(base_dir, path))
