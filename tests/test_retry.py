"""The runner's retry policy: failure classes and the decision each failure leads to."""

import pytest
from parsl.executors.high_throughput.errors import ManagerLost, WorkerLost

from covmocks.catalog.validation import ValidationError
from covmocks.core.errors import (
    ConfigError,
    CovmocksError,
    InputError,
    OutputError,
    TransientInputError,
    WalltimeExceeded,
)
from covmocks.workflow import retry
from covmocks.workflow.retry import Decision, RetryPolicy, classify

LOST = [ManagerLost(b"m1", "node1"), WorkerLost(7, "node1")]


@pytest.mark.parametrize(
    "exc",
    [InputError("no such file"), OutputError("catalog exists"), ValidationError("bad counts"),
     ImportError("no module diffsky"), ModuleNotFoundError("no module named 'jax'")],
    ids=lambda e: type(e).__name__,
)  # fmt: skip
def test_deterministic(exc):
    assert classify(exc, timed_out=False) == "deterministic"
    assert classify(exc, timed_out=True) == "deterministic"  # the marker does not matter


@pytest.mark.parametrize(
    "exc",
    [TransientInputError("cannot read h.asdf: Stale file handle"), RuntimeError("boom"),
     OSError("No space left"), MemoryError(), CovmocksError("other"), ConfigError(["x"])],
    ids=lambda e: type(e).__name__,
)  # fmt: skip
def test_transient(exc):
    assert classify(exc, timed_out=False) == "transient"


def test_transient_input_error_is_transient_even_if_made_an_input_error():
    class Both(TransientInputError, InputError):
        pass

    assert classify(Both("EIO"), timed_out=False) == "transient"


def test_walltime_exceeded_is_a_timeout():
    assert classify(WalltimeExceeded("ran 3600 s"), timed_out=False) == "timeout"
    assert classify(WalltimeExceeded("ran 3600 s"), timed_out=True) == "timeout"


@pytest.mark.parametrize("exc", LOST, ids=lambda e: type(e).__name__)
def test_lost_worker_is_lost_unless_the_timeout_marker_exists(exc):
    assert classify(exc, timed_out=False) == "lost"
    assert classify(exc, timed_out=True) == "timeout"


def policy(retries=3, base=10.0, cap=1000.0, max_lost=retry.MAX_LOST):
    return RetryPolicy(retries, backoff_base_s=base, backoff_cap_s=cap, max_lost=max_lost)


def test_defaults():
    p = RetryPolicy(2, 1.0, 5.0)
    assert p.max_lost == retry.MAX_LOST == 10
    d = p.decide("t", "transient")
    assert d == Decision(action="retry", delay_s=1.0, charged=1, lost=0, event="retry")


def test_deterministic_fails_on_first_attempt():
    p = policy(retries=5)
    assert p.attempt("t") == 1
    assert p.decide("t", "deterministic") == Decision("fail", 0.0, 1, 0, "failed")
    assert p.attempt("t") == 2


def test_transient_retries_until_retries_exhausted_then_fails():
    p = policy(retries=3, base=10.0)
    decisions = [p.decide("t", "transient") for _ in range(4)]
    assert decisions == [
        Decision("retry", 10.0, 1, 0, "retry"),
        Decision("retry", 20.0, 2, 0, "retry"),
        Decision("retry", 40.0, 3, 0, "retry"),
        Decision("fail", 0.0, 4, 0, "failed"),
    ]


def test_backoff_doubles_and_is_capped():
    p = policy(retries=10, base=5.0, cap=60.0)
    delays = [p.decide("t", "transient").delay_s for _ in range(6)]
    assert delays == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]
    assert all(isinstance(d, float) for d in delays)
    assert p.backoff(1) == 5.0 and p.backoff(4) == 40.0 and p.backoff(30) == 60.0


def test_timeout_is_charged_with_its_own_event_name():
    p = policy(retries=1, base=2.0)
    assert p.decide("t", "timeout") == Decision("retry", 2.0, 1, 0, "timeout")
    assert p.decide("t", "timeout") == Decision("fail", 0.0, 2, 0, "failed")


def test_timeouts_and_transient_failures_share_the_budget():
    p = policy(retries=2, base=1.0)
    assert p.decide("t", "timeout").event == "timeout"
    assert p.decide("t", "transient") == Decision("retry", 2.0, 2, 0, "retry")
    assert p.decide("t", "timeout").action == "fail"


def test_lost_reruns_free_up_to_max_lost_then_charged():
    p = policy(retries=1, base=3.0, max_lost=3)
    for n in (1, 2, 3):
        assert p.decide("t", "lost") == Decision("rerun", 0.0, 0, n, "lost")
        assert p.attempt("t") == 1  # a free re-run keeps the attempt number
    # past max_lost: charged like a transient failure
    assert p.decide("t", "lost") == Decision("retry", 3.0, 1, 3, "retry")
    assert p.attempt("t") == 2
    assert p.decide("t", "lost") == Decision("fail", 0.0, 2, 3, "failed")


def test_lost_reruns_do_not_spend_retries():
    p = policy(retries=1, base=1.0)
    assert p.decide("t", "transient").action == "retry"
    for n in range(1, retry.MAX_LOST + 1):
        assert p.decide("t", "lost") == Decision("rerun", 0.0, 1, n, "lost")
    assert p.decide("t", "transient") == Decision("fail", 0.0, 2, retry.MAX_LOST, "failed")


def test_max_lost_zero_charges_every_loss():
    p = policy(retries=1, base=1.0, max_lost=0)
    assert p.decide("t", "lost") == Decision("retry", 1.0, 1, 0, "retry")


def test_counters_are_per_task():
    p = policy(retries=1, base=1.0, max_lost=1)
    assert p.decide("a", "transient").action == "retry"
    assert p.decide("a", "lost").action == "rerun"
    assert p.decide("a", "transient").action == "fail"
    # b is untouched by a's failures
    assert p.attempt("b") == 1
    assert p.decide("b", "lost") == Decision("rerun", 0.0, 0, 1, "lost")
    assert p.decide("b", "transient") == Decision("retry", 1.0, 1, 1, "retry")
    assert p.attempt("a") == 3 and p.attempt("b") == 2


def test_attempt_numbering():
    p = policy(retries=5)
    assert p.attempt("never-failed") == 1
    for n in range(1, 4):
        p.decide("t", "transient")
        assert p.attempt("t") == n + 1


def test_retries_zero_fails_every_charged_failure_at_once():
    p = policy(retries=0)
    assert p.decide("a", "transient") == Decision("fail", 0.0, 1, 0, "failed")
    assert p.decide("b", "timeout") == Decision("fail", 0.0, 1, 0, "failed")
    assert p.decide("c", "deterministic") == Decision("fail", 0.0, 1, 0, "failed")
    assert p.decide("d", "lost").action == "rerun"  # still free


def test_unknown_kind_and_negative_settings_are_refused():
    with pytest.raises(ValueError, match="unknown failure class"):
        policy().decide("t", "flaky")
    with pytest.raises(ValueError):
        RetryPolicy(-1, 1.0, 1.0)
    with pytest.raises(ValueError):
        RetryPolicy(1, 1.0, 1.0, max_lost=-1)
