"""Generate and validate one box inside a Parsl worker.

The worker stays warm between boxes: JAX, the diffsky stack and the compiled kernels are
loaded once per worker process, and JAX's persistent compilation cache (in the campaign
directory) spares new workers most of the compile time.

Walltime is enforced from outside the Python interpreter: a watchdog process kills the
worker with SIGKILL when the box overruns (a Python-level timeout cannot interrupt a long
XLA call) and leaves a ``<log_stem>.timeout`` marker so the driver records a timeout.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

WATCHDOG = """
import os, signal, sys, time
pid, walltime, marker = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
deadline = time.monotonic() + walltime
while time.monotonic() < deadline:
    if os.getppid() != pid:  # the worker is gone: nothing to guard
        sys.exit(0)
    time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
with open(marker, "w") as f:
    f.write(f"walltime {walltime} s exceeded\\n")
os.kill(pid, signal.SIGKILL)
"""


@contextlib.contextmanager
def watchdog(walltime_s: float, marker: Path):
    """Kill this process with SIGKILL after ``walltime_s`` unless the block ends first."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WATCHDOG, str(os.getpid()), str(walltime_s), str(marker)]
    )
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def task_logs(log_stem: Path):
    """Send this task's stdout, stderr and covmocks logging to ``<log_stem>.out/.err``."""
    log_stem.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{log_stem}.out", "a") as out, open(f"{log_stem}.err", "a") as err:
        handler = logging.StreamHandler(err)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger = logging.getLogger("covmocks")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                yield
        finally:
            logger.removeHandler(handler)


def _remove_stale_temporaries(output: Path) -> None:
    """Temporary files of this catalog left by a killed worker (never the final file)."""
    for tmp in output.parent.glob(f".{output.name}.tmp-*"):
        tmp.unlink(missing_ok=True)


def generate_and_validate(spec: dict) -> dict:
    """Run one box described by ``spec`` (plain data, see covmocks.run.task_spec).

    Skips generation when the catalog already exists (a driver died before validating).
    Returns the QA record.
    """
    import covmocks  # noqa: F401  (XLA flag before jax)
    from covmocks import faults, generator, halos, jaxenv, model, validation
    from covmocks.catalog import OutputExistsError

    log_stem = Path(spec["log_stem"])
    output = Path(spec["output"])
    with task_logs(log_stem), watchdog(spec["walltime_s"], Path(f"{log_stem}.timeout")):
        log = logging.getLogger("covmocks.apps.box")
        log.info("task %s on %s pid %d", spec["task_id"], os.uname().nodename, os.getpid())
        faults.inject(spec["campaign_dir"], spec["task_id"], log_stem)
        wall_s = None
        if not output.exists():
            jaxenv.enable_compilation_cache(spec["jax_cache"])
            _remove_stale_temporaries(output)
            t0 = time.perf_counter()
            source = halos.open_source(
                spec["source"], spec["input"], redshift=spec["redshift"],
                log10_mmin_msun=spec["log10_mmin_msun"], n_hosts=spec["n_hosts"],
                seed=spec["halo_seed"],
            )  # fmt: skip
            request = generator.BoxRequest(
                output=output, seed=spec["seed"], realization=spec["realization"],
                snapshot=spec["snapshot"], max_hosts=spec["chunk_hosts"],
                compression=spec["compression"],
            )  # fmt: skip
            try:
                generator.generate_box(
                    source, model.get_model(spec["model"], spec["model_params"]), request
                )
            except OutputExistsError:
                # another worker of this task (e.g. orphaned by a killed driver) finished
                # first; same seed, same catalog: validate that one
                log.warning("catalog appeared while writing, keeping it: %s", output)
            wall_s = time.perf_counter() - t0
        else:
            log.info("catalog exists, validating only: %s", output)
        try:
            return validation.validate(output, spec["qa_record"], task_id=spec["task_id"],
                                       wall_s=wall_s)  # fmt: skip
        except validation.ValidationError:
            output.rename(output.with_name(output.name + ".invalid"))
            raise
