"""Every file covmocks writes appears whole or not at all, durably, under its final name.

The writer fills a temporary beside the target (``temporary``). ``publish`` then fsyncs it,
renames it over the target (or refuses a target that appeared meanwhile), and fsyncs the
directory. After a node crash the name therefore holds the whole new content or the old
one, never an empty or a cut file. Temporaries are hidden and unique on every node:
``.<name>.tmp-<pid>-<random>``. A pid alone is not unique across nodes: an orphaned writer
on one node and a new attempt on another could share one. The cleanup of a killed attempt
(``covmocks.apps.box_task``) finds them by the ``.<name>.tmp-`` prefix.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path

from covmocks.core.errors import NO_SPACE_ERRNOS, OutputError, no_space


class OutputExistsError(OutputError):
    """The final file appeared while this one was being written."""


def temporary(path) -> Path:
    """A new, empty, unique temporary beside ``path`` (created with the process umask), for
    ``publish``. Raises ``NoSpaceError`` where the directory is full."""
    path = Path(path)
    while True:
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno in NO_SPACE_ERRNOS:
                raise no_space(path, exc) from exc
            raise


def _fsync(path: Path, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # a filesystem that cannot sync a directory
            raise
    finally:
        os.close(fd)


def _link(tmp: Path, path: Path) -> bool:
    """Publish ``tmp`` as ``path`` unless ``path`` exists, in one step (a hard link, then
    ``tmp`` removed): two writers of one output never both publish. False where the
    filesystem has no hard links (then ``path`` is checked, then replaced)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV):
            raise
        if path.exists():
            raise FileExistsError(errno.EEXIST, "exists", str(path)) from exc
        return False
    tmp.unlink()
    return True


def publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Make the closed temporary ``tmp`` durable and rename it to ``path``, then make the
    rename durable (fsync of the directory). Refuses (``OutputExistsError``) where ``path``
    appeared meanwhile, unless ``overwrite``. A filesystem that reports a full disk only at
    fsync (NFS, Lustre, delayed allocation) raises ``NoSpaceError``."""
    tmp, path = Path(tmp), Path(path)
    try:
        _fsync(tmp)
        if overwrite or not _link(tmp, path):
            os.replace(tmp, path)
        _fsync(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    except FileExistsError:
        raise OutputExistsError(f"output appeared while writing: {path}") from None
    except OSError as exc:
        if exc.errno in NO_SPACE_ERRNOS:
            raise no_space(path, exc) from exc
        raise


@contextlib.contextmanager
def replaced(path) -> Iterator[Path]:
    """Yield a temporary of ``path`` to write; on success publish it over ``path`` (replacing
    an older file); remove it on any error. Creates ``path``'s directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary(path)
    try:
        yield tmp
        publish(tmp, path, overwrite=True)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path, text: str | Iterable[str]) -> None:
    """Write ``text`` (UTF-8; or its pieces, streamed) to ``path``, whole or not at all."""
    with replaced(path) as tmp:
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.writelines([text] if isinstance(text, str) else text)
        except OSError as exc:
            if exc.errno in NO_SPACE_ERRNOS:
                raise no_space(path, exc) from exc
            raise


def write_json(path, data, indent: int = 1) -> None:
    """``data`` as JSON (``default=str`` for paths and the like) in ``path``, whole or not
    at all."""
    write_text(path, json.dumps(data, indent=indent, default=str) + "\n")
