"""A full scratch filesystem: the driver holds its boxes until space returns.

A box that fails for want of space (``NoSpaceError``) says nothing about the box: every box
after it would fail the same way, and burn its retries. The driver therefore stops
submitting, says once where and how much space it waits for, alerts (``campaign.notify``),
and polls the filesystem (``statvfs``) until that much is free. The boxes that failed
meanwhile are then submitted again, with no retry charged (journal event ``held``).
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
from pathlib import Path

from covmocks.core.errors import NoSpaceError

log = logging.getLogger(__name__)

POLL_S = 10.0  # seconds between two looks at the filesystem's free space
RECORDS_READ = 20  # QA records read for the size of a box


def out_of_space(exc: BaseException | None) -> bool:
    """Whether a box failed for want of space: a ``NoSpaceError`` from its worker (an MPI
    box's too: ``apps.box_task.generate_mpi``). Parsl's own failures on a full disk (a block
    whose submit script cannot be written) are not a box's, and stay Parsl's errors."""
    return isinstance(exc, NoSpaceError)


def box_bytes(qa_records: list[Path], fallback: float) -> float:
    """The bytes one box writes: the median ``file_bytes`` of up to ``RECORDS_READ`` of the
    campaign's QA records, else ``fallback`` (the campaign's estimate)."""
    sizes = []
    for path in qa_records[:RECORDS_READ]:
        try:
            sizes.append(float(json.loads(path.read_text())["file_bytes"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return statistics.median(sizes) if sizes else fallback


def free_bytes(directory: Path) -> int:
    """Bytes an unprivileged writer may still use on ``directory``'s filesystem."""
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def full_directory(exc: NoSpaceError, default: Path) -> Path:
    """The nearest existing directory above the file ``exc`` could not write (``default``
    where it names none): where to look for the space."""
    path = Path(exc.path) if getattr(exc, "path", None) else Path(default) / "x"
    for parent in path.parents:
        if parent.is_dir():
            return parent
    return Path(default)


def _size(n: float) -> str:
    """``n`` bytes as MB or GB (decimal)."""
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


class SpaceWait:
    """The driver's wait for ``need`` bytes to be free on ``directory``'s filesystem."""

    def __init__(self, directory: Path, need: float, poll_s: float = POLL_S):
        self.directory = Path(directory)
        self.need = need
        self.poll_s = poll_s
        self.since = time.monotonic()
        self._looked = self.since

    def describe(self) -> str:
        free = free_bytes(self.directory)
        return (f"no space left on the filesystem of {self.directory} ({_size(free)} free): "
                f"holding the boxes until {_size(self.need)} are free; free space there (or "
                "raise the quota) and the campaign resumes by itself")  # fmt: skip

    def ready(self) -> bool:
        """Whether the space is there (the filesystem is looked at every ``poll_s``)."""
        now = time.monotonic()
        if now - self._looked < self.poll_s:
            return False
        self._looked = now
        return free_bytes(self.directory) >= self.need
