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


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors stay on one line (the values they quote escaped)."""

    def error(self, message: str):
        super().error(escape_breaks(message))
