"""The driver's journal (``Layout.journal``): what it does, appended as one JSON object a line.

One writer, the lock holder (``covmocks.workflow.driver_lock``), so failures, retries and
throughput survive the driver; readers (status, report) take it as it is.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from covmocks.core.errors import NO_SPACE_ERRNOS, CovmocksError

log = logging.getLogger(__name__)
TAIL_BYTES = 1 << 16  # bytes read at a time, backwards, to find the journal's last line


class Journal:
    """Append-only event log of the driver; one JSON object per line.

    Each event is one ``write`` of a whole line, so a driver killed mid-write leaves at most
    a torn last line: ``read`` ignores it, and the next writer cuts it off before appending.
    Any other line that is not an event is corruption, and ``read`` refuses to guess.

    A full disk (``NO_SPACE_ERRNOS``) does not stop the driver: what could not be written
    is held, in order, and written before the next event or at ``close`` once space is
    freed (a torn line left meanwhile is completed then); events still held at ``close``
    are lost, with an error in the log, and the torn line is cut off by the next writer.
    """

    REQUIRED = ("t", "task", "event")

    def __init__(self, path: Path):
        self.path = Path(path)
        self._file = None
        self._held = bytearray()  # bytes of events not yet written (a full disk)

    def write(self, task: str, event: str, **fields) -> None:
        if self._file is None:
            self._file = self._open_for_append()
        line = json.dumps({"t": time.time(), "task": task, "event": event, **fields}) + "\n"
        self._held += line.encode()
        self._write_held()

    def _write_held(self) -> bool:
        """Write the held bytes (unbuffered: one write call for a line, unless the kernel
        splits it); False where the disk is full and some are still held."""
        while self._held:
            try:
                written = self._file.write(self._held)
            except OSError as exc:
                if exc.errno not in NO_SPACE_ERRNOS:
                    raise
                log.warning("%s: %s; %d bytes of events held until space is freed",
                            self.path, exc.strerror, len(self._held))  # fmt: skip
                return False
            del self._held[:written]
        return True

    def _open_for_append(self):
        """The journal opened for appending, its last line complete: a torn last line (no
        trailing newline) is cut off, or ended with a newline if it is a whole event."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+b", buffering=0)  # O_APPEND: every write lands at the end
        try:
            size = f.seek(0, os.SEEK_END)
            start = self._last_line_start(f, size)
            if start < size:
                f.seek(start)
                fragment = f.read()
                if self._event(fragment) is not None:
                    f.write(b"\n")
                elif fragment.strip():
                    os.ftruncate(f.fileno(), start)
                    log.warning(
                        "%s: dropped a torn last line (a driver killed mid-write): %r",
                        self.path, fragment[:200].decode(errors="replace"),
                    )  # fmt: skip
                else:  # only blanks: no event lost, nothing to say
                    os.ftruncate(f.fileno(), start)
        except BaseException:
            f.close()
            raise
        return f

    @staticmethod
    def _last_line_start(f, size: int) -> int:
        """Offset just after the file's last newline (0 if there is none)."""
        end = size
        while end > 0:
            begin = max(0, end - TAIL_BYTES)
            f.seek(begin)
            newline = f.read(end - begin).rfind(b"\n")
            if newline >= 0:
                return begin + newline + 1
            end = begin
        return 0

    @classmethod
    def _event(cls, line: bytes) -> dict | None:
        """The event a line holds, or None when it is not one (bad JSON, not an object, or
        missing a required key)."""
        try:
            event = json.loads(line)
        except ValueError:  # JSONDecodeError, UnicodeDecodeError
            return None
        if not isinstance(event, dict) or any(k not in event for k in cls.REQUIRED):
            return None
        t = event["t"]
        if (
            isinstance(t, bool)
            or not isinstance(t, int | float)
            or not isinstance(event["task"], str)
        ):
            return None  # status does arithmetic on the time and looks tasks up by id
        return event

    def close(self) -> None:
        if self._file is not None:
            if not self._write_held():
                log.error("%s: no space left: %d events lost", self.path,
                          self._held.count(b"\n"))  # fmt: skip
                self._held.clear()
            self._file.close()
            self._file = None

    def read(self) -> list[dict]:
        """Every event, in order. Blank lines hold no event and are skipped; a torn last
        line (no trailing newline, not an event: a driver killed mid-write, or one writing
        now) is ignored. Any other line that is not an event raises ``CovmocksError`` naming
        the file and the line numbers: dropping it could hide a failure or a retry."""
        if not self.path.exists():
            return []
        events = []
        corrupt: list[tuple[int, bytes]] = []
        with open(self.path, "rb") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                event = self._event(line)
                if event is not None:
                    events.append(event)
                elif line.endswith(b"\n"):  # a complete line: not torn but corrupt
                    corrupt.append((number, line))
        if corrupt:
            number, line = corrupt[0]
            excerpt = line.strip()[:80].decode(errors="replace")
            others = ""
            if len(corrupt) > 1:
                numbers = ", ".join(str(n) for n, _ in corrupt[1:11])
                more = ", ..." if len(corrupt) > 11 else ""
                others = f" (and {len(corrupt) - 1} more corrupt lines: {numbers}{more})"
            raise CovmocksError(
                f"{self.path}: line {number} is not a journal event: {excerpt!r}{others}; "
                "repair or delete the line (each line must be one JSON object with "
                "'t', 'task' and 'event')"
            )
        return events


def last_events(events: list[dict]) -> dict[str, dict]:
    """The latest event of each task."""
    return {e["task"]: e for e in events}
