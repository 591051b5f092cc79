"""Processes that do not outlive the process that started them (Linux).

A process killed with SIGKILL cannot clean up after itself: what it started lives on,
reparented to init. Two such children matter here, and both are started through this file,
run by path (``python covmocks/apps/lifeline.py ...``; it imports nothing of covmocks, so it
starts in a few tens of milliseconds and works wherever the interpreter runs):

- ``exec CMD...``: the driver's Parsl interchange (``interchange_cmd``). The process asks
  the kernel for SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``, kept across
  ``execve``), checks that its parent has not died already, and becomes ``CMD``. An
  interchange orphaned by a killed driver would otherwise keep reconnecting to its driver's
  ports and could answer a later driver that drew the same ports.
- ``group GRACE_S CMD...``: an MPI box's launcher (``mpiexec``/``srun`` and its ranks, in a
  session of their own, see ``covmocks.apps.box_task.generate_mpi``). The supervisor runs ``CMD``
  as its child in its own process group and waits for it, passing its exit status on (128 + N
  for a signal N). When its parent (the Parsl worker) dies (PR_SET_PDEATHSIG delivers
  SIGUSR1; ``getppid`` is polled too, where prctl is missing), it sends SIGTERM to the group,
  waits up to ``GRACE_S`` for ``CMD``, then SIGKILLs the group (itself included). SIGTERM
  sent to the group by the worker (``_stop_group``) reaches ``CMD`` and is ignored by the
  supervisor, which keeps waiting for ``CMD`` so that the worker sees when the ranks end.

- ``watchdog PID WALLTIME_S MARKER``: a box's walltime, enforced from outside the Python
  interpreter of the worker ``PID`` (its parent), which may be stuck in native code: after
  ``WALLTIME_S`` it writes ``MARKER`` (which makes the failure a timeout,
  ``covmocks.workflow.retry``) and SIGKILLs the worker. It ends quietly as soon as the worker
  is gone, and is killed by the worker when the box ends in time.

PR_SET_PDEATHSIG fires when the *thread* that started the process ends: both are started by
the main thread of their parent (``parsl.load`` in the driver, the task in a Parsl worker).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1
POLL_S = 0.25
SCRIPT = os.path.abspath(__file__)


def command(mode: str, *args: str) -> list[str]:
    """The command line that runs ``args`` under this file's ``mode`` (``exec``, ``group``,
    ``watchdog``)."""
    return [sys.executable, SCRIPT, mode, *args]


def set_parent_death_signal(signum: int) -> bool:
    """Ask the kernel to send ``signum`` to this process when its parent dies; False where
    prctl is unavailable (not Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _exec(cmd: list[str]) -> None:
    parent = os.getppid()
    set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took hold
        sys.exit(1)
    # (A parent that died while this interpreter started, before the first getppid, goes
    # unnoticed: a window of some tens of milliseconds. The parent's pid is not compared
    # with one named in advance: a driver may run as pid 1, in a container.)
    os.execvp(cmd[0], cmd)


def _status(returncode: int) -> int:
    return returncode if returncode >= 0 else 128 - returncode


def _group(grace_s: float, cmd: list[str]) -> int:
    parent = os.getppid()
    orphaned = []
    # Handlers (not SIG_IGN) are reset to the default in the child by execve.
    signal.signal(signal.SIGTERM, lambda *_: None)  # meant for the ranks; keep waiting
    signal.signal(signal.SIGUSR1, lambda *_: orphaned.append(True))
    set_parent_death_signal(signal.SIGUSR1)
    child = subprocess.Popen(cmd)
    while True:
        try:
            return _status(child.wait(timeout=POLL_S))
        except subprocess.TimeoutExpired:
            pass
        if orphaned or os.getppid() != parent:
            break
    # The worker is gone: end the launcher and the ranks, gently first.
    os.killpg(0, signal.SIGTERM)
    try:
        child.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    time.sleep(min(1.0, grace_s))  # ranks the launcher left, a moment to finish dying
    os.killpg(0, signal.SIGKILL)  # stragglers, and this process
    return 1


def _watchdog(pid: int, walltime_s: float, marker: str) -> int:
    deadline = time.monotonic() + walltime_s
    while time.monotonic() < deadline:
        if os.getppid() != pid:  # the worker is gone: nothing to guard
            return 0
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    with open(marker, "w") as f:
        f.write(f"walltime {walltime_s} s exceeded\n")
    os.kill(pid, signal.SIGKILL)
    return 0


def main(argv: list[str]) -> int:
    mode, *rest = argv
    if mode == "exec":
        _exec(rest)
    if mode == "group":
        return _group(float(rest[0]), rest[1:])
    if mode == "watchdog":
        return _watchdog(int(rest[0]), float(rest[1]), rest[2])
    print(f"lifeline: unknown mode {mode!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
