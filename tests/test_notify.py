"""Alerts: the notification command gets a summary as one argument, never through a shell,
once at the failure threshold and at the end; a command that cannot run stops nothing."""

import sys

import pytest

from covmocks.core.errors import ConfigError
from covmocks.workflow.notify import Notifier

HOSTILE = "x'; touch PWNED; echo $(touch PWNED2) `touch PWNED3` && rm -rf nothing | cat"


def _recorder(tmp_path) -> list[str]:
    out = tmp_path / "alerts.txt"
    code = "import sys; open(sys.argv[1], 'a').write(sys.argv[2] + '\\n')"
    return [sys.executable, "-c", code, str(out)]


def test_alerts_once_at_the_threshold_and_at_the_end(tmp_path, make_campaign, monkeypatch):
    monkeypatch.chdir(tmp_path)
    campaign = make_campaign(campaign={"description": HOSTILE, "notify": {
        "command": _recorder(tmp_path), "failure_fraction": 0.25}})  # fmt: skip
    notifier = Notifier(campaign, total=8)
    for outcome in ({"done": 1, "failed": 1}, {"done": 1, "failed": 2}, {"done": 2, "failed": 3}):
        notifier.settled(outcome)
    notifier.finished({"done": 5, "failed": 3})
    # two commands run side by side: their lines may land in either order
    lines = sorted(
        (tmp_path / "alerts.txt").read_text().splitlines(), key=lambda x: "finished" in x
    )
    assert len(lines) == 2
    assert "failures reached 25%: 1 done, 2 failed of 8 tasks" in lines[0]
    assert "run finished: 5 done, 3 failed of 8 tasks" in lines[1]
    assert all(HOSTILE in line for line in lines)  # passed as text, never run
    assert not list(tmp_path.glob("PWNED*"))


def test_a_command_that_cannot_start_stops_nothing(tmp_path, make_campaign, caplog):
    campaign = make_campaign(campaign={"notify": {"command": [str(tmp_path / "no-such-cmd")]}})
    notifier = Notifier(campaign, total=1)
    notifier.settled({"done": 0, "failed": 1})
    notifier.finished({"done": 0, "failed": 1})
    assert "failed to start" in caplog.text


def test_a_command_must_be_an_argv_list(make_campaign):
    with pytest.raises(ConfigError, match=r"campaign.notify.command: expected a list"):
        make_campaign(campaign={"notify": {"command": "mail -s done me"}})
    with pytest.raises(ConfigError, match=r"campaign.notify.failure_fraction"):
        make_campaign(campaign={"notify": {"command": ["true"], "failure_fraction": 0}})


def test_nul_in_notification_text_is_refused_and_never_stops_the_driver(make_campaign, caplog):
    """A NUL (which no command can take) in the description, a tag or the command: refused
    by the loader; and a command that cannot start for it (ValueError) is logged."""
    import dataclasses

    from covmocks.campaign.schema import Notify

    for section in ({"description": "a\0b"}, {"tags": ["x\0"]},
                    {"notify": {"command": ["true", "a\0"]}}):  # fmt: skip
        with pytest.raises(ConfigError, match="NUL"):
            make_campaign(campaign=section)
    campaign = make_campaign(campaign={"notify": {"command": ["true"]}})
    notify = Notify.model_construct(command=["true", "a\0b"], failure_fraction=1.0)
    notifier = Notifier(dataclasses.replace(campaign, notify=notify), total=1)
    notifier.finished({"done": 0, "failed": 1})
    assert "failed to start" in caplog.text
