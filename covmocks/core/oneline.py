"""Messages on one line: a path or value may hold line breaks and control characters, and
an error printed with them as they are would spill over several lines (or hide text)."""

from __future__ import annotations

import argparse
import unicodedata


def escape_breaks(text: str) -> str:
    """``text`` on one line: line breaks and other control characters written as escapes
    (``\\n``, ``\\x00``, ``\\u2028``); tabs kept."""

    def shown(c: str) -> str:
        if c != "\t" and unicodedata.category(c) in ("Cc", "Zl", "Zp"):
            return c.encode("unicode_escape").decode("ascii")
        return c

    return "".join(map(shown, text))


def reason(exc: BaseException) -> str:
    """Why ``exc`` failed, on one line: an OSError's reason (its strerror), or any
    exception's text, with runs of whitespace (line breaks too) made one space."""
    return " ".join(str(getattr(exc, "strerror", None) or exc).split())


def error_line(exc: BaseException, limit: int = 500) -> str:
    """``exc`` as the journal and the QA records keep it: its type and the first line of its
    text, at most ``limit`` characters (a Parsl error can hold a whole remote traceback)."""
    lines = str(exc).splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:limit]


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors stay on one line (the values they quote escaped)."""

    def error(self, message: str):
        super().error(escape_breaks(message))
