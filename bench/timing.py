"""Shared by the bench scripts: wrap a method so that its wall time adds up in a dict."""

import time


def timed(timer: dict, name: str, fn):
    """``fn`` wrapped: each call's wall time (s) is added to ``timer[name]``."""

    def wrapper(*a, **k):
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            timer[name] += time.perf_counter() - t0

    return wrapper
