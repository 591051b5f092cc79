"""Permissions: a campaign's files are group-readable and never world-writable, whatever the
umask of the shell that started the driver (``execution.umask``), and no secret given to the
notification command or the environment reaches a log."""

import os
import stat
import sys

import pytest

from covmocks.core.errors import ConfigError
from tests.conftest import LOCAL_RUN

SECRET = "tok-3f9a1c77e2"


def test_a_umask_that_lets_others_write_is_refused(make_campaign):
    with pytest.raises(ConfigError, match="umask 0020 lets anyone write the campaign's files"):
        make_campaign(execution={"umask": "0020"})
    with pytest.raises(ConfigError, match="execution.umask"):
        make_campaign(execution={"umask": "rw-r--r--"})


def test_plan_writes_with_the_campaign_umask(make_campaign):
    from covmocks.workflow.metadata import write_plan

    campaign = make_campaign(execution={"umask": "0027"})
    old = os.umask(0)
    try:
        write_plan(campaign)
    finally:
        os.umask(old)
    for path in [campaign.layout.root, *campaign.layout.root.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o027 == 0, (path, oct(mode))
        assert mode & 0o040, (path, oct(mode))  # group-readable


@pytest.mark.slow
def test_campaign_files_obey_the_umask_and_logs_hold_no_secret(make_campaign, monkeypatch):
    from covmocks.workflow.driver import Runner

    monkeypatch.setenv("COVMOCKS_TEST_API_TOKEN", SECRET)
    notify = {"command": [sys.executable, "-c", "pass", f"--token={SECRET}"],
              "failure_fraction": 1.0}  # fmt: skip
    campaign = make_campaign(LOCAL_RUN, campaign={"notify": notify}, execution={"umask": "0027"},
                             science={"realizations": [0]})  # fmt: skip
    old = os.umask(0)  # a careless shell: the campaign's umask must win
    try:
        outcome = Runner(campaign, progress=False, monitoring=False).run()
        assert outcome == {"done": 1, "failed": 0}
    finally:
        os.umask(old)
    root = campaign.layout.root
    paths = [root, *root.rglob("*")]
    assert campaign.layout.catalog(0, 0.0) in paths and campaign.layout.qa_record("r0000_z0.000")
    for path in paths:
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o007 == 0 and mode & 0o020 == 0, (path, oct(mode))
    for path in campaign.layout.logs.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
