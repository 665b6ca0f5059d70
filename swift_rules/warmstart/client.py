"""The client half of warm start: the run's offer (at parse time) and each job's hand-over
to the server (``swift-rules``' ``main``). It imports nothing of the command line: the
server half (``swift_rules.warmstart.server``) runs the commands."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

from swift_rules.warmstart.channel import (
    ENV,
    GROUP_ENV,
    HEADER,
    PRELOAD,
    RUNNING,
    STATUS,
    WITHDRAWN,
    Unavailable,
    not_private,
    open_private,
    parse,
    peer_uid,
    recv_exact,
)  # fmt: skip

_SERVERS: list[subprocess.Popen] = []  # started at parse time (kept: no ResourceWarning)
CONNECT_TIMEOUT_S = 60.0  # the server binds at once, but a loaded machine may be slow to start it


def address(owner_pid: int) -> str:
    """The ``SWIFT_RULES_WARM`` value for a Snakemake process ``owner_pid`` on this host,
    in a fresh private folder. Unavailable: none can be made (the reason)."""
    if not hasattr(socket, "SO_PEERCRED"):
        raise Unavailable("this system cannot tell who is at the other end of a Unix socket")
    base = os.environ.get("XDG_RUNTIME_DIR")
    if not base or not_private(base):
        base = tempfile.gettempdir()
    try:
        folder = tempfile.mkdtemp(prefix="swift-rules-warm-", dir=base)
    except OSError as err:
        raise Unavailable(f"cannot make a private folder in {base}: {err.strerror}") from None
    problem = not_private(folder)
    if problem:
        raise Unavailable(problem)
    return f"{socket.gethostname()}:{owner_pid}:{os.path.join(folder, f'{owner_pid}.sock')}"


def _off(reason: str) -> None:
    print(f"swift-rules: warm start off: {reason}", file=sys.stderr)


def offer(workflow, enabled: bool) -> None:
    """At workflow parse time: offer warm start to this run's jobs, or withdraw it.

    Offered by a Snakemake process that runs jobs on this machine: the main process, or
    a batch job's own Snakemake (``--mode remote``) when it runs several jobs (a group
    job: ``--groups``/``--group-components``), whose jobs then pay the set-up once per
    batch job. A job step of such a group job (under Slurm, each job of the group is a
    Snakemake of its own, started with srun) keeps its group's offer. Any other offer
    that a batch job inherits is withdrawn: its jobs must run inside the batch job, not
    in a server outside it. Never in a dry run, which runs no job; Snakemake 7 has no
    such flags, so it never offers.
    """
    inherited = os.environ.pop(ENV, None), os.environ.pop(GROUP_ENV, None)
    if (
        not enabled
        or getattr(workflow, "dryrun", True)
        or not getattr(workflow, "local_exec", False)
    ):
        return
    if getattr(workflow, "is_main_process", False):
        if _serve(group=False):
            _watch_executor(workflow)
    elif getattr(workflow, "remote_exec", False):
        if target_jobs(sys.argv) > 1:
            _serve(group=True)
        elif inherited[0] and inherited[1]:
            os.environ[ENV], os.environ[GROUP_ENV] = inherited


def _serve(group: bool) -> bool:
    """Start this process's server and offer it to the jobs it runs; False: not started."""
    missing = _missing(PRELOAD)
    if missing:  # (e.g. an engine's own environment that has Snakemake only)
        _off(f"{sys.executable} cannot import {', '.join(missing)}: jobs start cold")
        return False
    try:
        value = address(os.getpid())
        # Preload while Snakemake builds its DAG, so that the first jobs need not wait.
        # (A run with nothing to do loses a background process that exits with Snakemake.)
        _SERVERS.append(_start_server(parse(value)[2], os.getpid()))
    except Unavailable as err:
        _off(str(err))
        return False
    os.environ[ENV] = value
    if group:
        os.environ[GROUP_ENV] = "1"
    return True


def _missing(modules) -> list[str]:
    """The top-level packages of ``modules`` that this Python cannot import (found
    without importing them: a few milliseconds)."""
    import importlib.util

    tops = dict.fromkeys(name.split(".")[0] for name in modules)
    return [name for name in tops if importlib.util.find_spec(name) is None]


