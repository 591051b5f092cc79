"""Fault injection for rehearsals and tests: make chosen tasks fail on their workers.

A campaign directory may hold ``metadata/faults.json`` (``Layout.faults``)::

    {"r0000_z0.000": {"action": "raise", "times": 2}}

``raise`` throws a transient error, ``kill`` SIGKILLs the worker process (as a node
failure would), ``hang`` sleeps past any walltime, ``sleep`` waits ``seconds`` (default 60)
and then runs the box normally (a slow box), ``wait`` waits until the file ``until`` exists
(at most ``seconds``, default 600) and then runs the box: a test holds a box at its start
and lets it go at the moment it chooses. A fault with ``"stage": "measure"`` fires in
the box's clustering measurement instead (after the box is made). Each fault fires
``times`` times (default 1) per task, counted in ``logs/<task>.faults`` (``.measure-faults``
for the measurement) so the count survives workers and drivers. Without the file nothing
happens.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path


class InjectedFault(RuntimeError):
    """A transient failure injected on purpose."""


def inject(path: Path, task_id: str, log_stem: Path, stage: str = "box") -> None:
    """Fire this task's fault at ``stage`` (``box`` or ``measure``) if the faults file
    ``path`` plans one not yet used up."""
    if not path.exists():
        return
    fault = json.loads(path.read_text()).get(task_id)
    if fault is None or fault.get("stage", "box") != stage:
        return
    counter = Path(f"{log_stem}.faults" if stage == "box" else f"{log_stem}.{stage}-faults")
    fired = len(counter.read_text().splitlines()) if counter.exists() else 0
    if fired >= fault.get("times", 1):
        return
    with open(counter, "a") as f:
        f.write(f"{fault['action']} {time.time()}\n")
    if fault["action"] == "raise":
        raise InjectedFault(f"injected fault {fired + 1} of {fault.get('times', 1)}")
    if fault["action"] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if fault["action"] == "hang":
        time.sleep(10**6)
    if fault["action"] == "sleep":
        time.sleep(fault.get("seconds", 60))
    if fault["action"] == "wait":
        deadline = time.monotonic() + fault.get("seconds", 600)
        while not Path(fault["until"]).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
