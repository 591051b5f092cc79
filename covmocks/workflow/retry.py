"""The retry policy of the campaign runner: what to do with a task whose attempt failed.

One job: given a failed attempt's exception, say whether the task is re-run at once
(lost with its worker), retried after a backoff, or failed for good, and which journal
event records that. Pure: per-task counters only, no I/O, no clock, no Parsl futures; the
runner (covmocks.run) does the waiting, the journaling and the resubmission.

Classes of failure (``classify``):

- ``deterministic``: bad input or output (``InputError``, ``OutputError``), a catalog that
  fails validation, or an ``ImportError`` (the workers' environment lacks a package);
  retrying the same task cannot help, so it fails on its first attempt.
- ``timeout``: the task ran past its walltime (``WalltimeExceeded``, or its worker or
  manager was lost after the walltime watchdog left its ``.timeout`` marker).
- ``lost``: the worker or manager died under the task (its pilot block ended, a node
  failed); re-run at once without charging the task's retries, up to ``max_lost`` times
  per task, and charged like a transient failure after that.
- ``transient``: anything else, including every ``TransientError``: ``TransientInputError``
  (a read that failed with EIO, ESTALE, ETIMEDOUT...) and ``NoSpaceError`` (an output
  filesystem or quota full: ENOSPC, EDQUOT); retried with exponential backoff. A full disk
  is charged, not free like a lost worker: a disk that stays full would otherwise re-run
  every box without end; its task fails after its retries ("no space left" in the error),
  and ``covmocks retry`` runs it again once space is freed.

Charged failures (every class but a free ``lost``) count against ``retries``: a task fails
when its failure is deterministic or when its charged count exceeds ``retries``; otherwise
it is retried after ``min(backoff_cap_s, backoff_base_s * 2 ** (charged - 1))`` seconds.
"""

from __future__ import annotations

import dataclasses

from covmocks.core.errors import (
    InputError,
    OutputError,
    TransientError,
    ValidationError,
    WalltimeExceeded,
)

# A task lost with its worker or block re-runs for free, up to this many times (a guard
# against a task that itself kills every worker it lands on).
MAX_LOST = 10

KINDS = ("deterministic", "timeout", "lost", "transient")
ACTIONS = ("rerun", "retry", "fail")
EVENTS = ("lost", "retry", "timeout", "failed")


def classify(exc: BaseException, timed_out: bool) -> str:
    """The class of a failed attempt's exception: 'deterministic', 'timeout', 'lost' or
    'transient'. ``timed_out``: the task's ``.timeout`` marker exists (the walltime
    watchdog killed it), which turns a lost worker or manager into a timeout."""
    # Imported here: Parsl is heavy, and needed only once a task has failed.
    from parsl.executors.high_throughput.errors import ManagerLost, WorkerLost

    if isinstance(exc, TransientError):
        return "transient"  # checked first: a flaky read or a full disk, whatever its bases
    if isinstance(exc, InputError | OutputError | ValidationError | ImportError):
        return "deterministic"  # ImportError: the workers' environment lacks a package
    if isinstance(exc, WalltimeExceeded):
        return "timeout"
    if isinstance(exc, ManagerLost | WorkerLost):
        return "timeout" if timed_out else "lost"
    return "transient"


@dataclasses.dataclass(frozen=True)
class Decision:
    """What to do with a task after a failed attempt.

    ``action``: 'rerun' (at once, free), 'retry' (after ``delay_s``) or 'fail'.
    ``delay_s``: seconds to wait before resubmitting; 0 for 'rerun' and 'fail'.
    ``charged``, ``lost``: the task's counts so far, this failure included.
    ``event``: the journal event recording it: 'lost', 'retry', 'timeout' or 'failed'.
    """

    action: str
    delay_s: float
    charged: int
    lost: int
    event: str


class RetryPolicy:
    """Per-task failure counters and the decision each failure leads to.

    ``retries``: charged failures a task may have and still be retried (0: none).
    ``backoff_base_s``, ``backoff_cap_s``: the first retry's delay, and the largest.
    ``max_lost``: free re-runs of a task lost with its worker before such losses are charged.
    """

    def __init__(self, retries: int, backoff_base_s: float, backoff_cap_s: float,
                 max_lost: int = MAX_LOST):  # fmt: skip
        if retries < 0 or max_lost < 0 or backoff_base_s < 0 or backoff_cap_s < 0:
            raise ValueError("retries, max_lost and backoff times must not be negative")
        self.retries = retries
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.max_lost = max_lost
        self._charged: dict[str, int] = {}
        self._lost: dict[str, int] = {}

    def attempt(self, task_id: str) -> int:
        """The number of the task's next attempt, from 1: charged failures so far, plus one
        (free re-runs of a lost task keep the same number)."""
        return self._charged.get(task_id, 0) + 1

    def backoff(self, charged: int) -> float:
        """Seconds to wait before the retry that follows the ``charged``-th charged failure."""
        return float(min(self.backoff_cap_s, self.backoff_base_s * 2 ** (charged - 1)))

    def decide(self, task_id: str, kind: str) -> Decision:
        """Count a failed attempt of ``task_id`` of class ``kind`` (see ``classify``) and
        say what to do next."""
        if kind not in KINDS:
            raise ValueError(f"unknown failure class {kind!r}; expected one of {KINDS}")
        lost = self._lost.get(task_id, 0)
        if kind == "lost" and lost < self.max_lost:
            self._lost[task_id] = lost = lost + 1
            return Decision("rerun", 0.0, self._charged.get(task_id, 0), lost, "lost")
        charged = self._charged[task_id] = self._charged.get(task_id, 0) + 1
        if kind == "deterministic" or charged > self.retries:
            return Decision("fail", 0.0, charged, lost, "failed")
        event = "timeout" if kind == "timeout" else "retry"
        return Decision("retry", self.backoff(charged), charged, lost, event)
