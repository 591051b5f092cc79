"""SIGTERM as an exception in the main thread: a driver (``covmocks run``, ``retry``,
``rehearse``) unwinds as on Ctrl-C, so that Parsl shuts its workers down; a worker waiting
for its MPI ranks stops them before it dies (``covmocks.apps.box_task``)."""

import contextlib
import signal
import threading


@contextlib.contextmanager
def sigterm_raises(exception: type[BaseException] = KeyboardInterrupt, redeliver: bool = False):
    """While inside, SIGTERM raises ``exception`` in the main thread, once: a second SIGTERM
    while it unwinds is ignored, so that a shutdown is not cut halfway (SIGKILL still ends
    it). The previous handler is put back after; with ``redeliver``, a SIGTERM that raised is
    then delivered again to it (by default the process dies of it). Off the main thread,
    where no handler can be set, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise exception()

    previous = signal.signal(signal.SIGTERM, handler)
    raised = False
    try:
        yield
    except exception:
        raised = True
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        if raised and redeliver:
            signal.raise_signal(signal.SIGTERM)
