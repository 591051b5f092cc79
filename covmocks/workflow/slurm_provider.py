"""The Slurm provider of covmocks' pilot jobs: Parsl's SlurmProvider, made to ride out a
Slurm controller that does not answer (``PilotSlurmProvider``), as one small module, the way
Parsl and dask-jobqueue keep one module per scheduler.
"""

from __future__ import annotations

import inspect
import logging
import time

from parsl.providers import SlurmProvider

log = logging.getLogger(__name__)

# Slurm client errors that mean "the controller did not answer", not "the request is bad".
CONTROLLER_DOWN = ("Unable to contact slurm controller", "Socket timed out", "Connection refused")


class PilotSlurmProvider(SlurmProvider):
    """Parsl's SlurmProvider with a settable status polling interval, a longer default command
    timeout, and block submissions that wait out a controller outage.

    - ``status_polling_s``: Parsl fixes SlurmProvider's squeue/sacct polling at 60 s, and the
      scaling strategy counts a block as alive until a poll says otherwise, so a block killed by
      scancel or by its walltime is replaced up to a minute late. 60 s stays the default
      (polite to a big controller); the tests poll every 2 s.
    - ``cmd_timeout`` 30 s (Parsl: 10 s): with the controller down Slurm commands wait for it
      before failing: sbatch and scancel 9 s here (MessageTimeout 10 s), and the
      ``squeue --job`` that Parsl polls with 18 s. Past cmd_timeout, Parsl's execute_wait
      raises TimeoutExpired (leaving the command running) and the poller logs a traceback and
      skips that round's error handling and scaling, instead of a plain "squeue failed".
    - ``submit_patience_s``: a sbatch that fails because the controller does not answer is
      retried every ``SUBMIT_RETRY_S`` seconds for up to this long. Parsl marks a block whose
      submission failed FAILED, and its default block error handler fails every task of the
      executor (BadStateException) once all the blocks it knows of are FAILED: a driver that
      needs its first block while slurmctld is down would lose the whole campaign. Other
      sbatch errors (bad partition, account) fail at once, and a sbatch that timed out is not
      retried (it may have submitted the job). The wait blocks Parsl's job status poller
      thread (or parsl.load, for init_blocks); no block can start meanwhile anyway.
    """

    SUBMIT_RETRY_S = 10.0

    def __init__(self, *args, status_polling_s: float = 60, cmd_timeout: int = 30,
                 submit_patience_s: float = 600, **kwargs):  # fmt: skip
        super().__init__(*args, cmd_timeout=cmd_timeout, **kwargs)
        self.status_polling_s = status_polling_s
        self.submit_patience_s = submit_patience_s

    @property
    def status_polling_interval(self):
        return self.status_polling_s

    def submit(self, command, tasks_per_node, job_name="parsl.slurm"):
        from parsl.providers.errors import SubmitException

        deadline = time.monotonic() + self.submit_patience_s
        while True:
            try:
                return super().submit(command, tasks_per_node, job_name)
            except SubmitException as exc:
                stderr = (exc.stderr or "").strip()
                down = any(text in stderr for text in CONTROLLER_DOWN)
                if not down or time.monotonic() + self.SUBMIT_RETRY_S > deadline:
                    raise
                log.warning("sbatch: the Slurm controller does not answer (%s); retrying in "
                            "%.0f s", stderr, self.SUBMIT_RETRY_S)  # fmt: skip
                time.sleep(self.SUBMIT_RETRY_S)


def _full_signature(cls) -> None:
    """Give ``cls.__init__`` SlurmProvider's parameters followed by its own keyword ones, so
    that Parsl's RepresentationMixin (the Config printed in parsl.log and by --dry-run), which
    reads the arguments off ``__init__``'s signature, shows every setting, not just ours."""
    base = list(inspect.signature(SlurmProvider.__init__).parameters.values())
    own = [
        p
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in {b.name for b in base}
    ]
    own = [p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in own]
    base = [p.replace(default=30) if p.name == "cmd_timeout" else p for p in base]
    cls.__init__.__signature__ = inspect.Signature(base + own)


_full_signature(PilotSlurmProvider)
