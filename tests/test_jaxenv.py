"""The XLA flag that keeps the model from deadlocking on small CPUs."""

import os
import subprocess
import sys

from covmocks.galaxies import jaxenv


def test_flag_added_and_user_flags_kept():
    env = {"XLA_FLAGS": "--xla_dump_to=/tmp/x"}
    jaxenv.configure(env)
    assert env["XLA_FLAGS"] == f"--xla_dump_to=/tmp/x {jaxenv.SAFE_XLA_FLAG}"
    jaxenv.configure(env)  # idempotent
    assert env["XLA_FLAGS"].count("concurrency_optimized") == 1


def test_user_choice_is_respected():
    env = {"XLA_FLAGS": "--xla_cpu_enable_concurrency_optimized_scheduler=true"}
    jaxenv.configure(env)
    assert env["XLA_FLAGS"] == "--xla_cpu_enable_concurrency_optimized_scheduler=true"


def test_importing_covmocks_sets_the_flag_in_a_fresh_process():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    code = "import covmocks, os; print(os.environ['XLA_FLAGS'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == jaxenv.SAFE_XLA_FLAG
