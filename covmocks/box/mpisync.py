"""Steps that every rank of an MPI box takes together (``covmocks.box.mpi``): a guard that
records a rank's failure and raises it on every rank at the next sync point, aborting the job,
and a timed check that every rank failed (a failure inside a collective call that some ranks
may never leave).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time

from covmocks.core.errors import CovmocksError, TransientError

log = logging.getLogger("covmocks.box.mpi")
# Seconds between polls of a nonblocking collective (``all_failed``).
POLL_S = 0.01


@dataclasses.dataclass
class _Failure:
    rank: int | None  # None: a step only rank 0 runs (setup), reported like the CLI
    message: str
    input_error: bool


class RankFailure(CovmocksError):
    """A step failed on one or more ranks; raised on every rank at the same sync point."""

    def __init__(self, failures: list[_Failure]):
        self.failures = failures
        first = failures[0]
        where = "" if first.rank is None else f"rank {first.rank}: "
        others = f" (and {len(failures) - 1} more ranks)" if len(failures) > 1 else ""
        super().__init__(f"{where}{first.message}{others}")

    @property
    def exit_code(self) -> int:
        """2 where the first failure is bad input or output (like the CLI), else 1."""
        return 2 if self.failures[0].input_error else 1


class Guard:
    """Runs one rank's share of a step; an exception is recorded, not raised, and
    ``check`` (collective) raises ``RankFailure`` on every rank if any rank recorded one.

    ``context`` (e.g. the unit being worked on) prefixes the message; ``name_rank=False``
    leaves the rank out, for steps that only rank 0 runs.
    """

    def __init__(self, comm, name_rank: bool = True):
        self.comm = comm
        self.name_rank = name_rank
        self.context = ""
        self.error: _Failure | None = None

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False  # KeyboardInterrupt and the like: abort
        if self.error is None:
            known = isinstance(exc, CovmocksError)
            message = str(exc) if known else f"{type(exc).__name__}: {exc}"
            if self.context:
                message = f"{self.context}: {message}"
            if not known:
                log.error("rank %d failed", self.comm.rank, exc_info=exc)
            bad_input = known and not isinstance(exc, TransientError)
            self.error = _Failure(self.comm.rank if self.name_rank else None, message, bad_input)
        return True

    def check(self) -> None:
        failures = [f for f in self.comm.allgather(self.error) if f is not None]
        if failures:
            raise RankFailure(failures)


def abort(comm, message: str, code: int = 1) -> None:
    """Report ``message`` on this rank and end every rank of ``comm`` now."""
    print(f"covmocks: error: rank {comm.rank}: {message}; aborting all ranks", file=sys.stderr)
    sys.stderr.flush()
    time.sleep(0.2)  # for the launcher to forward the line before it ends the ranks
    comm.Abort(code)


def allgather_dict(comm, local: dict) -> dict:
    merged = {}
    for part in comm.allgather(local):
        merged.update(part)
    return merged


def all_failed(comm, timeout_s: float) -> bool:
    """Called by a rank that failed inside a collective call (parallel HDF5), which the other
    ranks may leave with an error too or, some of them, never: whether every rank of
    ``comm`` calls this within ``timeout_s`` seconds (a nonblocking collective, so that the
    wait can end). True: every rank failed and got here, in step again (they may talk on
    ``comm``); False: some rank did not, the job must be aborted. ``comm`` must be a
    communicator that nothing else uses meanwhile (``comm.Dup()`` of the ranks' own)."""
    import numpy as np
    from mpi4py import MPI

    mine, total = np.ones(1, dtype="i4"), np.zeros(1, dtype="i4")
    request = comm.Iallreduce(mine, total, op=MPI.SUM)
    deadline = time.monotonic() + timeout_s
    while not request.Test():
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_S)
    return True
