"""A release's plan to tape: htar bundles for NERSC HPSS and the script that writes them.

Grouping: a snapshot's realizations restore together. A bundle holds boxes of one snapshot
(each box whole: its catalog and QA files), consecutive in realization; a snapshot larger
than the largest bundle is cut into equal parts. Why: the product is a covariance per
snapshot, and an analysis at one redshift needs every realization of that snapshot and none
of the others (one restore of 1/20 of the production archive instead of all of it); the
boxes of one snapshot are alike in size, so its bundles are too; and an ensemble that grows
by realizations adds bundles, never reopens one. Snapshots smaller than the smallest bundle
share bundles (whole snapshots). The release directory is a bundle of its own (small: the
data card, manifests, covariance), and so is any payload file of no box (the report).

The script (``htar.sh`` beside the member lists) runs ``htar -cvf`` per bundle with
``-Hcrc`` (or what ``$HTAR_CHECK`` says, e.g. ``-Hverify=1``), keeps each listing, and
stops at the first failure: htar's exit status must be 0 and its output must end well
(htar prints "HTAR SUCCESSFUL" and still exits 70 when it skipped a member whose name is
too long). A bundle archived before (its ``.done`` marker) is skipped: a rerun resumes.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shlex
from pathlib import Path

from covmocks.core.errors import CovmocksError

GB = 10**9
MIN_BYTES, MAX_BYTES = 100 * GB, 2000 * GB  # bundles of 100 GB to 2 TB (configurable)
MEMBER_MAX_BYTES = 68 * GB  # htar's limit on one member
NAME_MAX = 100  # ustar: a member's file name (and 155 for its directory)
PREFIX_MAX = 155


@dataclasses.dataclass(frozen=True, slots=True)
class Bundle:
    """One htar archive: ``members`` (paths from ``base``, a directory) and their bytes."""

    name: str
    base: Path
    members: tuple[str, ...]
    n_bytes: int
    snapshots: tuple[str, ...] = ()
    realizations: tuple[int, int] | None = None  # first and last


Unit = tuple[int, list[tuple[str, int]]]  # (realization, [(path, bytes)]): one box's files


def _check_member(name: str, size: int) -> None:
    directory, _, base = name.rpartition("/")
    if size > MEMBER_MAX_BYTES:
        raise CovmocksError(f"{name}: {size} bytes, over htar's member limit of "
                            f"{MEMBER_MAX_BYTES} bytes")  # fmt: skip
    if len(base) > NAME_MAX or len(directory) > PREFIX_MAX:
        raise CovmocksError(f"{name}: a name htar cannot store (at most {NAME_MAX} characters "
                            f"of file name and {PREFIX_MAX} of directory)")  # fmt: skip


def _bytes(units: list[Unit]) -> int:
    return sum(s for _, files in units for _, s in files)


def _split(units: list[Unit], max_bytes: int) -> list[list[Unit]]:
    """``units`` in the fewest consecutive parts of near-equal size (a box goes to the part
    its middle byte falls in) with none over ``max_bytes`` where whole boxes allow."""
    sizes = [_bytes([u]) for u in units]
    total = sum(sizes)
    n = max(1, math.ceil(total / max_bytes))
    while True:
        parts: list[list[Unit]] = [[] for _ in range(n)]
        done = 0
        for unit, size in zip(units, sizes, strict=True):
            parts[min(n - 1, int((done + size / 2) * n / total))].append(unit)
            done += size
        parts = [p for p in parts if p]
        if all(_bytes(p) <= max_bytes for p in parts) or n >= len(units):
            return parts
        n += 1


def plan_bundles(
    prefix: str,
    base: Path,
    snapshots: dict[str, list[Unit]],
    min_bytes: int = MIN_BYTES,
    max_bytes: int = MAX_BYTES,
) -> list[Bundle]:
    """The bundles of the boxes, ``snapshots`` mapping a snapshot label to its boxes (in
    realization order); paths from ``base``. Refuses a box larger than ``max_bytes`` and a
    member htar cannot hold."""
    if not 0 < min_bytes <= max_bytes / 2:
        raise CovmocksError(f"bundle sizes {min_bytes} to {max_bytes} bytes: the smallest must "
                            "be positive and at most half the largest")  # fmt: skip
    bundles: list[Bundle] = []
    small: list[tuple[str, list[Unit]]] = []  # whole snapshots below min_bytes, packed

    def add(label: str, units: list[Unit], snaps: tuple[str, ...]) -> None:
        reals = [r for r, _ in units]
        bundles.append(Bundle(f"{prefix}_{label}", base,
                              tuple(n for _, files in units for n, _ in files), _bytes(units),
                              snaps, (min(reals), max(reals)) if reals else None))  # fmt: skip

    def flush() -> None:
        if small:
            label = f"z{small[0][0]}" + (f"-z{small[-1][0]}" if len(small) > 1 else "")
            add(label, [u for _, units in small for u in units], tuple(z for z, _ in small))
            small.clear()

    for z, units in snapshots.items():
        for _, files in units:
            for name, size in files:
                _check_member(name, size)
        total = _bytes(units)
        if total < min_bytes:
            if small and sum(_bytes(us) for _, us in small) + total > max_bytes:
                flush()
            small.append((z, units))
            if sum(_bytes(us) for _, us in small) >= min_bytes:
                flush()
            continue
        parts = _split(units, max_bytes)
        for i, part in enumerate(parts):
            if _bytes(part) > max_bytes:
                raise CovmocksError(f"a box of snapshot {z} is larger than a bundle "
                                    f"({max_bytes} bytes)")  # fmt: skip
            add(f"z{z}_{i:03d}" if len(parts) > 1 else f"z{z}", part, (z,))
    flush()
    return bundles


def loose_bundle(name: str, base: Path, files: list[tuple[str, int]]) -> Bundle:
    """A bundle of files that belong to no box (the release directory, the report)."""
    for member, size in files:
        _check_member(member, size)
    return Bundle(name, base, tuple(n for n, _ in files), sum(s for _, s in files))


def describe(bundles: list[Bundle]) -> list[str]:
    """One line per bundle: name, size, files, what it holds (the dry run)."""
    lines = []
    for b in bundles:
        what = ""
        if b.snapshots:
            r0, r1 = b.realizations
            what = f"snapshots {', '.join(b.snapshots)}; realizations {r0}-{r1}"
        lines.append(f"{b.name}  {b.n_bytes / GB:.3f} GB  {len(b.members)} files  {what}".rstrip())
    return lines


SCRIPT = """#!/usr/bin/env bash
# Archive {what} to NERSC HPSS with htar: {n} bundles, {gb:.3f} GB (covmocks release --htar-plan).
#   HPSS_DIR=<HPSS directory> ./htar.sh    archive every bundle not archived yet (default {hpss})
#   ./htar.sh --dry-run                    print the bundles and their commands; run nothing
# Per bundle, in its base directory: htar -cvf $HPSS_DIR/<bundle>.tar $HTAR_CHECK -L <members>;
# its listing goes to $LOG_DIR/<bundle>.listing. Exit status 0 and "HTAR SUCCESSFUL" in the
# listing, or the script stops (exit 1): htar prints HTAR SUCCESSFUL and still exits 70 when it
# skipped a member whose name is too long. $LOG_DIR/<bundle>.done marks a bundle archived.
set -u -o pipefail
here=$(cd "$(dirname "$0")" && pwd)
HPSS_DIR=${{HPSS_DIR:-{hpss}}}
HTAR_CHECK=${{HTAR_CHECK:--Hcrc}}
LOG_DIR=${{LOG_DIR:-$here/{logs}}}
dry=0
[ "${{1:-}}" = --dry-run ] && dry=1
archive() {{  # bundle base bytes
  local bundle=$1 base=$here/$2 bytes=$3
  local cmd=(htar -cvf "$HPSS_DIR/$bundle.tar" $HTAR_CHECK -L "$here/$bundle.members")
  if [ $dry = 1 ]; then
    n=$(wc -l < "$here/$bundle.members")
    echo "$bundle  $bytes bytes  $n files: (cd $base && ${{cmd[*]}})"
    return 0
  fi
  if [ -e "$LOG_DIR/$bundle.done" ]; then
    echo "$bundle: archived before ($LOG_DIR/$bundle.done)"
    return 0
  fi
  mkdir -p "$LOG_DIR" || exit 1
  (cd "$base" && "${{cmd[@]}}") > "$LOG_DIR/$bundle.listing" 2>&1
  local rc=$?
  if [ $rc -ne 0 ] || ! grep -q "HTAR SUCCESSFUL" "$LOG_DIR/$bundle.listing"; then
    echo "htar.sh: bundle $bundle failed (htar exit status $rc;" \\
      "listing $LOG_DIR/$bundle.listing); stopping" >&2
    exit 1
  fi
  date -u +%Y-%m-%dT%H:%M:%SZ > "$LOG_DIR/$bundle.done"
  echo "$bundle: archived, $bytes bytes"
}}
"""


def write_plan(directory: Path, bundles: list[Bundle], what: str, hpss: str,
               logs: Path) -> Path:  # fmt: skip
    """Write ``htar.sh``, one ``<bundle>.members`` per bundle and ``bundles.txt`` (the dry
    run's lines) into ``directory``; returns the script."""
    from covmocks.core import files

    directory.mkdir(parents=True, exist_ok=True)
    for b in bundles:
        files.write_text(directory / f"{b.name}.members", "".join(f"{m}\n" for m in b.members))
    files.write_text(directory / "bundles.txt", "".join(f"{line}\n" for line in describe(bundles)))
    rel = lambda p: shlex.quote(os.path.relpath(p, directory))  # noqa: E731
    calls = "".join(f"archive {b.name} {rel(b.base)} {b.n_bytes}\n" for b in bundles)
    script = directory / "htar.sh"
    text = SCRIPT.format(what=what, n=len(bundles), gb=sum(b.n_bytes for b in bundles) / GB,
                         hpss=shlex.quote(hpss), logs=rel(logs))  # fmt: skip
    files.write_text(script, text + calls + '[ $dry = 1 ] || echo "all bundles archived"\n')
    script.chmod(0o755)
    return script
