"""A release as a manifest-only BagIt bag (RFC 8493), and its verification.

The payload stays where the campaign made it (nothing is moved): ``manifest-sha256.txt``
lists every payload file, ``<sha256>  <path>`` with the path from the campaign directory
(``Layout.payload``), so that ``sha256sum -c`` run there checks it as well;
``payload-sizes.txt`` has each one's size in bytes, ``<size>  <path>``, the same order;
``tagmanifest-sha256.txt`` lists the release directory's own files, paths from it.
``release.json``'s ``payload`` says where the campaign directory is, from the release
directory (``..`` steps where the release sits inside it).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from covmocks.core.errors import CovmocksError
from covmocks.core.layout import RELEASED, ReleaseLayout
from covmocks.release.digest import Job, hash_files

log = logging.getLogger(__name__)

BAGIT = "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
SIZES = "payload-sizes.txt"


def tree_files(root: Path, tops=RELEASED) -> list[str]:
    """Every file under ``root``'s directories ``tops`` (``root`` itself where ``tops`` is
    empty), as sorted POSIX paths from ``root``."""
    names = []
    for top in tops or ("",):
        base = root / top
        for folder, _, filenames in os.walk(base):
            rel = Path(folder).relative_to(root)
            names += [(rel / n).as_posix() for n in filenames]
    return sorted(names)


def manifest_text(rows: list[tuple[str, str]]) -> str:
    """BagIt's manifest lines ``<checksum>  <path>`` of ``(path, checksum)`` rows (a path's
    line breaks and ``%`` percent-encoded, as RFC 8493 asks)."""
    return "".join(f"{digest}  {_encode(name)}\n" for name, digest in rows)


def _encode(name: str) -> str:
    return name.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _decode(name: str) -> str:
    return name.replace("%0A", "\n").replace("%0D", "\r").replace("%25", "%")


def read_manifest(path: Path) -> dict[str, str]:
    """``{path: value}`` of a manifest-format file (two columns, two spaces between)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CovmocksError(f"{path}: no such file: not a release directory") from None
    rows = {}
    for number, line in enumerate(text.splitlines(), 1):
        value, sep, name = line.partition("  ")
        if not sep or not name:
            raise CovmocksError(f"{path}:{number}: not '<value>  <path>': {line[:80]!r}")
        rows[_decode(name)] = value
    return rows


def payload_root(release: ReleaseLayout, payload: Path | None = None) -> Path:
    """The campaign directory a release's payload paths start from: ``payload`` where given,
    else what ``release.json`` says, from the release directory."""
    if payload is not None:
        return Path(payload)
    try:
        record = json.loads(release.record.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CovmocksError(f"{release.record}: no such file: not a release directory") from None
    return Path(os.path.normpath(release.root / record["payload"]))


def verify(release_dir: Path, payload: Path | None = None, workers: int | None = None,
           progress: bool = True) -> tuple[list[str], int, int]:  # fmt: skip
    """Check a release against its manifests: (one line per missing, extra or changed file,
    files checked, bytes hashed). Sizes first (a file of the wrong size is not hashed)."""
    release = ReleaseLayout(Path(release_dir))
    root = payload_root(release, payload)
    if not all((root / top).is_dir() for top in RELEASED):
        raise CovmocksError(f"{release.root}: its payload (the campaign directory) is not at "
                            f"{root}; name it with --payload DIR")  # fmt: skip
    manifest = read_manifest(release.manifest)
    sizes = {name: int(size) for name, size in read_manifest(release.root / SIZES).items()}
    tags = read_manifest(release.tagmanifest)
    lines, jobs = [], []
    checks = [(root, manifest, tree_files(root), "payload"),
              (release.root, tags, tree_files(release.root, ()), "release")]  # fmt: skip
    for base, listed, present, where in checks:
        present_set = set(present)
        extra = present_set - set(listed)
        if where == "release":
            extra.discard(release.tagmanifest.name)
        lines += [f"extra {where} file {base / n}: not in the manifest" for n in sorted(extra)]
        for name, digest in listed.items():
            path = base / name
            if name not in present_set:
                lines.append(f"missing {where} file {path}")
                continue
            size = path.stat().st_size
            if where == "payload" and sizes.get(name) != size:
                lines.append(f"changed {path}: {size} bytes, the manifest says {sizes.get(name)}")
                continue
            jobs.append((Job(path, name, size), digest))
    t0 = time.perf_counter()
    results = hash_files([j for j, _ in jobs], workers, progress, "verifying")
    for (job, digest), result in zip(jobs, results, strict=True):
        if result.problem:
            lines.append(f"changed {job.path}: {result.problem}")
        elif result.sha256 != digest:
            lines.append(f"changed {job.path}: sha256 {result.sha256}, the manifest says {digest}")
    n_bytes = sum(j.size for j, _ in jobs)
    log.info("hashed %d files (%d bytes) in %.1f s", len(jobs), n_bytes, time.perf_counter() - t0)
    return lines, len(manifest) + len(tags), n_bytes
