"""A fresh process's start-up (issue 25): the verbs that read a campaign import no model stack,
and JAX's compilation cache is one per user, shared by campaigns."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from covmocks.galaxies import jaxenv
from tests.conftest import LOCAL_RUN, REPO, write_campaign

MODEL_STACK = ("jax", "jaxlib", "diffsky", "diffstar", "diffmah", "dsps")
# Run a verb of the command line, then name the model stack's packages it imported.
VERB = """
import sys
from covmocks.cli.main import main
status = main(sys.argv[1:])
print("IMPORTED", *sorted({m.split(".")[0] for m in sys.modules} & set(STACK)))
sys.exit(status)
""".replace("STACK", repr(MODEL_STACK))


def _imported(argv: list[str], cwd: Path) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", VERB, *argv], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (line,) = [line for line in proc.stdout.splitlines() if line.startswith("IMPORTED")]
    return line.split()[1:]


@pytest.mark.slow
def test_verbs_that_read_a_finished_campaign_import_no_model_stack(demo):
    """status, plan, estimate, config show, report, covariance and validate on the finished
    demo campaign: none imports JAX or the diffsky stack (seconds of a fresh process)."""
    campaign = str(demo.root / "campaigns" / "demo.yaml")
    catalogs = sorted((demo.root / "campaign-runs" / "demo_1" / "catalogs").rglob("*.hdf5"))
    assert len(catalogs) == 12
    for argv in (["status", campaign, "--outliers"], ["status", campaign, "--json"],
                 ["plan", campaign], ["estimate", campaign], ["config", "show", campaign],
                 ["report", campaign], ["covariance", campaign],
                 ["validate", *map(str, catalogs)]):  # fmt: skip
        assert _imported(argv, demo.root) == [], argv


def test_the_cache_is_the_environments_then_the_campaigns_then_the_users(tmp_path):
    env = {"HOME": str(tmp_path / "home")}
    assert jaxenv.cache_dir(None, env) == str(tmp_path / "home" / ".cache" / "covmocks" / "jax")
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    assert jaxenv.cache_dir(None, env) == str(tmp_path / "xdg" / "covmocks" / "jax")
    assert jaxenv.cache_dir(tmp_path / "shared", env) == str(tmp_path / "shared")
    env[jaxenv.CACHE_VARIABLE] = str(tmp_path / "mine")
    assert jaxenv.cache_dir(tmp_path / "shared", env) == str(tmp_path / "mine")


def test_the_campaign_key_is_expanded_relative_to_the_campaign_file(tmp_path, monkeypatch):
    from covmocks.apps.box_task import BoxJob
    from covmocks.workflow.plan import make_plan

    monkeypatch.setenv("COVMOCKS_TEST_SCRATCH", str(tmp_path / "scratch"))
    shared = write_campaign(tmp_path, LOCAL_RUN, campaign={"name": "shared"}, execution={
        "compilation_cache": "${COVMOCKS_TEST_SCRATCH}/jax"})  # fmt: skip
    relative = write_campaign(tmp_path, LOCAL_RUN, campaign={"name": "relative"},
                              execution={"compilation_cache": "cache"})  # fmt: skip
    default = write_campaign(tmp_path, LOCAL_RUN, campaign={"name": "default"})
    for campaign, cache in ((shared, tmp_path / "scratch" / "jax"),
                            (relative, tmp_path / "cache"), (default, None)):  # fmt: skip
        assert campaign.compilation_cache == cache
        task = make_plan(campaign).tasks[0]
        assert BoxJob.for_task(campaign, task).jax_cache == cache


def test_the_least_recently_used_kernels_go_past_the_bound(tmp_path):
    for age, name in enumerate(["new", "middle", "old"]):
        entry = tmp_path / f"jit_{name}-cache"
        entry.write_bytes(b"x" * 100)
        os.utime(entry, (1e9 - age * 1000, 1e9 - age * 1000))
    assert jaxenv.prune(tmp_path, max_bytes=300) == 0
    assert jaxenv.prune(tmp_path, max_bytes=150) == 200
    assert [p.name for p in tmp_path.iterdir()] == ["jit_new-cache"]
    assert jaxenv.cache_usage(tmp_path) == (1, 0, 100)
    assert jaxenv.prune(tmp_path / "absent") == 0


CACHE_LINE = re.compile(r"compilation cache (\S+): (\d+) kernels")


@pytest.mark.slow
def test_two_campaigns_share_the_users_cache(tmp_path, monkeypatch):
    """Without $JAX_COMPILATION_CACHE_DIR or the campaign key, every campaign's tasks use
    $XDG_CACHE_HOME/covmocks/jax, as each task's log says: the second campaign finds the
    kernels the first one left there. (That directory links to the test run's cache: the
    kernels are not compiled again here.)"""
    from covmocks.workflow.driver import Runner

    xdg = tmp_path / "xdg"
    (xdg / "covmocks").mkdir(parents=True)
    (xdg / "covmocks" / "jax").symlink_to(os.environ[jaxenv.CACHE_VARIABLE])
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    monkeypatch.delenv(jaxenv.CACHE_VARIABLE)
    used = []
    for name in ("first", "second"):
        campaign = write_campaign(tmp_path, LOCAL_RUN, campaign={"name": name},
                                  science={"realizations": [0], "redshifts": [0.0],
                                           "n_hosts": 50})  # fmt: skip
        assert Runner(campaign, progress=False, monitoring=False).run()["done"] == 1
        log = (campaign.layout.logs / "r0000_z0.000.err").read_text()
        (found,) = CACHE_LINE.findall(log)
        used.append((found[0], int(found[1])))
    assert [cache for cache, _ in used] == [str(xdg / "covmocks" / "jax")] * 2
    assert used[1][1] > 0


def test_a_run_with_an_empty_cache_says_the_kernels_are_compiled_once(
    tmp_path, monkeypatch, capsys, caplog
):
    """The demo's first run on a fresh machine: the console says why the first boxes are slow
    and where the kernels go; the run's last lines say what the cache holds."""
    from covmocks.cli import main
    from covmocks.workflow import driver

    class Runner:  # the console's lines only: no box is run
        def __init__(self, campaign, **kwargs):
            pass

        def run(self):
            return {"done": 0, "failed": 0}

    cache = tmp_path / "cache"
    monkeypatch.setenv(jaxenv.CACHE_VARIABLE, str(cache))
    monkeypatch.setattr(driver, "Runner", Runner)
    path = str(write_campaign(tmp_path, LOCAL_RUN).path)
    caplog.set_level("INFO", logger="covmocks")
    assert main.main(["run", path, "--no-monitoring"]) == 0
    said = "compiling the model's kernels once (minutes on a small CPU): they are cached in"
    assert f"{said} {cache} for every later box and campaign" in caplog.text
    assert f"kernels   {cache}: 0 kernels, 0 exported, 0 MB" in capsys.readouterr().out
    cache.mkdir()
    (cache / "jit_f-0123-cache").write_bytes(b"x" * 2000)
    caplog.clear()
    assert main.main(["run", path, "--no-monitoring"]) == 0
    assert said not in caplog.text
    assert f"kernels   {cache}: 1 kernels, 0 exported, 0.002 MB" in capsys.readouterr().out


