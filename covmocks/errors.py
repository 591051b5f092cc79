"""Exceptions that the command line reports as one line, without a traceback."""


class CovmocksError(Exception):
    """Bad input or environment: the message alone tells the user what to fix."""


class InputError(CovmocksError):
    """A halo catalog or campaign input is missing, unreadable or inconsistent.

    Deterministic: retrying the same task cannot help.
    """


class OutputError(CovmocksError):
    """The output location cannot be written, or already holds a finished catalog."""
