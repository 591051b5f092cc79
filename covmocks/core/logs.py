"""Where covmocks' log records go: the console filter and the driver's log file."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def quiet_libraries(record: logging.LogRecord) -> bool:
    """Console filter: Parsl and JAX speak only of warnings (Parsl's own log keeps the rest),
    and not of a failed task, which the driver reports in one line (Parsl adds a traceback)."""
    if record.name == "parsl.dataflow.dflow" and "failed after" in str(record.msg):
        return False
    return record.levelno >= logging.WARNING or not record.name.startswith(
        ("parsl", "jax", "asyncio", "sqlalchemy")
    )


def setup_console(verbose: int) -> None:
    """Log to stderr: -1 warnings only, 0 info, 2 and more debug; libraries quieted."""
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose >= 0 else logging.WARNING
    logging.basicConfig(level=level, format=FORMAT)
    for handler in logging.getLogger().handlers:
        handler.addFilter(quiet_libraries)


@contextlib.contextmanager
def copied_to(path: Path):
    """Copy the root logger's INFO and above to ``path`` (appended) while in the block. A
    handler that cannot write meanwhile (a full disk under Parsl's run directory, or this
    file's) drops its record silently instead of printing a traceback for each one."""
    raising, logging.raiseExceptions = logging.raiseExceptions, False
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.setLevel(logging.INFO)
    handler.addFilter(quiet_libraries)  # Parsl's own DEBUG/INFO stay in logs/parsl/
    logging.getLogger().addHandler(handler)
    try:
        yield
    finally:
        logging.raiseExceptions = raising
        logging.getLogger().removeHandler(handler)
        with contextlib.suppress(OSError):  # a full disk: the driver's outcome stands
            handler.close()
