"""Atomic file output: write beside the target, then rename onto it.

A job killed mid-write leaves at most a stray ``.tmp-*`` entry, never a truncated
output that Snakemake (or a user) would take for a finished one.

Results folders may be shared with a group (or be a REANA workspace), so nothing here
follows a name another user could have planted: ``write_bytes`` writes through the
descriptor of a file it created itself (``O_EXCL``); ``atomic_path`` hands writers that
need a path (uproot, matplotlib) a file inside a private folder (mode 0700) of its own.
Outputs are never group- or world-writable: results are only read back (unpickled)
from files nobody else could have written (``swift_rules.results``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from swift_rules.errors import SwiftError


def output_mode() -> int:
    """The mode of every output: the umask's, less group and other write."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask & ~(stat.S_IWGRP | stat.S_IWOTH)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path for ``target``; rename it onto ``target`` on success.

    ``suffix`` defaults to the target's own suffix, so that writers that pick a
    format from the file name (uproot, matplotlib) still see the right one.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(target.suffixes)
    folder = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    tmp_path = folder / f"output{suffix}"
    try:
        yield tmp_path
        fd = os.open(tmp_path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise SwiftError(f"{target}: the writer made no regular file")
            os.fchmod(fd, output_mode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp_path, target)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_bytes(target: str | os.PathLike, data: bytes) -> None:
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{target.name}-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), output_mode())
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text(target: str | os.PathLike, text: str) -> None:
    write_bytes(target, text.encode())
