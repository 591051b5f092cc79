"""SIGTERM as Ctrl-C while a driver runs (``covmocks run``, ``retry``, ``rehearse``), so that
Parsl shuts its workers down as on an interrupt."""

import contextlib
import signal


@contextlib.contextmanager
def sigterm_interrupts():
    """While the driver runs, SIGTERM unwinds it like Ctrl-C (KeyboardInterrupt), once: a
    second SIGTERM while it unwinds is ignored, so that Parsl's shutdown is not cut halfway
    (SIGKILL still ends it). The previous handler is put back after."""

    def interrupt(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
