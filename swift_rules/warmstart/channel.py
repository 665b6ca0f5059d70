"""What both halves of warm start share: where the socket lives (a private folder of
this user, checked with lstat by both sides), how a request and its answer travel over
it, and who is at the other end (SO_PEERCRED). See ``swift_rules.warmstart``."""

from __future__ import annotations

import os
import socket
import stat
import struct

ENV = "SWIFT_RULES_WARM"
# Set beside ENV by a batch job's own Snakemake that serves its group of jobs: the job
# steps it starts (Slurm runs each with srun, a Snakemake of its own) keep its offer.
GROUP_ENV = "SWIFT_RULES_WARM_GROUP"
# What the server imports once for all its jobs (the client checks first that Snakemake's
# Python has them); more modules, e.g. a stage's heavy dependencies, comma-separated.
PRELOAD = (
    "numpy",
    "awkward",
    "uproot",
    "hist",
    "numba",
    "dask",
    "distributed",
    "coffea.processor",
    "coffea.nanoevents",
    "swift_rules.cli",
    "swift_rules.cli.data",
    "swift_rules.cli.outputs",
    "swift_rules.cli.runs",
    "swift_rules.cli.stages",
    "swift_rules.runner",
    "swift_rules.results",
    "swift_rules.config",
)
PRELOAD_ENV = "SWIFT_RULES_WARM_PRELOAD"
RUNNING = b"R"  # the server says: the child runs your command
HEADER = struct.Struct("!Q")
STATUS = struct.Struct("!i")
UCRED = struct.Struct("3i")  # SO_PEERCRED: pid, uid, gid
# Beside the socket, made by the Snakemake that started the server when its jobs turn out
# to run elsewhere (a cluster executor): the server stops (its lock, log and folder go).
WITHDRAWN = ".withdrawn"


class Unavailable(Exception):
    """No safe place for warm start here (the message says why): jobs run without it."""


def parse(value: str) -> tuple[str, int, str] | None:
    host, _, rest = value.partition(":")
    pid, _, path = rest.partition(":")
    if not (host and pid.isdigit() and path):
        return None
    return host, int(pid), path


def not_private(folder: str) -> str | None:
    """Why ``folder`` is not a private folder of this user (None: it is). One lstat."""
    try:
        st = os.lstat(folder)
    except OSError as err:
        return f"cannot use {folder}: {err.strerror}"
    if not stat.S_ISDIR(st.st_mode):
        return f"{folder} is not a folder (a link or a file)"
    if st.st_uid != os.geteuid():
        return f"{folder} belongs to uid {st.st_uid}, not to you (uid {os.geteuid()})"
    if st.st_mode & 0o077:
        return f"{folder} is open to other users (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def open_private(path: str, flags: int) -> int:
    """A file of the warm-start folder, never through a link, created mode 0600."""
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


def peer_uid(sock: socket.socket) -> tuple[int, int]:
    """(uid, pid) of the process at the other end of a Unix socket (the kernel's word)."""
    pid, uid, _ = UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, UCRED.size))
    return uid, pid


def recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data
