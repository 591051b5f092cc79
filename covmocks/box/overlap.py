"""Overlapping I/O with compute: read the next host block and write the previous chunk's
galaxies in background threads while the model computes the current one.

Two single-thread workers keep the order of reads and of writes; at most one read ahead and
one write behind are in flight, so memory stays at about three chunks. An exception in a
worker is raised in the caller at its next ``submit`` or at ``drain``/``close``; on the way
out the writer is always waited for, so nothing touches the catalog after ``populate`` ends.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterable, Iterator

_END = object()


def prefetched(items: Iterable, name: str = "covmocks-read") -> Iterator:
    """``items``, each read in a background thread while the caller works on the previous one.

    The iterator's own exceptions come out where ``next`` would have raised them. Closing the
    returned generator (or leaving a ``for`` loop) waits for the read in flight.
    """
    it = iter(items)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name) as pool:

        def read():
            return next(it, _END)

        pending = pool.submit(read)
        try:
            while True:
                item = pending.result()
                if item is _END:
                    return
                pending = pool.submit(read)
                yield item
        finally:
            pending.cancel()
            concurrent.futures.wait([pending])


class BehindWriter:
    """Runs ``fn(*args)`` calls in order in one background thread, at most one behind."""

    def __init__(self, name: str = "covmocks-write"):
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)
        self._pending: concurrent.futures.Future | None = None

    def submit(self, fn, *args) -> None:
        """Wait for the previous call (raising its exception), then start ``fn(*args)``."""
        self.drain()
        self._pending = self._pool.submit(fn, *args)

    def drain(self) -> None:
        """Wait for the call in flight; raise its exception, if any."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Wait for everything (its exception is dropped if the caller is already failing)."""
        try:
            if self._pending is not None:
                concurrent.futures.wait([self._pending])
        finally:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> BehindWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.drain()
            finally:
                self.close()
        else:
            self.close()
