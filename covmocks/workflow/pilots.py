"""Parsl configurations built from a campaign's typed execution settings: its ``executor``,
``provider`` and ``launcher`` sections (``covmocks.campaign.Execution``), as Parsl separates
them.

- ``htex`` + ``local``: HighThroughputExecutor with LocalProvider (the embedded default).
- ``htex`` + ``slurm``: HighThroughputExecutor + SlurmProvider + SrunLauncher, pilot jobs
  (on GPU nodes one worker per accelerator via ``available_accelerators``).
- ``mpi`` + ``slurm``/``local``: MPIExecutor + SimpleLauncher, each task launching its ranks
  with the launcher section's ``mpi_launcher`` (srun or mpiexec) inside the block, at most
  ``executor.mpi_tasks_per_block`` tasks at once. Used when the executor's kind is ``mpi``
  or when a campaign asks for more than one rank per task.
Monitoring goes to the campaign's ``Layout.monitoring_db``, Parsl's run directories to
``Layout.parsl_runs``.
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from covmocks.apps import lifeline
from covmocks.core.layout import Layout

if TYPE_CHECKING:
    from covmocks.campaign import Execution, LauncherValues, ProviderValues

log = logging.getLogger(__name__)
BIN = Path(sys.executable).parent


# Runs interchange.py with logging's handler errors silenced: on a full disk its log file
# cannot be written, and each record would print a traceback to the driver's console.
QUIET_RUN = (
    "import logging, runpy, sys; logging.raiseExceptions = False; "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


def _interchange_cmd() -> list[str]:
    """The driver starts interchange.py; name it explicitly, PATH may lack the venv's bin.

    Through ``covmocks.apps.lifeline`` (``exec``): the interchange dies with its driver (SIGKILL
    on the parent's death). An interchange that outlives a killed driver keeps reconnecting
    to that driver's ports, and a later driver that binds one of them again was answered
    by the orphan (its blocks sent to the orphan's worker port: the campaign stalls).
    """
    script = BIN / "interchange.py"
    if not script.exists():
        script = Path(shutil.which("interchange.py") or "interchange.py")
    return lifeline.command("exec", sys.executable, "-c", QUIET_RUN, str(script))


def _worker_init(provider: ProviderValues, first: str = "") -> str:
    """Put this Python's bin first on PATH (process_worker_pool.py), then ``first``, then the
    profile's lines."""
    lines = [f"export PATH={BIN}:$PATH", first, provider.worker_init]
    return "\n".join(filter(None, lines))


def _exclusive(provider: ProviderValues) -> bool:
    """Whole nodes for a Slurm block: as the profile says, else when the nodes have GPUs."""
    if provider.exclusive is not None:
        return provider.exclusive
    return provider.gpus_per_node > 0


def build_provider(provider: ProviderValues, launcher, *, worker_init: str = ""):
    """The Parsl provider of a campaign's ``provider`` section, starting its workers with
    ``launcher`` (a Parsl launcher) after ``worker_init`` and the section's own lines.

    Slurm: ``PilotSlurmProvider`` (see its docstring), polling every ``status_polling_s``.
    """
    from parsl.providers import LocalProvider

    from covmocks.workflow.slurm_provider import PilotSlurmProvider

    common = dict(
        nodes_per_block=provider.nodes_per_block,
        init_blocks=provider.init_blocks,
        min_blocks=provider.min_blocks,
        max_blocks=provider.max_blocks,
        worker_init=_worker_init(provider, worker_init),
        launcher=launcher,
    )
    if provider.kind == "local":
        return LocalProvider(**common)
    slurm = {k: getattr(provider, k) for k in ("account", "qos", "constraint", "partition")}
    return PilotSlurmProvider(
        **{k: v for k, v in slurm.items() if v},
        status_polling_s=provider.status_polling_s,
        walltime=provider.walltime,
        scheduler_options=provider.scheduler_options,
        # a block asks for its CPUs (one Slurm task per node runs the workers, or an MPI
        # task's srun step): without cores_per_node or exclusive it would get one CPU
        cores_per_node=provider.cores_per_node,
        gpus_per_node=provider.gpus_per_node or None,  # #SBATCH --gpus-per-node
        exclusive=_exclusive(provider),
        **common,
    )


def _launcher(launcher: LauncherValues, provider: ProviderValues):
    """The Parsl launcher that starts a block's workers."""
    from parsl.launchers import SimpleLauncher, SingleNodeLauncher, SrunLauncher

    if launcher.kind == "srun":
        return SrunLauncher()
    return SingleNodeLauncher() if provider.kind == "local" else SimpleLauncher()


# Parsl's MPIExecutor learns its block's nodes from Slurm or PBS only; a local block names
# its one node in a PBS-style node file (mpiexec then runs every rank on this machine).
LOCAL_NODEFILE = 'export PBS_NODEFILE="$(mktemp)" && echo localhost > "$PBS_NODEFILE"'


def build_executor(execution: Execution, label: str = "covmocks", *, mpi: bool = False):
    """The Parsl executor that a campaign's execution settings describe; an MPIExecutor when
    ``mpi`` is set or the executor's kind is ``mpi``."""
    executor, provider, launcher = execution.executor, execution.provider, execution.launcher
    common = dict(
        label=label,
        address="127.0.0.1" if provider.kind == "local" else None,
        # a dead worker is seen within a period; a silent block's tasks re-run after the
        # threshold (30 s by default, not Parsl's 120)
        heartbeat_period=executor.heartbeat_period_s,
        heartbeat_threshold=executor.heartbeat_threshold_s,
        # CurveZMQ, with keys made per run (in its run directory): an interchange or worker
        # pool left by an earlier driver cannot talk to this driver or its interchange,
        # whatever ports they share
        encrypted=True,
    )
    if mpi or executor.kind == "mpi":
        from parsl.executors import MPIExecutor
        from parsl.launchers import SimpleLauncher

        init = LOCAL_NODEFILE if provider.kind == "local" else ""
        parsl_executor = MPIExecutor(
            provider=build_provider(provider, SimpleLauncher(), worker_init=init),
            mpi_launcher=launcher.mpi_launcher,
            max_workers_per_block=executor.mpi_tasks_per_block,
            **common,
        )
        # MPIExecutor annotates interchange_launch_cmd as a str (typeguard refuses a list)
        # but hands it to Popen as HTEX does, where a str names one program: set it after.
        parsl_executor.interchange_launch_cmd = _interchange_cmd()
        return parsl_executor
    from parsl.executors import HighThroughputExecutor

    return HighThroughputExecutor(
        provider=build_provider(provider, _launcher(launcher, provider)),
        interchange_launch_cmd=_interchange_cmd(),
        max_workers_per_node=executor.workers_per_node,
        available_accelerators=executor.available_accelerators or (),
        cores_per_worker=1,
        cpu_affinity=executor.cpu_affinity,
        **common,
    )


def build_config(
    execution: Execution, directory: Path, *, monitoring: bool = True, mpi: bool = False
):
    """A Parsl Config for a campaign directory: run_dir under logs/, monitoring in metadata/;
    ``execution``: the campaign's (``campaign.execution``); ``mpi``: tasks run on several
    ranks (see build_executor).

    Retries stay with covmocks (Parsl's are immediate; the runner backs off and tells a
    lost block from a failed task).
    """
    from parsl.config import Config

    layout = Layout(Path(directory))
    hub = None
    if monitoring:
        from parsl.monitoring import MonitoringHub

        db = layout.monitoring_db.resolve()
        hub = MonitoringHub(logging_endpoint=f"sqlite:///{db}", resource_monitoring_interval=10)
    return Config(
        executors=[build_executor(execution, mpi=mpi)],
        run_dir=str(layout.parsl_runs),
        retries=0,
        strategy="simple",
        max_idletime=60,
        monitoring=hub,
        initialize_logging=True,
    )
