"""A DIRAC job's outputs, taken from the tar file its output sandbox brings back.

The tar comes from a grid worker node, which we do not trust: unpacked over the working
directory it could rewrite the workflow itself (``workflow/Snakefile``, the config).
So it is unpacked into a fresh folder first, and only the paths the job declared (its
outputs and logs) are moved into the working directory. A tar with anything but plain
files and folders (links, devices), or a name that is absolute or climbs out with
``..``, is refused whole: the job that made it is not to be believed.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from swift_rules.dirac.transport import DiracError


class OutputError(DiracError):
    """An output sandbox that is refused."""


def take_outputs(data: bytes, workdir: Path, declared: Iterable[str], scratch: Path) -> list[str]:
    """Move the ``declared`` paths (relative to ``workdir``) found in the tar ``data`` into
    ``workdir``; the names in the tar that were not declared (left out)."""
    declared = [PurePosixPath(p) for p in declared]
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="outputs-", dir=scratch) as tmp:
        names = _unpack_checked(data, Path(tmp))
        for path in declared:
            src = Path(tmp, path)
            if os.path.lexists(src):
                _replace(src, workdir / path)
    return sorted(n for n in names if not any(_within(PurePosixPath(n), d) for d in declared))


def _unpack_checked(data: bytes, dest: Path) -> list[str]:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check(member)
            tar.extractall(dest, filter="data")
    except tarfile.TarError as err:
        raise OutputError(f"its outputs are not a readable tar file ({err})") from None
    return [m.name for m in members if m.isfile()]


def _check(member: tarfile.TarInfo) -> None:
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts:
        raise OutputError(f"its outputs hold {member.name!r}, outside the working directory")
    if not (member.isfile() or member.isdir()):
        kind = "a link" if member.issym() or member.islnk() else "a special file"
        raise OutputError(f"its outputs hold {member.name!r}, {kind}: refused")


def _within(name: PurePosixPath, declared: PurePosixPath) -> bool:
    return name == declared or declared in name.parents


def _replace(src: Path, dest: Path) -> None:
    """``dest`` becomes ``src`` (a file or a folder), whatever was there."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_dir() and not dest.is_symlink():
        shutil.rmtree(dest)
    elif os.path.lexists(dest):
        dest.unlink()
    shutil.move(src, dest)