def _watch_executor(workflow, poll_s: float = 0.2) -> None:
    """Snakemake 9 picks its executor only after it has read the workflow: once it has
    (before it builds the DAG), a run whose jobs run elsewhere (a cluster executor)
    withdraws the offer, and its server stops instead of holding ~270 MB for the run."""
    import threading

    def watch() -> None:
        while getattr(workflow, "executor_plugin", None) is None:
            time.sleep(poll_s)
        if not getattr(workflow, "local_exec", True):
            withdraw()
            _off("this run's jobs run elsewhere (a cluster executor): its server stops")

    threading.Thread(target=watch, name="swift-rules-warm-watch", daemon=True).start()


def withdraw() -> None:
    """Stop this process's server (a marker beside its socket) and offer no more."""
    spec = parse(os.environ.pop(ENV, ""))
    if spec is None or spec[1] != os.getpid():
        return
    with contextlib.suppress(FileNotFoundError):  # (its folder gone: it has stopped)
        os.close(open_private(spec[2] + WITHDRAWN, os.O_WRONLY | os.O_CREAT))


def target_jobs(argv: list[str]) -> int:
    """How many jobs a batch job's Snakemake (``--mode remote``) runs: the words after its
    ``--target-jobs``, one per job. (Snakemake applies its DAG settings after it has read
    the workflow, so while it reads it only the command line tells.)"""
    if "--target-jobs" not in argv:
        return 0
    words = argv[argv.index("--target-jobs") + 1 :]
    return next((i for i, word in enumerate(words) if word.startswith("-")), len(words))


def delegate(argv: list[str]) -> int | None:
    """Run ``swift-rules ARGV`` in a child of the warm server; its exit status.

    None: no warm start here (not configured, another host, or the server could not
    take the job before it started): the caller runs the command itself.
    """
    spec = parse(os.environ.get(ENV, ""))
    if spec is None or spec[0] != socket.gethostname():
        return None
    _, owner, path = spec
    problem = not_private(os.path.dirname(path))
    if problem:
        _off(problem)
        return None
    if os.path.exists(path + ".failed"):
        return None
    sock = _connect(path, owner)
    if sock is None:
        return None
    with sock:
        try:
            _send_request(sock, argv)
            if sock.recv(1) != RUNNING:
                return None  # the server went away before forking: run here
        except OSError:
            return None
        try:
            status = recv_exact(sock, STATUS.size)
        except OSError as err:
            status = b""
            reason = str(err)
        else:
            reason = "connection closed"
    if len(status) == STATUS.size:
        return STATUS.unpack(status)[0]
    print(
        f"swift-rules: the warm-start server ({path}) went away while running this job "
        f"({reason}); its log is {path}.log. Rerun the workflow.",
        file=sys.stderr,
    )
    return 1


def _connect(path: str, owner: int) -> socket.socket | None:
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    server = None
    while time.monotonic() < deadline:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return _ours(sock, path)
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
        except OSError as err:
            sock.close()
            _off(f"cannot connect to {path}: {err.strerror}")
            return None
        try:
            if server is None:
                server = _start_server(path, owner)
            elif server.poll() not in (None, 0) or os.path.exists(path + ".failed"):
                return None  # it could not start (see its log); 0: another server took the lock
        except Unavailable as err:
            _off(str(err))
            return None
        time.sleep(0.05)
    return None


def _ours(sock: socket.socket, path: str) -> socket.socket | None:
    """``sock`` if the server at its other end runs as this user; else closed, and None."""
    uid, pid = peer_uid(sock)
    if uid == os.geteuid():
        return sock
    sock.close()
    _off(f"the server on {path} (pid {pid}) runs as uid {uid}, not as you (uid {os.geteuid()})")
    return None


def _start_server(path: str, owner: int) -> subprocess.Popen:
    try:
        log = open_private(path + ".log", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    except OSError as err:
        raise Unavailable(f"cannot open the log {path}.log: {err.strerror}") from None
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "swift_rules.warmstart.server", path, str(owner)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        os.close(log)


def _send_request(sock: socket.socket, argv: list[str]) -> None:
    request = json.dumps(
        {"argv": list(argv), "cwd": os.getcwd(), "env": dict(os.environ), "path": sys.path}
    ).encode()
    # The length travels with our three standard streams; the child writes to them.
    socket.send_fds(sock, [HEADER.pack(len(request))], [0, 1, 2])
    sock.sendall(request)
