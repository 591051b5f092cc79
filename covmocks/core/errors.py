"""Exceptions that the command line reports as one line, without a traceback."""

import errno


class CovmocksError(Exception):
    """Bad input or environment: the message alone tells the user what to fix."""


class InputError(CovmocksError):
    """A halo catalog or campaign input is missing, unreadable or inconsistent.

    Deterministic: retrying the same task cannot help.
    """


class TransientError(CovmocksError):
    """A failure that may pass when the task is tried again: retried with backoff, whatever
    else the error is (``covmocks.workflow.retry``), and not "bad input" to ``covmocks.box.mpi``."""


class TransientInputError(TransientError):
    """Reading an input failed in a way that may pass (EIO, ESTALE, a timeout on a parallel
    filesystem): the task is retried with backoff, unlike ``InputError``."""


# errno values of a read that may succeed when tried again (a flaky or busy filesystem).
TRANSIENT_ERRNOS = frozenset({errno.EIO, errno.ESTALE, errno.ETIMEDOUT, errno.EAGAIN,
                              errno.EBUSY, errno.EINTR, errno.ENOLCK, errno.ECOMM})  # fmt: skip


def read_error(path, exc: OSError) -> CovmocksError:
    """The error to raise when reading ``path`` failed with ``exc``: transient where the errno
    says the filesystem may answer next time, else ``InputError`` (missing, unreadable)."""
    message = f"cannot read {path}: {exc.strerror or exc}"
    if exc.errno in TRANSIENT_ERRNOS:
        return TransientInputError(message)
    return InputError(message)


# errno values of a write that failed for want of space: the filesystem is full (ENOSPC, also
# out of inodes) or the user's quota is spent (EDQUOT).
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class NoSpaceError(TransientError):
    """Writing an output failed for want of space (``NO_SPACE_ERRNOS``). Nothing was left
    under the final name. Transient: space may be freed (a purge, another job's scratch). A
    campaign's driver holds the box, uncharged, and waits for the space
    (``covmocks.workflow.space``); elsewhere (``covmocks generate``) it is one line of error.
    ``path``: the file that could not be written (its filesystem is the full one)."""

    def __init__(self, message: str, path=None):
        super().__init__(message)
        self.path = None if path is None else str(path)

    def __reduce__(self):  # the path travels with the error from a worker to the driver
        return type(self), (str(self), self.path)


def no_space(path, exc: OSError) -> NoSpaceError:
    """The error to raise when writing ``path`` failed with ``exc``, an error whose errno is
    in ``NO_SPACE_ERRNOS``: one line that says "no space left" and names the file."""
    return NoSpaceError(f"no space left to write {path}: {exc.strerror or exc}", path)


class OutputError(CovmocksError):
    """The output location cannot be written, or already holds a finished catalog."""


class ValidationError(CovmocksError):
    """A catalog failed its checks; the message lists the failures."""


class WalltimeExceeded(CovmocksError):
    """A task ran past its walltime and was killed; counts against its retries."""


class ConfigError(CovmocksError):
    """A campaign or machine-profile file is invalid: one line per problem, all at once.

    Each problem reads ``file:line key.path: what was expected``.
    """

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = f"{len(self.problems)} problems:\n" + "\n".join(
                f"  {p}" for p in self.problems
            )
        super().__init__(message)
