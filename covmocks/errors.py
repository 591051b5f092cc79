"""Exceptions that the command line reports as one line, without a traceback."""


class CovmocksError(Exception):
    """Bad input or environment: the message alone tells the user what to fix."""


class InputError(CovmocksError):
    """A halo catalog or campaign input is missing, unreadable or inconsistent.

    Deterministic: retrying the same task cannot help.
    """


class OutputError(CovmocksError):
    """The output location cannot be written, or already holds a finished catalog."""


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