def test_a_warm_generate_imports_none_of_the_diffsky_stack_and_writes_the_same_bits(tmp_path):
    """With its kernels exported and the stack's values remembered (``core.remembered``), a
    fresh ``covmocks generate`` imports JAX but not diffsky, diffmah, diffstar or dsps (2.7 s
    of a 1,000-host box): and it writes the catalog the process that computed them wrote.
    (The redshift is this test's own, so the first process computes its cosmic times, mass
    function and mass-loss weights.)"""
    import h5py
    import numpy as np

    argv = ["generate", "--source", "synthetic", "--n-hosts", "1000", "--redshift", "0.4321",
            "--seed", "11", "-q", "--output"]  # fmt: skip
    first = _imported([*argv, str(tmp_path / "first.hdf5")], tmp_path)
    second = _imported([*argv, str(tmp_path / "second.hdf5")], tmp_path)
    assert set(first) >= {"diffsky", "dsps"} and second == ["jax", "jaxlib"]
    with h5py.File(tmp_path / "first.hdf5") as a, h5py.File(tmp_path / "second.hdf5") as b:
        columns = list(a)
        assert len(columns) >= 10 and len(a["pos"]) > 1000 and list(b) == columns
        assert all(np.array_equal(a[c][()], b[c][()]) for c in columns)
