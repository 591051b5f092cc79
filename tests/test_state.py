"""Campaign status from the plan, the journal and the logs: what each task is doing now."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from covmocks.core.errors import CovmocksError
from covmocks.workflow.driver_lock import DriverLock, driver_alive
from covmocks.workflow.journal import Journal
from covmocks.workflow.plan import make_plan
from covmocks.workflow.status import campaign_status, task_states
from tests.test_plan import SYNTHETIC, finish

SIX_TASKS = {
    "campaign": {"name": "st"},
    "science": {"realizations": {"first": 0, "last": 2}, "redshifts": [0.0, 1.0]},
}


def _journal(c, events: dict[str, str]) -> None:
    journal = Journal(c.layout.journal)
    for tid, event in events.items():
        journal.write(tid, event, **({"error": "boom", "attempt": 3} if event == "failed" else {}))
    journal.close()


def test_states_with_and_without_a_running_driver(make_campaign):
    c = make_campaign(SIX_TASKS)
    tasks = {t.task_id: t for t in make_plan(c).tasks}
    finish(tasks["r0000_z0.000"])
    _journal(c, {"r0000_z0.000": "done", "r0000_z1.000": "submitted", "r0001_z0.000": "submitted",
                 "r0001_z1.000": "retry", "r0002_z0.000": "failed"})  # fmt: skip
    # r0000_z1.000 has started on a worker (its .err log is touched after submission);
    # r0001_z0.000 waits in Parsl's queue (no log yet)
    err = c.layout.logs / "r0000_z1.000.err"
    assert err == Path(f"{tasks['r0000_z1.000'].log_stem}.err")
    err.parent.mkdir(parents=True, exist_ok=True)
    time.sleep(0.01)
    err.touch()

    with DriverLock(c.layout.lock):
        st = campaign_status(c)
        assert st.driver.startswith("pid ")
        driver = driver_alive(c.layout.lock)
        assert driver == st.driver
        events = Journal(c.layout.journal).read()
        assert task_states(make_plan(c), events, driver) == {
            "r0000_z0.000": "done", "r0000_z1.000": "running", "r0001_z0.000": "queued",
            "r0001_z1.000": "retry_wait", "r0002_z0.000": "failed", "r0002_z1.000": "todo",
        }  # fmt: skip
    assert st.counts == {"done": 1, "running": 1, "queued": 1, "retry_wait": 1, "failed": 1,
                         "blocked": 0, "todo": 1}  # fmt: skip
    assert st.by_redshift["1.000"] == {"done": 0, "running": 1, "queued": 0, "retry_wait": 1,
                                       "failed": 0, "blocked": 0, "todo": 1}  # fmt: skip
    assert st.done_last_hour == 1 and st.eta_s == 4 * 3600.0  # 4 left at 1 per hour
    (failed,) = st.failed
    assert failed == {"task": "r0002_z0.000", "error": "boom", "attempts": 3,
                      "log": str(tasks["r0002_z0.000"].log_stem) + ".err"}  # fmt: skip

    # no driver: nothing is in flight, whatever the journal's last word
    assert driver_alive(c.layout.lock) is None
    states = task_states(make_plan(c), Journal(c.layout.journal).read(), None)
    assert states["r0000_z1.000"] == states["r0001_z0.000"] == states["r0001_z1.000"] == "todo"
    assert states["r0002_z0.000"] == "failed"
    st = campaign_status(c)
    assert st.driver is None
    assert st.counts == {"done": 1, "running": 0, "queued": 0, "retry_wait": 0, "failed": 1,
                         "blocked": 0, "todo": 4}  # fmt: skip


# --- the journal file: torn last line, corrupt lines, blank lines ------------------------


def _events(journal):
    return [(e["task"], e["event"]) for e in journal.read()]


def _journal_in(tmp_path) -> Journal:
    """A journal where a campaign keeps it, under a ``metadata/`` not made yet."""
    return Journal(tmp_path / "metadata" / "events.jsonl")


def _write(tmp_path, *events):
    journal = _journal_in(tmp_path)
    for task, event in events:
        journal.write(task, event)
    journal.close()
    return journal


def test_journal_round_trip_and_missing_file(tmp_path):
    assert _journal_in(tmp_path).read() == []
    journal = _write(tmp_path, ("a", "submitted"), ("a", "done"))
    _write(tmp_path, ("b", "submitted"))  # a second writer appends
    assert _events(journal) == [("a", "submitted"), ("a", "done"), ("b", "submitted")]
    assert journal.path.read_bytes().endswith(b"\n")


def test_torn_last_line_is_ignored_and_cut_off_by_the_next_writer(tmp_path, caplog):
    journal = _write(tmp_path, ("a", "submitted"), ("a", "retry"))
    with open(journal.path, "ab") as f:  # the driver was killed mid-write
        f.write(b'{"t": 1.0, "task": "a", "ev')
    assert _events(journal) == [("a", "submitted"), ("a", "retry")]

    with caplog.at_level("WARNING", logger="covmocks.workflow.journal"):
        _write(tmp_path, ("a", "submitted"), ("a", "done"))
    assert "torn last line" in caplog.text and '"ev' in caplog.text
    assert _events(journal) == [("a", "submitted"), ("a", "retry"), ("a", "submitted"),
                                ("a", "done")]  # fmt: skip
    assert b'"ev{' not in journal.path.read_bytes()  # the fragment is gone, not glued


def test_torn_last_line_of_garbage_bytes(tmp_path):
    journal = _write(tmp_path, ("a", "submitted"))
    with open(journal.path, "ab") as f:  # a crash can leave a tail of zeros or stray bytes
        f.write(b"\x00\x00\xff\xfe")
    assert _events(journal) == [("a", "submitted")]
    _write(tmp_path, ("a", "done"))
    assert _events(journal) == [("a", "submitted"), ("a", "done")]


def test_torn_journal_of_one_line(tmp_path):
    journal = _journal_in(tmp_path)
    journal.path.parent.mkdir(parents=True)
    journal.path.write_bytes(b'{"t": 1.0, "ta')
    assert journal.read() == []
    _write(tmp_path, ("a", "done"))
    assert _events(journal) == [("a", "done")]


def test_whole_last_event_without_newline_is_kept(tmp_path):
    journal = _write(tmp_path, ("a", "submitted"))
    with open(journal.path, "ab") as f:
        f.write(b'{"t": 2.0, "task": "a", "event": "done"}')
    assert _events(journal) == [("a", "submitted"), ("a", "done")]
    _write(tmp_path, ("b", "submitted"))  # ends that line rather than cutting it
    assert _events(journal) == [("a", "submitted"), ("a", "done"), ("b", "submitted")]


def _corrupt(tmp_path, *bad_lines: bytes):
    journal = _write(tmp_path, ("a", "submitted"))
    with open(journal.path, "ab") as f:
        for bad in bad_lines:
            f.write(bad + b"\n")
            f.write(b'{"t": 2.0, "task": "a", "event": "retry"}\n')
    return journal


def test_corrupt_middle_line_is_reported_with_its_line_number(tmp_path):
    journal = _corrupt(tmp_path, b'{"t": 1.0, "task": "a", "ev')
    with pytest.raises(CovmocksError) as err:
        journal.read()
    message = str(err.value)
    assert str(journal.path) in message
    assert "line 2 " in message and '"task": "a", "ev' in message
    assert "\n" not in message  # the command line prints it as one line


def test_every_corrupt_line_is_counted(tmp_path):
    journal = _corrupt(tmp_path, b"garbage", b"[1, 2]", b'{"task": "a"}', b"\xff\xfe")
    with pytest.raises(CovmocksError, match=r"line 2 .*'garbage'.*3 more corrupt lines: 4, 6, 8"):
        journal.read()


def test_an_event_whose_time_or_task_is_not_one_is_corrupt(tmp_path):
    """A hand-edited journal: status computes with the time and looks tasks up by id."""
    journal = _corrupt(tmp_path, b'{"t": null, "task": "a", "event": "done"}',
                       b'{"t": "noon", "task": "a", "event": "done"}',
                       b'{"t": true, "task": "a", "event": "done"}',
                       b'{"t": 1.0, "task": 7, "event": "done"}')  # fmt: skip
    with pytest.raises(CovmocksError, match=r"line 2 .*3 more corrupt lines: 4, 6, 8"):
        journal.read()


def test_status_shows_a_threshold_that_is_no_number(make_campaign, capsys):
    """thresholds.json edited by hand (a threshold of null): status says so in its line."""
    import json

    from covmocks.cli import main as cli

    sample = {"name": "n3", "select": "mstar", "number_density": 1e-3}
    c = make_campaign(SYNTHETIC, clustering={"samples": [sample]})
    assert cli.main(["plan", str(c.path)]) == 0
    c.layout.thresholds.write_text(json.dumps({"0.000": {"n3": {"threshold": None}}}))
    assert cli.main(["status", str(c.path)]) == 0
    assert "z=0.000: n3: None (not a number)" in capsys.readouterr().out


def test_excerpt_is_short(tmp_path):
    journal = _corrupt(tmp_path, b"x" * 5000)
    with pytest.raises(CovmocksError) as err:
        journal.read()
    assert len(str(err.value)) < 400


def test_corrupt_journal_stops_status_with_one_line(make_campaign):
    c = make_campaign(SIX_TASKS)
    _journal(c, {"r0000_z0.000": "submitted"})
    with open(c.layout.journal, "ab") as f:
        f.write(b"not json\n")
    with pytest.raises(CovmocksError, match="events.jsonl: line 2 "):
        campaign_status(c)


def test_blank_lines_are_skipped(tmp_path):
    journal = _write(tmp_path, ("a", "submitted"))
    with open(journal.path, "ab") as f:
        f.write(b"\n   \n")
    _write(tmp_path, ("a", "done"))
    with open(journal.path, "ab") as f:
        f.write(b"\n  ")  # a blank unterminated last line, too
    assert _events(journal) == [("a", "submitted"), ("a", "done")]


def test_drivers_start_while_status_probes_the_lock_in_a_tight_loop(tmp_path):
    """``driver_alive`` holds the lock shared for an instant; a driver starting then waits
    for it instead of being refused ("already being run by a driver")."""
    lock = tmp_path / "metadata" / "driver.lock"
    lock.parent.mkdir()
    lock.touch()
    code = (
        "import time\nfrom pathlib import Path\n"
        "from covmocks.workflow.driver_lock import driver_alive\n"
        "end = time.monotonic() + 60\nprint('probing', flush=True)\n"
        f"while time.monotonic() < end:\n    driver_alive(Path({str(lock)!r}))\n"
    )
    prober = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert prober.stdout.readline().strip() == "probing"
        end = time.monotonic() + 2.0
        while time.monotonic() < end:  # thousands of starts; one in 30 to 100 meets a probe
            with DriverLock(lock):
                pass
        assert prober.poll() is None  # it probed all along
    finally:
        prober.kill()
        prober.wait()


def test_plan_refuses_while_a_driver_runs_and_leaves_the_metadata(make_campaign, capsys):
    from covmocks.cli import main as cli

    c = make_campaign(SYNTHETIC)
    assert cli.main(["plan", str(c.path)]) == 0
    manifest = c.layout.manifest.read_bytes()
    with DriverLock(c.layout.lock):
        assert cli.main(["plan", str(c.path)]) != 0
    assert "already being run by pid" in capsys.readouterr().err
    assert c.layout.manifest.read_bytes() == manifest
