"""Parsl configurations built from a campaign's machine profile (the profile YAML is data).

- ``htex`` + ``local``: HighThroughputExecutor with LocalProvider (the embedded default).
- ``htex`` + ``slurm``: HighThroughputExecutor + SlurmProvider + SrunLauncher, pilot jobs
  (on GPU nodes one worker per accelerator via ``available_accelerators``).
- ``mpi`` + ``slurm``/``local``: MPIExecutor + SimpleLauncher, each task launching its ranks
  with the provider's ``mpi_launcher`` (srun or mpiexec) inside the block. Used when the
  profile says ``executor: mpi`` or when a campaign asks for more than one rank per task.
Monitoring goes to ``<campaign>/metadata/monitoring.db``.
"""

from __future__ import annotations

import inspect
import logging
import shutil
import sys
import time
from pathlib import Path

from parsl.providers import SlurmProvider

log = logging.getLogger(__name__)
BIN = Path(sys.executable).parent


def _interchange_cmd() -> list[str]:
    """The driver starts interchange.py; name it explicitly, PATH may lack the venv's bin."""
    script = BIN / "interchange.py"
    if not script.exists():
        script = Path(shutil.which("interchange.py") or "interchange.py")
    return [sys.executable, str(script)]


def _worker_init(provider: dict) -> str:
    """Put this Python's bin first on PATH (process_worker_pool.py), then the profile's lines."""
    return "\n".join(filter(None, [f"export PATH={BIN}:$PATH", provider.get("worker_init", "")]))


def _exclusive(provider: dict) -> bool:
    """Whole nodes for a Slurm block: as the profile says, else when the nodes have GPUs."""
    if provider.get("exclusive") is not None:
        return provider["exclusive"]
    return provider.get("gpus_per_node", 0) > 0


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


def build_provider(provider: dict, launcher):
    """The Parsl provider of a profile's ``provider`` section (a plain dict).

    Slurm: ``PilotSlurmProvider``; the optional keys ``status_polling_s``, ``cmd_timeout`` and
    ``submit_patience_s`` go to it (see its docstring), the rest to Parsl's SlurmProvider.
    """
    from parsl.providers import LocalProvider

    common = dict(
        nodes_per_block=provider["nodes_per_block"],
        init_blocks=provider["init_blocks"],
        min_blocks=provider["min_blocks"],
        max_blocks=provider["max_blocks"],
        worker_init=_worker_init(provider),
        launcher=launcher,
    )
    if provider["kind"] == "local":
        return LocalProvider(**common)
    slurm = {k: provider.get(k) for k in ("account", "qos", "constraint", "partition")}
    tuning = ("status_polling_s", "cmd_timeout", "submit_patience_s")
    return PilotSlurmProvider(
        **{k: v for k, v in slurm.items() if v},
        **{k: provider[k] for k in tuning if provider.get(k) is not None},
        walltime=provider["walltime"],
        scheduler_options=provider.get("scheduler_options") or "",
        # a block asks for its CPUs (one Slurm task per node runs the workers, or an MPI
        # task's srun step): without cores_per_node or exclusive it would get one CPU
        cores_per_node=provider.get("cores_per_node"),
        exclusive=_exclusive(provider),
        **common,
    )


def _launcher(provider: dict):
    from parsl.launchers import SimpleLauncher, SingleNodeLauncher, SrunLauncher

    if provider["launcher"] == "srun":
        return SrunLauncher()
    return SingleNodeLauncher() if provider["kind"] == "local" else SimpleLauncher()


# Parsl's MPIExecutor learns its block's nodes from Slurm or PBS only; a local block names
# its one node in a PBS-style node file (mpiexec then runs every rank on this machine).
LOCAL_NODEFILE = 'export PBS_NODEFILE="$(mktemp)" && echo localhost > "$PBS_NODEFILE"'


def build_executor(profile: dict, label: str = "covmocks", *, mpi: bool = False):
    """The Parsl executor that a profile describes; an MPIExecutor when ``mpi`` is set or the
    profile's executor is ``mpi``."""
    provider = profile["provider"]
    common = dict(
        label=label,
        address="127.0.0.1" if provider["kind"] == "local" else None,
        heartbeat_period=5,
        heartbeat_threshold=30,  # a lost block's tasks re-run after 30 s, not 120
        encrypted=False,
    )
    if mpi or profile["executor"] == "mpi":
        from parsl.executors import MPIExecutor
        from parsl.launchers import SimpleLauncher

        if provider["kind"] == "local":
            init = "\n".join(filter(None, [LOCAL_NODEFILE, provider.get("worker_init")]))
            provider = {**provider, "worker_init": init}
        executor = MPIExecutor(
            provider=build_provider(provider, SimpleLauncher()),
            mpi_launcher=provider["mpi_launcher"],
            max_workers_per_block=provider.get("workers_per_node", 1),
            **common,
        )
        # MPIExecutor annotates interchange_launch_cmd as a str (typeguard refuses a list)
        # but hands it to Popen as HTEX does, where a str names one program: set it after.
        executor.interchange_launch_cmd = _interchange_cmd()
        return executor
    from parsl.executors import HighThroughputExecutor

    accelerators = provider.get("available_accelerators") or ()
    return HighThroughputExecutor(
        provider=build_provider(provider, _launcher(provider)),
        interchange_launch_cmd=_interchange_cmd(),
        max_workers_per_node=provider["workers_per_node"],
        available_accelerators=accelerators,
        cores_per_worker=1,
        **common,
    )


def build_config(profile: dict, directory: Path, *, monitoring: bool = True, mpi: bool = False):
    """A Parsl Config for a campaign directory: run_dir under logs/, monitoring in metadata/;
    ``mpi``: tasks run on several ranks (see build_executor).

    Retries stay with covmocks (Parsl's are immediate; the runner backs off and tells a
    lost block from a failed task).
    """
    from parsl.config import Config

    hub = None
    if monitoring:
        from parsl.monitoring import MonitoringHub

        db = (directory / "metadata" / "monitoring.db").resolve()
        hub = MonitoringHub(logging_endpoint=f"sqlite:///{db}", resource_monitoring_interval=10)
    return Config(
        executors=[build_executor(profile, mpi=mpi)],
        run_dir=str(directory / "logs" / "parsl"),
        retries=0,
        strategy="simple",
        max_idletime=60,
        monitoring=hub,
        initialize_logging=True,
    )
