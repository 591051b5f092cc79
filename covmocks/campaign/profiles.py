"""Machine profiles: finding the file that ``execution.profile`` names (a profile shipped in
``covmocks/configs`` or a path) and reading and validating it."""

from __future__ import annotations

from pathlib import Path

from covmocks.campaign.messages import validate
from covmocks.campaign.schema import ProfileFile
from covmocks.campaign.templates import resolve_path
from covmocks.campaign.yamldoc import YamlDoc, read_yaml
from covmocks.core.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DEFAULT_PROFILE = "local"


def profile_names() -> list[str]:
    """Names of the machine profiles shipped in ``covmocks/configs``."""
    return sorted(p.stem for p in CONFIGS.glob("*.yaml"))


def profile_path(ref: str, base_dir: Path) -> Path:
    """A profile name -> its shipped file; a path (has '/' or ends .yaml) -> that file."""
    if "/" in ref or ref.endswith((".yaml", ".yml")):
        return Path(resolve_path(ref, base_dir))
    return CONFIGS / f"{ref}.yaml"


def profile_ref(data) -> str | None:
    """``execution.profile`` of a campaign file's data (default ``local``); None if it is
    not text (the schema reports that)."""
    execution = data.get("execution", {}) if isinstance(data, dict) else None
    ref = execution.get("profile", DEFAULT_PROFILE) if isinstance(execution, dict) else None
    return ref if isinstance(ref, str) else None


def load_profile(ref: str | None, base_dir: Path, doc: YamlDoc, problems: list):
    """-> ((ProfileFile, its YamlDoc, its path) or None, [problems in the profile file]).
    A profile that cannot be found is a problem of the campaign file (``doc``), added to
    ``problems``."""
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
