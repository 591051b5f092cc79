"""``covmocks run --dry-run``: what a run would do up to starting Parsl, and nothing more.

Plans the campaign (leaving the manifest alone while a driver runs), builds the Parsl Config
the run would load (``covmocks.workflow.driver.parsl_config``), lets Parsl render the script of one
pilot block per executor into ``logs/dry-run/``, and prints the configuration with a summary. No
interchange, worker or monitoring hub starts, and nothing reaches sbatch.

What exists only once a driver runs is left as placeholders: the interchange's addresses and
worker port, and the run's numbered directory under ``logs/parsl/``.
"""

from __future__ import annotations

from pathlib import Path

from covmocks.workflow.driver import Runner, parsl_config
from covmocks.workflow.driver_lock import driver_alive
from covmocks.workflow.metadata import check_science, science_record, write_plan
from covmocks.workflow.plan import make_plan

ADDRESSES = "<interchange-addresses>"
PORT = "<interchange-worker-port>"
RUN_NUMBER = "<run-number>"
BLOCK = "0"


def _plan(campaign):
    """The plan a run would make, written as the run writes it unless a driver runs now;
    returns it with that driver's description (or None)."""
    driver = driver_alive(campaign.layout.lock)
    if driver is None:
        return write_plan(campaign), None
    plan = make_plan(campaign)
    check_science(campaign, science_record(campaign, plan))
    return plan, driver


def _block_script(executor, run_dir: str, directory: Path) -> tuple[Path, str]:
    """Write the script that starts one block of ``executor``; returns its path and the
    worker command in it."""
    from parsl.providers.cluster_provider import ClusterProvider

    # what executor.start() fills in once the interchange runs, and the DFK's run directory
    executor.run_dir = f"{run_dir}/{RUN_NUMBER}"
    executor.all_addresses = [executor.address or ADDRESSES]
    executor.worker_port = executor.worker_port or PORT
    executor.logconf_path = None  # Config(initialize_logging=True) gives workers no log config
    executor.initialize_scaling()  # composes the worker command; starts nothing
    command = executor._get_launch_command(BLOCK)
    provider = executor.provider
    script_dir = f"{executor.run_dir}/submit_scripts"
    if isinstance(provider, ClusterProvider):
        # Parsl renders its template and hands the script to sbatch (execute_wait): answer
        # that call here, so nothing is submitted.
        submitted = []

        def submit(cmd, timeout=None):
            submitted.append(cmd.split()[-1])
            return 0, "Submitted batch job dry-run", ""

        provider.script_dir = str(directory)
        provider.execute_wait = submit
        executor._launch_block(BLOCK)
        rendered = Path(submitted[0])
        text = rendered.read_text().replace(str(directory), script_dir)
        rendered.unlink()
    else:  # LocalProvider.submit runs its script at once: compose the same script here
        job = f"parsl.{executor.label}.block-{BLOCK}"
        wrapped = provider.launcher(command, 1, provider.nodes_per_block, script_dir)
        text = f"#!/bin/bash\n{provider.worker_init}\nexport JOBNAME={job}\n{wrapped}\n"
    shebang, _, body = text.partition("\n")
    note = (f"# covmocks dry run: the script {type(provider).__name__} runs for each block of "
            f"executor {executor.label}.\n# For reading, not for running: {_placeholders(text)}"
            " are known only once a driver runs.\n")  # fmt: skip
    path = directory / f"{executor.label}.block-{BLOCK}.sh"
    path.write_text(f"{shebang}\n{note}{body}")
    return path, command


def _placeholders(text: str) -> str:
    names = [p for p in (ADDRESSES, PORT, RUN_NUMBER) if p in text]
    return f"{', '.join(names[:-1])} and {names[-1]}" if len(names) > 1 else names[0]


def _executor_reason(campaign, mpi: bool) -> str:
    name = campaign.profile.name
    if campaign.execution.executor.kind == "mpi":
        return f"profile {name} says executor: mpi"
    ranks = max(campaign.resources_for(z).ranks for z in campaign.science.redshifts)
    if mpi:
        return f"tasks ask for up to {ranks} MPI ranks (resources.ranks)"
    return f"profile {name} says executor: htex, and every task runs on one rank"


def _blocks(executor, mpi: bool) -> str:
    p = executor.provider
    if mpi:
        workers = f"at most {executor.max_workers_per_block} MPI task(s) at once per block"
    else:
        workers = f"{executor.max_workers_per_node} worker(s) per node"
        if executor.available_accelerators:
            workers += f", one per accelerator {' '.join(executor.available_accelerators)}"
    return (f"{type(p).__name__}: {p.init_blocks} at start, {p.min_blocks} to {p.max_blocks} "
            f"blocks of {p.nodes_per_block} node(s), {workers}")  # fmt: skip


def dry_run(campaign, *, monitoring: bool = True, retry: list[str] | None = None) -> int:
    """Plan, build the run's Parsl Config, write block scripts, print it all; start nothing."""
    plan, driver = _plan(campaign)
    tasks = Runner(campaign, retry=retry).runnable(plan)
    config, mpi = parsl_config(campaign, monitoring=monitoring)
    shown = "\n".join(line.rstrip() for line in repr(config).splitlines())  # before scripts
    directory = campaign.layout.dry_run
    directory.mkdir(parents=True, exist_ok=True)
    scripts = [_block_script(e, config.run_dir, directory) for e in config.executors]
    counts = plan.counts
    skipped = counts["todo"] - len(tasks)
    print(f"Parsl configuration (as the run would load it):\n{shown}\n")
    print(f"campaign  {campaign.name} version {campaign.version} in {campaign.directory}")
    print(f"tasks     {len(tasks)} to run; " + ", ".join(f"{k} {v}" for k, v in counts.items())
          + (f"; {skipped} failed before, left to covmocks retry" if skipped else ""))  # fmt: skip
    if not tasks:
        print("          nothing to run: a run would stop here, before starting Parsl")
    if driver:
        print(f"driver    running: {driver}; a run now would be refused (plan not written)")
    else:
        print(f"plan      written: {campaign.layout.metadata}")
    for executor, (path, command) in zip(config.executors, scripts, strict=True):
        print(f"executor  {'mpi' if mpi else 'htex'} ({type(executor).__name__}): "
              f"{_executor_reason(campaign, mpi)}")  # fmt: skip
        print(f"blocks    {_blocks(executor, mpi)}")
        print(f"script    {path}")
        print(f"worker    {command}")
    hub = config.monitoring
    print(f"monitoring {hub.logging_endpoint if hub else 'off'}")
    unknown = _placeholders(" ".join(command for _, command in scripts))
    print(f"started nothing (no interchange, workers or monitoring), submitted nothing; {unknown} "
          "are filled in by a real run")  # fmt: skip
    return 0
