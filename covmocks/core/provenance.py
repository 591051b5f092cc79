"""Who made a file, with what: versions, platform, host, git commit."""

import datetime
import getpass
import importlib.metadata
import platform
import socket
import subprocess
from pathlib import Path

STACK = ("covmocks", "diffmah", "diffstar", "diffsky", "dsps", "jax", "jaxlib", "numpy", "h5py",
         "abacusutils", "parsl")  # fmt: skip


def software_versions() -> dict[str, str]:
    """Installed versions of covmocks and the packages that shape its output."""
    versions = {}
    for name in STACK:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    versions["python"] = platform.python_version()
    return versions


def jax_platform() -> str:
    """The JAX backend that computes (bitwise reproducibility holds per platform)."""
    import jax

    devices = jax.devices()
    return f"{devices[0].platform}:{devices[0].device_kind} x{len(devices)}"


def git_commit(path: Path | None = None) -> str | None:
    """The commit of the checkout that holds covmocks, or None outside a git checkout."""
    where = path or Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def environment() -> dict[str, str]:
    """Host, user and time, for campaign metadata."""
    return {
        "host": socket.gethostname(),
        "user": getpass.getuser(),
        "time_utc": utc_now(),
        "platform": platform.platform(),
    }
