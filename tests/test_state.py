"""Campaign status from the plan, the journal and the logs: what each task is doing now."""

import time

from covmocks import state
from tests.test_plan import campaign, finish

SIX_TASKS = """\
campaign: {name: st, seed: 1}
science:
  source: synthetic
  n_hosts: 100
  realizations: {first: 0, last: 2}
  redshifts: [0.0, 1.0]
"""


def _journal(c, events: dict[str, str]) -> None:
    journal = state.Journal(c.directory)
    for tid, event in events.items():
        journal.write(tid, event, **({"error": "boom", "attempt": 3} if event == "failed" else {}))
    journal.close()


def test_states_with_and_without_a_running_driver(tmp_path):
    c = campaign(tmp_path, SIX_TASKS)
    tasks = {t.task_id: t for t in c.plan().tasks}
    finish(tasks["r0000_z0.000"])
    _journal(c, {"r0000_z0.000": "done", "r0000_z1.000": "submitted", "r0001_z0.000": "submitted",
                 "r0001_z1.000": "retry", "r0002_z0.000": "failed"})  # fmt: skip
    # r0000_z1.000 has started on a worker (its .err log is touched after submission);
    # r0001_z0.000 waits in Parsl's queue (no log yet)
    err = tasks["r0000_z1.000"].log_stem.parent / "r0000_z1.000.err"
    err.parent.mkdir(parents=True, exist_ok=True)
    time.sleep(0.01)
    err.touch()

    with state.DriverLock(c.directory):
        st = state.campaign_status(c)
        assert st.driver.startswith("pid ")
        assert state.task_states(c.plan(), state.Journal(c.directory).read(), c.directory) == {
            "r0000_z0.000": "done", "r0000_z1.000": "running", "r0001_z0.000": "queued",
            "r0001_z1.000": "retry_wait", "r0002_z0.000": "failed", "r0002_z1.000": "todo",
        }  # fmt: skip
    assert st.counts == {"done": 1, "running": 1, "queued": 1, "retry_wait": 1, "failed": 1,
                         "blocked": 0, "todo": 1}  # fmt: skip
    assert st.by_snapshot["1.000"] == {"done": 0, "running": 1, "queued": 0, "retry_wait": 1,
                                       "failed": 0, "blocked": 0, "todo": 1}  # fmt: skip
    assert st.done_last_hour == 1 and st.eta_s == 4 * 3600.0  # 4 left at 1 per hour
    (failed,) = st.failed
    assert failed == {"task": "r0002_z0.000", "error": "boom", "attempts": 3,
                      "log": str(tasks["r0002_z0.000"].log_stem) + ".err"}  # fmt: skip

    # no driver: nothing is in flight, whatever the journal's last word
    st = state.campaign_status(c)
    assert st.driver is None
    assert st.counts == {"done": 1, "running": 0, "queued": 0, "retry_wait": 0, "failed": 1,
                         "blocked": 0, "todo": 4}  # fmt: skip
