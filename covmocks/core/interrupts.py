"""SIGTERM as Ctrl-C while a driver runs (``covmocks run``, ``retry``, ``rehearse``), so that
Parsl shuts its workers down as on an interrupt."""

import contextlib
import signal


@contextlib.contextmanager
def sigterm_interrupts():
    """While the driver runs, SIGTERM unwinds it like Ctrl-C (KeyboardInterrupt); the
    previous handler is put back after."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
