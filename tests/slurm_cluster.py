"""Pytest helper: the local one-node Slurm cluster of ``scripts/slurm-cluster.sh``.

Register the fixture in a test module with::

    from tests.slurm_cluster import slurm_cluster  # noqa: F401

or for the whole suite with ``pytest_plugins = ["tests.slurm_cluster"]`` in the top conftest.

The session fixture ``slurm_cluster``

1. uses a cluster that already answers ``sinfo`` (with ``$SLURM_CONF``, else with the script's
   state directory ``$COVMOCKS_SLURM_DIR`` or ``/tmp/covmocks-slurm``);
2. else starts one with ``scripts/slurm-cluster.sh start`` when running as root and the Slurm
   binaries are installed, and leaves it running (another pytest session on the machine may
   have found it meanwhile; ``scripts/slurm-cluster.sh stop`` ends it, or set
   ``COVMOCKS_SLURM_STOP=1`` to stop it at the end of the session that started it); a start
   that fails is a test error, not a skip;
3. else skips, saying why (not installed, or not root): ``require_or_skip("slurm", why)``,
   a failure where ``$COVMOCKS_REQUIRE`` has ``slurm`` (tests/conftest.py).

While it is active ``SLURM_CONF`` is set in ``os.environ``, so ``sbatch``/``squeue`` called by
the tests and by Parsl's ``SlurmProvider`` find the cluster.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require_or_skip

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "slurm-cluster.sh"
PARTITION = "debug"
USABLE_STATES = {"idle", "mixed", "allocated", "completing"}


@dataclass(frozen=True)
class SlurmCluster:
    """A running local cluster: its configuration file and partition."""

    conf: Path
    partition: str
    cpus: int
    started_here: bool

    def env(self) -> dict[str, str]:
        """``os.environ`` with ``SLURM_CONF`` pointing at this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def job_states(self, job_ids) -> dict[str, str]:
        """Job id -> state, finished jobs included (squeue keeps them for MinJobAge, 300 s)."""
        out = subprocess.run(
            ["squeue", "--noheader", "--states=all", "--format=%i %T",
             "--jobs=" + ",".join(job_ids)],
            capture_output=True, text=True, env=self.env(),
        ).stdout  # fmt: skip
        return dict(line.split() for line in out.splitlines() if line.strip())


def wait_for(predicate, timeout, what):
    """The first truthy value of ``predicate()``, polled every 0.2 s; AssertionError after
    ``timeout`` seconds, naming ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def default_conf() -> Path:
    state = Path(os.environ.get("COVMOCKS_SLURM_DIR", "/tmp/covmocks-slurm"))
    return state / "slurm.conf"


def probe(conf: Path) -> int | None:
    """CPUs of the first usable node of ``PARTITION`` under ``conf``, or None if none answers."""
    if shutil.which("sinfo") is None or not conf.is_file():
        return None
    pidfile = conf.parent / "run" / "slurmctld.pid"
    if conf.parent.joinpath("munge").is_dir() and not _pid_alive(pidfile):
        # The script's state directory, but its slurmctld is gone: sinfo would only wait
        # MessageTimeout for an answer.
        return None
    try:
        out = subprocess.run(
            ["sinfo", "--noheader", f"--partition={PARTITION}", "--format=%T %c"],
            env={**os.environ, "SLURM_CONF": str(conf)},
            capture_output=True,
            text=True,
            timeout=15,
        )
    except subprocess.TimeoutExpired:
        logger.warning("sinfo with SLURM_CONF=%s timed out", conf)
        return None
    if out.returncode != 0:
        logger.info("sinfo with SLURM_CONF=%s failed: %s", conf, out.stderr.strip())
        return None
    for line in out.stdout.splitlines():
        state, _, cpus = line.strip().partition(" ")
        if state.rstrip("*~#!%$@^-") in USABLE_STATES:
            return int(cpus)
    logger.info("no usable node in partition %s: %r", PARTITION, out.stdout)
    return None


def _pid_alive(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


def start_cluster() -> None:
    """Run ``scripts/slurm-cluster.sh start``; pytest.fail with its output if it fails."""
    try:
        res = subprocess.run(
            ["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=180
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"scripts/slurm-cluster.sh start hung for {exc.timeout} s")
    if res.returncode != 0:
        pytest.fail(
            f"scripts/slurm-cluster.sh start failed (exit {res.returncode}):\n"
            f"{res.stdout}\n{res.stderr}"
        )


def stop_cluster() -> None:
    res = subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        logger.warning("slurm-cluster.sh stop failed: %s", res.stderr.strip())


def ensure_cluster() -> SlurmCluster:
    """Find or start the cluster, or ``require_or_skip("slurm", why)``."""
    candidates = []
    if os.environ.get("SLURM_CONF"):
        candidates.append(Path(os.environ["SLURM_CONF"]))
    candidates.append(default_conf())
    for conf in candidates:
        cpus = probe(conf)
        if cpus is not None:
            return SlurmCluster(conf=conf, partition=PARTITION, cpus=cpus, started_here=False)
    missing = [b for b in ("slurmctld", "slurmd", "sbatch", "munged") if shutil.which(b) is None]
    if missing:
        require_or_skip(
            "slurm",
            f"slurm-wlm not installed ({', '.join(missing)} missing): run "
            "scripts/slurm-cluster.sh install, then scripts/slurm-cluster.sh start",
        )
    if os.geteuid() != 0:
        require_or_skip(
            "slurm",
            "no Slurm cluster answers sinfo and starting one needs root: run "
            "`sudo scripts/slurm-cluster.sh start` and "
            '`eval "$(scripts/slurm-cluster.sh env)"`',
        )
    start_cluster()
    conf = default_conf()
    cpus = probe(conf)
    if cpus is None:
        pytest.fail(f"scripts/slurm-cluster.sh start succeeded but sinfo ({conf}) shows no node")
    return SlurmCluster(conf=conf, partition=PARTITION, cpus=cpus, started_here=True)


@pytest.fixture(scope="session")
def slurm_cluster():
    """The running local Slurm cluster (see the module docstring)."""
    cluster = ensure_cluster()
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        if cluster.started_here and os.environ.get("COVMOCKS_SLURM_STOP") == "1":
            stop_cluster()
