"""A full scratch filesystem: the driver holds its boxes until space returns.

A box that fails for want of space (``NoSpaceError``) says nothing about the box: every box
after it would fail the same way, and burn its retries. The driver therefore stops
submitting, says once where and how much space it waits for, alerts (``campaign.notify``),
and polls the filesystem (``statvfs``) until that much is free. The boxes that failed
meanwhile are then submitted again, with no retry charged (journal event ``held``).

The driver looks before it starts, too (``room_needed`` for one box): Parsl cannot start on
a full disk (its block's submit script cannot be written, so it fails every task; its
monitoring database cannot create its tables, and dies), so a driver started on a full
campaign directory holds before Parsl is loaded, in the same way.
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

RECORDS_READ = 20  # QA records read for the size of a box
# Bytes a run needs on the campaign directory's filesystem besides its boxes: Parsl's run
# directory (submit scripts, logs), the monitoring database, the journal, the plan's metadata,
# the tasks' logs (a 5-box demo run with monitoring writes about 3 MB of these).
RUN_BYTES = 32 << 20


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


def existing(path: Path) -> Path:
    """``path`` if it is a directory, else the nearest directory above it."""
    path = Path(path)
    return next(p for p in (path, *path.parents) if p.is_dir())


def full_directory(exc: NoSpaceError, default: Path) -> Path:
    """The nearest existing directory above the file ``exc`` could not write (``default``
    where it names none): where to look for the space."""
    return existing(Path(exc.path).parent if getattr(exc, "path", None) else default)


def room_needed(layout, per_box: float, in_flight: int, *also: Path) -> dict[Path, float]:
    """Bytes that must be free before boxes are submitted, by filesystem (one directory on
    each): ``in_flight`` boxes of ``per_box`` bytes wherever catalogs, ``also`` (the
    directory a box could not write) or the campaign directory lie, plus ``RUN_BYTES`` on
    the campaign directory's."""
    needs: dict[int, tuple[Path, float]] = {}
    for directory in (layout.root, layout.catalogs, *also):
        where = existing(directory)
        device = os.stat(where).st_dev
        extra = RUN_BYTES if directory == layout.root else 0.0
        held = needs.get(device, (where, per_box * in_flight))
        needs[device] = (held[0], held[1] + extra)
    return dict(needs.values())


def _size(n: float) -> str:
    """``n`` bytes as MB or GB (decimal)."""
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


class SpaceWait:
    """The driver's wait for ``needs`` (bytes by directory, ``room_needed``) to be free,
    looking every ``poll_s`` seconds (the campaign's ``execution.space_poll_s``)."""

    def __init__(self, needs: dict[Path, float], poll_s: float):
        self.needs = {Path(d): need for d, need in needs.items()}
        self.poll_s = poll_s
        self.since = time.monotonic()
        self._looked = self.since

    def short(self) -> dict[Path, float]:
        """The directories whose filesystem has less free than it needs, with their need."""
        return {d: need for d, need in self.needs.items() if free_bytes(d) < need}

    def describe(self) -> str:
        """One line: where space lacks, how much is free and how much the driver waits for."""
        lacking = self.short() or self.needs
        where = "; ".join(f"the filesystem of {d} ({_size(free_bytes(d))} free, "
                          f"{_size(need)} needed)" for d, need in lacking.items())  # fmt: skip
        return (
            f"no space left on {where}: holding the boxes until it is free; free space "
            "there (or raise the quota) and the campaign resumes by itself"
        )

    def ready(self) -> bool:
        """Whether the space is there (the filesystems are looked at every ``poll_s``)."""
        now = time.monotonic()
        if now - self._looked < self.poll_s:
            return False
        self._looked = now
        return not self.short()
