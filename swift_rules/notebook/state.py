"""The private state folder of notebook runs, and the identity of a run's process.

``DIRECTORY/.swift-rules/notebook/`` holds the record of the last run started from a
notebook in DIRECTORY (``run.json``), Snakemake's output (``run.log``), the exit
record (``exit.json``) and a stop request (``stop.json``). Machines are shared: the
folder must be this user's and closed to everyone else (mode 0700), and a process id
found there is signalled only while that process is this user's, started when the
record says, and runs the supervisor of this folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from pathlib import Path

from swift_rules.errors import SwiftError

STATE = Path(".swift-rules") / "notebook"
SUPERVISOR = "swift_rules.notebook.supervise"


class NotebookError(SwiftError):
    """A notebook API error that is the user's to fix: shown as one line."""


def _check_folder(path: Path) -> None:
    try:
        st = os.lstat(path)
    except OSError as err:
        raise NotebookError(f"cannot use the state folder {path}: {err}") from err
    if not stat.S_ISDIR(st.st_mode):
        raise NotebookError(
            f"{path} is not a folder (a link or a file is there): swift-rules keeps its "
            "notebook state there; remove it"
        )
    if st.st_uid != os.geteuid():
        raise NotebookError(
            f"{path} belongs to uid {st.st_uid}, not to you (uid {os.geteuid()}): another "
            "user's state is never used; run in a directory of your own"
        )
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise NotebookError(
            f"{path} is open to others (mode {stat.S_IMODE(st.st_mode):o}): anyone could "
            f"plant a record there; `chmod 700 {path}` if its content is yours, or remove it"
        )


def state_dir(directory: str | Path, create: bool = False) -> Path:
    """The checked state folder of ``directory`` (created, mode 0700, if asked)."""
    directory = Path(directory)
    path = directory / STATE
    for folder in (path.parent, path):
        if create and not os.path.lexists(folder):
            try:
                os.mkdir(folder, 0o700)
            except FileExistsError:
                pass
            except OSError as err:
                raise NotebookError(f"cannot create the state folder {folder}: {err}") from err
        elif not os.path.lexists(folder):
            raise NotebookError(f"no workflow was started from a notebook in {directory}")
        _check_folder(folder)
    return path


def read_json(path: Path) -> dict | None:
    """A record of the state folder: this user's regular file, or None if absent."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise NotebookError(f"cannot read {path}: {err}") from err
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            raise NotebookError(f"{path} is not a file of yours: remove it")
        try:
            return json.loads(fh.read())
        except ValueError as err:
            raise NotebookError(f"{path} is damaged ({err}): remove it") from None


def write_json(path: Path, record: dict) -> None:
    """Write a record atomically (a file of mode 0600 renamed into place)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def open_private(path: Path, mode: str = "w"):
    """A new file of mode 0600 at ``path`` (an old one, or a link, is replaced)."""
    with contextlib.suppress(OSError):
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    return os.fdopen(fd, mode)


# -- processes --------------------------------------------------------------------------


def start_ticks(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), None if there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # a zombie is no longer running
        return None
    return int(fields[19])


def _uid(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def is_our_run(record: dict, folder: Path) -> bool:
    """Whether the run's supervisor is alive and is that process (not a reused pid)."""
    pid = record.get("pid")
    if not isinstance(pid, int) or pid <= 1:
        return False
    if start_ticks(pid) != record.get("start_ticks"):
        return False
    if _uid(pid) != os.geteuid():
        return False
    cmd = _cmdline(pid)
    return SUPERVISOR in cmd and str(folder.resolve()) in cmd


def wait_gone(record: dict, folder: Path, timeout: float, popen=None) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if popen is not None:
            popen.poll()
        if not is_our_run(record, folder):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


def wait_warm_server(snakemake_pid: int, timeout: float) -> bool:
    """Wait until the warm-start server of that Snakemake run (swift_rules.warmstart, in a
    session of its own) has gone: it ends after its last job, once Snakemake has."""
    deadline = time.monotonic() + timeout
    while True:
        found = False
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            cmd = _cmdline(int(proc.name))
            if "swift_rules.warmstart" in cmd and str(snakemake_pid) in cmd[-3:]:
                found = _uid(int(proc.name)) == os.geteuid()
                if found:
                    break
        if not found:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
