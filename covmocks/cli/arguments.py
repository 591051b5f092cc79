"""Argument types and argument groups shared by the ``covmocks`` verbs (argparse)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

WATCH_MIN_S = 1.0
GB = 10**9


def seconds(text: str) -> float:
    """A finite number of seconds, at least ``WATCH_MIN_S`` (``report --watch``: the report
    is rebuilt, and the page reloads itself, this often)."""
    value = float(text)
    if not (math.isfinite(value) and value >= WATCH_MIN_S):
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds of at least {WATCH_MIN_S:g}, got {text}"
        )
    return value


def positive(text: str) -> int:
    """An integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def fraction(text: str) -> float:
    """A number in (0, 1]."""
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], got {text}")
    return value


def gigabytes(text: str) -> int:
    """A positive number of GB (10^9 bytes), returned in bytes."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of GB, got {text}")
    return int(value * GB)


def campaign_arguments(p: argparse.ArgumentParser) -> None:
    """The campaign file, ``-v`` and ``-q``: what every campaign verb takes."""
    p.add_argument("campaign", type=Path, help="campaign file (YAML)")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("-q", "--quiet", action="store_true")
