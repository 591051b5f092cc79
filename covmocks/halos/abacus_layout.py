"""AbacusSummit's directory conventions: simulation names, where abacusutils looks for a
snapshot's cleaned catalog, and whether a directory holds all it should (its
``checksums.crc32``; the POSIX ``cksum`` CRC). Standard library only (no numpy, h5py or
abacusutils), so that the planner and the covariance's provenance can ask without loading the
reader (``halos.abacus``).
"""

from __future__ import annotations

import logging
import os
import re
import zlib
from pathlib import Path

from covmocks.core.errors import InputError

log = logging.getLogger(__name__)

# An AbacusSummit simulation's name as its directories spell it (AbacusSummit_small_c000_ph3000).
SIM_NAME = re.compile(r"AbacusSummit_[A-Za-z0-9_]+")
# A snapshot directory's halo slabs, halo_info/halo_info_NNN.asdf, and its cleaned catalog's.
SLABS = "halo_info"
CLEANED = "cleaned_halo_info"


def cleaning_dir(halo_dir: Path, cleandir: Path) -> Path:
    """Where abacusutils looks for the cleaned catalog of ``halo_dir`` (``<sim>/halos/zZ.ZZZ``)
    under the cleaning root ``cleandir``: ``cleandir / <sim relative to cleandir's parent> /
    zZ.ZZZ``, holding ``cleaned_halo_info/cleaned_halo_info_NNN.asdf`` (the rule of
    ``CompaSOHaloCatalog._setup_file_paths``). The root must sit in an ancestor of the
    simulation directory, as AbacusSummit's ``cleaning/`` does."""
    halo_dir, cleandir = Path(halo_dir).absolute(), Path(cleandir).absolute()
    try:
        rel = (halo_dir.parents[1] / halo_dir.name).relative_to(cleandir.parent)
    except (ValueError, IndexError):
        raise InputError(
            f"cleaning root {cleandir} cannot hold the cleaned catalog of {halo_dir}: its "
            "parent must contain the simulation directory (AbacusSummit's layout: "
            ".../cleaning/<sim>/zZ.ZZZ beside .../<sim>/halos/zZ.ZZZ)"
        ) from None
    return cleandir / rel / CLEANED


# --- checksums.crc32: is a directory all there? -------------------------------------------

# AbacusSummit ships this file in every data directory: one GNU ``cksum`` line (CRC, size,
# name) for every file the directory should hold. abacusutils does not read it.
CHECKSUMS = "checksums.crc32"
SLAB_SUFFIX = ".asdf"
_PROBLEMS_SHOWN = 10  # problems named in one message; the rest are counted


def box_dirs(halo_dir, cleandir=None) -> list[tuple[Path, str]]:
    """The directories whose files a box reads, each with the prefix of those files' names
    (``<prefix>NNN.asdf``): the slabs ``halo_info/halo_info_*``, and with a cleaning root the
    cleaned catalog's ``cleaned_halo_info_*`` (``cleaning_dir``). Other files those
    directories list (other catalog types) are not the box's."""
    dirs = [(Path(halo_dir) / SLABS, f"{SLABS}_")]
    if cleandir is not None:
        dirs.append((cleaning_dir(Path(halo_dir), Path(cleandir)), f"{CLEANED}_"))
    return dirs


def _read(name: str, prefix: str) -> bool:
    return name.startswith(prefix) and name.endswith(SLAB_SUFFIX)


def listed(directory: Path, prefix: str) -> tuple[dict[str, tuple[int, int]], list[str]] | None:
    """What ``directory``'s checksums.crc32 says of the files read (``box_dirs``): name ->
    (CRC, size), and a problem per line that is no ``CRC SIZE NAME`` (a file cut short);
    None where the directory has no checksums.crc32. OSError where it cannot be read."""
    try:
        text = (Path(directory) / CHECKSUMS).read_bytes().decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        return None
    files, problems = {}, []
    for number, line in enumerate(text.splitlines(), 1):
        crc, _, rest = line.partition(" ")
        size, _, name = rest.partition(" ")
        if not (crc.isdigit() and size.isdigit() and name):
            problems.append(f"{CHECKSUMS} line {number} is not 'CRC SIZE NAME': {line[:60]!r}")
        elif _read(name, prefix):
            files[name] = (int(crc), int(size))
    return files, problems


class _Once:
    """A directory without checksums.crc32 is warned of once per process, not per box."""

    warned = False


def warn_unchecked(directory: Path) -> None:
    if not _Once.warned:
        _Once.warned = True
        log.warning(
            "%s has no %s: its files, and those of any other directory without one, are read "
            "without checking that they are all there", directory, CHECKSUMS,
        )  # fmt: skip


def incomplete(directory: Path, prefix: str) -> list[str]:
    """What is wrong with the files read from ``directory`` (``box_dirs``) against its
    checksums.crc32, one text per file: missing, a size other than listed (a copy cut short),
    or there but not listed. One listing, and one stat per listed file; no CRC
    (``posix_cksum``). Empty where all is there, or where the directory has no
    checksums.crc32 (warned once per process: read as it is). OSError where the directory
    cannot be listed."""
    found = listed(directory, prefix)
    if found is None:
        warn_unchecked(directory)
        return []
    files, problems = found
    with os.scandir(directory) as entries:
        present = {e.name: e for e in entries if _read(e.name, prefix)}
    for name, (_, size) in sorted(files.items()):
        entry = present.get(name)
        if entry is None:
            problems.append(f"{name} missing")
        elif (actual := entry.stat().st_size) != size:
            problems.append(f"{name} has {actual} bytes, {CHECKSUMS} says {size}")
    problems += [f"{name} is not in {CHECKSUMS}" for name in sorted(set(present) - set(files))]
    return problems


def describe(directory: Path, problems: list[str]) -> str:
    """One line: the directory, then its first problems (``incomplete``)."""
    more = len(problems) - _PROBLEMS_SHOWN
    shown = "; ".join(problems[:_PROBLEMS_SHOWN]) + (f"; and {more} more" if more > 0 else "")
    return f"{directory}: {shown}"


# --- the POSIX cksum CRC ------------------------------------------------------------------

# ``cksum`` (POSIX) is CRC-32 with polynomial 0x04C11DB7 taken MSB first from a zero register,
# over the data and then the length (least significant byte first, as few bytes as it takes),
# complemented. zlib.crc32 is the same polynomial bit-reflected (LSB first, register preset to
# ones): fed bytes with their bits reversed, its register is the bit reversal of cksum's. So
# the bulk of a file goes through zlib at C speed (bytes.translate reverses the bits), and
# only the length bytes through the table below.
_REVERSED = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def _msb_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = (crc << 1) ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return tuple(table)


_MSB_TABLE = _msb_table()


def posix_cksum(path, chunk_bytes: int = 1 << 22) -> tuple[int, int]:
    """(CRC, size) of the file ``path`` as POSIX ``cksum`` prints them."""
    value, size = 0xFFFFFFFF, 0  # zlib's running value for a zero register
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            value = zlib.crc32(block.translate(_REVERSED), value)
            size += len(block)
    crc = int(f"{~value & 0xFFFFFFFF:032b}"[::-1], 2)
    length = size
    while length:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _MSB_TABLE[(crc >> 24) ^ (length & 0xFF)]
        length >>= 8
    return ~crc & 0xFFFFFFFF, size
