"""Warm start: the jobs of a local Snakemake run forked from a process that has the
heavy libraries imported already.

A stage job is a fresh Python process that spends about 1.3 s importing coffea, numba,
awkward, uproot... and 0.8 s setting up numba's compiler before it reads one event; a
merge job spends 0.4 s importing. On the reference workflow that was a third of the wall
time. So, within one Snakemake run on one machine, the first ``swift-rules`` job starts a
server that imports those libraries once, and every job (the *client*) hands the server
its command line, working directory, environment and standard streams (file descriptors
over a Unix socket); the server forks a child that runs the command exactly as the job
would have, and the client exits with the child's status. Python's multiprocessing
"forkserver", across processes.

Limits, on purpose:
- Only jobs that Snakemake runs on this machine use it: ``stages.smk`` sets
  ``SWIFT_RULES_WARM`` (host, Snakemake's pid, socket path) only for local execution,
  and a client on another host ignores it.
- The server lives no longer than the Snakemake process that it serves.
- Only installed libraries and swift-rules' job code are preloaded, not the stages:
  each child imports the stage's module itself, so an edited stage always runs as edited.
- If anything is wrong before the job starts (no server, preload failed, another host),
  the client runs the job in its own process, as without warm start.
Killing a client (Snakemake cancelling the job) kills its child and the child's own
processes (a Dask LocalCluster's workers).

Who may talk to whom (docs/security.md): the job hands the server its whole environment
(tokens included) and its standard streams, and the server runs what it is sent as the
user. So the socket lives in a fresh private folder (``$XDG_RUNTIME_DIR`` where it is the
user's, else ``mkdtemp`` in the temporary folder), checked with ``lstat`` by both sides
(a real folder, the user's, mode 0700); its files are opened without following links;
and each side checks the other's uid with ``SO_PEERCRED``, as ssh-agent, tmux and
multiprocessing's forkserver do. Anything amiss: warm start is off, with one line why.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import selectors
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time

ENV = "SWIFT_RULES_WARM"
# More modules to import in the server, e.g. a stage's heavy dependencies (comma-separated).
PRELOAD_ENV = "SWIFT_RULES_WARM_PRELOAD"
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
    "swift_rules.runner",
    "swift_rules.results",
    "swift_rules.config",
)
_SERVERS: list[subprocess.Popen] = []  # started at parse time (kept: no ResourceWarning)
CONNECT_TIMEOUT_S = 60.0  # the server binds at once, but a loaded machine may be slow to start it
RUNNING = b"R"  # the server says: the child runs your command
HEADER = struct.Struct("!Q")
STATUS = struct.Struct("!i")
UCRED = struct.Struct("3i")  # SO_PEERCRED: pid, uid, gid


# -- where ------------------------------------------------------------------


class Unavailable(Exception):
    """No safe place for warm start here (the message says why): jobs run without it."""


def address(owner_pid: int) -> str:
    """The ``SWIFT_RULES_WARM`` value for a Snakemake process ``owner_pid`` on this host,
    in a fresh private folder. Unavailable: none can be made (the reason)."""
    if not hasattr(socket, "SO_PEERCRED"):
        raise Unavailable("this system cannot tell who is at the other end of a Unix socket")
    base = os.environ.get("XDG_RUNTIME_DIR")
    if not base or _not_private(base):
        base = tempfile.gettempdir()
    try:
        folder = tempfile.mkdtemp(prefix="swift-rules-warm-", dir=base)
    except OSError as err:
        raise Unavailable(f"cannot make a private folder in {base}: {err.strerror}") from None
    problem = _not_private(folder)
    if problem:
        raise Unavailable(problem)
    return f"{socket.gethostname()}:{owner_pid}:{os.path.join(folder, f'{owner_pid}.sock')}"


def _not_private(folder: str) -> str | None:
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


def _open_private(path: str, flags: int) -> int:
    """A file of the warm-start folder, never through a link, created mode 0600."""
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


def _off(reason: str) -> None:
    print(f"swift-rules: warm start off: {reason}", file=sys.stderr)


def offer(workflow, enabled: bool) -> None:
    """At workflow parse time: offer warm start to this run's jobs, or withdraw it.

    Only Snakemake's main process, running jobs on this machine (not through a cluster
    executor, not a job's own Snakemake inside a batch job) offers it; not a dry run,
    which runs no job. Snakemake 7 has no such flags, so it never does.
    """
    local = getattr(workflow, "is_main_process", False) and getattr(workflow, "local_exec", False)
    os.environ.pop(ENV, None)
    if not (enabled and local) or getattr(workflow, "dryrun", True):
        return
    try:
        value = address(os.getpid())
        # Preload while Snakemake builds its DAG, so that the first jobs need not wait.
        # (A run with nothing to do loses a background process that exits with Snakemake.)
        _SERVERS.append(_start_server(_parse(value)[2], os.getpid()))
    except Unavailable as err:
        _off(str(err))
        return
    os.environ[ENV] = value


def _parse(value: str) -> tuple[str, int, str] | None:
    host, _, rest = value.partition(":")
    pid, _, path = rest.partition(":")
    if not (host and pid.isdigit() and path):
        return None
    return host, int(pid), path


# -- client -----------------------------------------------------------------


def delegate(argv: list[str]) -> int | None:
    """Run ``swift-rules ARGV`` in a child of the warm server; its exit status.

    None: no warm start here (not configured, another host, or the server could not
    take the job before it started): the caller runs the command itself.
    """
    spec = _parse(os.environ.get(ENV, ""))
    if spec is None or spec[0] != socket.gethostname():
        return None
    _, owner, path = spec
    problem = _not_private(os.path.dirname(path))
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
            status = _recv_exact(sock, STATUS.size)
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


def _peer_uid(sock: socket.socket) -> tuple[int, int]:
    """(uid, pid) of the process at the other end of a Unix socket (the kernel's word)."""
    pid, uid, _ = UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, UCRED.size))
    return uid, pid


def _ours(sock: socket.socket, path: str) -> socket.socket | None:
    """``sock`` if the server at its other end runs as this user; else closed, and None."""
    uid, pid = _peer_uid(sock)
    if uid == os.geteuid():
        return sock
    sock.close()
    _off(f"the server on {path} (pid {pid}) runs as uid {uid}, not as you (uid {os.geteuid()})")
    return None


def _start_server(path: str, owner: int) -> subprocess.Popen:
    try:
        log = _open_private(path + ".log", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    except OSError as err:
        raise Unavailable(f"cannot open the log {path}.log: {err.strerror}") from None
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "swift_rules.warmstart", path, str(owner)],
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


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


# -- server -----------------------------------------------------------------


def serve(path: str, owner: int) -> int:
    """Serve jobs on ``path`` until process ``owner`` (Snakemake) has gone.

    Exit status 0: served, or another server holds the lock; 3: preload failed; 4: the
    folder is not private, or a file in it is a link.
    """
    problem = _not_private(os.path.dirname(path))
    try:
        if problem:
            raise OSError(problem)
        lock = _open_private(path + ".lock", os.O_RDWR | os.O_CREAT)  # held while we serve
    except OSError as err:
        _log(f"not serving on {path}: {err.strerror or err}")
        return 4
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    listener = _bind(path)  # clients may connect (and wait) while we import
    _log(f"server for Snakemake pid {owner} on {path}")
    failed = False
    try:
        try:
            ready = _preload(owner)
        except BaseException as err:
            failed = True
            _mark_failed(path, err)
            _log(f"preload failed, jobs run without warm start: {err!r}")
            return 3
        if ready:
            _loop(listener, owner)
        else:
            _log(f"Snakemake pid {owner} has gone while preloading (nothing to run): exiting")
    finally:
        # The log stays when it explains a failure; so does the folder then.
        for leftover in (path, path + ".lock", *(() if failed else (path + ".log",))):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(path))
    return 0


def _bind(path: str) -> socket.socket:
    """The listening socket, mode 0600 whatever the umask (a group-shared umask 002 would
    let the group connect, were the folder ever reachable)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    umask = os.umask(0o077)
    try:
        listener.bind(path)
    finally:
        os.umask(umask)
    listener.listen(128)
    return listener


def _mark_failed(path: str, err: BaseException) -> None:
    try:
        fd = _open_private(path + ".failed", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except OSError:
        return  # there already (or a link): clients see it exists and run without us
    with os.fdopen(fd, "w") as out:
        out.write(f"{err!r}\n")


def _preload(owner: int) -> bool:
    """Import what jobs need; False: Snakemake exited meanwhile (a run with nothing to do
    ends before the preload, and its server should not go on using a core)."""
    import importlib
    import threading

    started = time.perf_counter()
    extra = [m for m in os.environ.get(PRELOAD_ENV, "").split(",") if m.strip()]
    for name in (*PRELOAD, *extra):
        if not _alive(owner):
            return False
        importlib.import_module(name.strip())
    import numba

    numba.njit(lambda x: x + 1)(1)  # sets up numba's compiler: 0.8 s of every job's start
    if threading.active_count() != 1:
        # fork() copies only the calling thread: a lock held elsewhere would deadlock a child.
        raise RuntimeError(f"preloading started threads: {threading.enumerate()}")
    _log(f"preloaded {len(PRELOAD) + len(extra)} modules in {time.perf_counter() - started:.1f} s")
    return True


def _loop(listener: socket.socket, owner: int) -> None:
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    # A child's exit wakes the loop at once (SIGCHLD through a wake-up socket), so that
    # its client, and Snakemake's next job, do not wait for the select timeout.
    wakeup, wakeup_signal = socket.socketpair()
    for end in (wakeup, wakeup_signal):
        end.setblocking(False)
    signal.set_wakeup_fd(wakeup_signal.fileno())
    signal.signal(signal.SIGCHLD, lambda *_: None)
    selector.register(wakeup, selectors.EVENT_READ)
    children: dict[int, socket.socket] = {}  # child pid -> its client's connection
    while True:
        for key, _ in selector.select(timeout=1.0):
            if key.fileobj is wakeup:
                with contextlib.suppress(BlockingIOError):
                    wakeup.recv(4096)
            elif key.fileobj is listener:
                conn, _ = listener.accept()
                if not _from_us(conn):
                    conn.close()
                    continue
                inherited = [listener, wakeup, wakeup_signal, *children.values()]
                pid = _fork_job(conn, inherited)
                if pid is None:
                    conn.close()
                else:
                    children[pid] = conn
                    selector.register(conn, selectors.EVENT_READ, pid)
            else:
                # A client only ever closes its end: Snakemake cancelled the job.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(key.data, signal.SIGTERM)
                selector.unregister(key.fileobj)
        _reap(children, selector)
        if not children and not _alive(owner):
            _log(f"Snakemake pid {owner} has gone: exiting")
            return


def _from_us(conn: socket.socket) -> bool:
    """Only this user's processes may have jobs run (as this user, with their streams)."""
    uid, pid = _peer_uid(conn)
    if uid == os.geteuid():
        return True
    _log(f"refused a connection from uid {uid} (pid {pid}): this server serves uid {os.geteuid()}")
    return False


def _fork_job(conn: socket.socket, inherited: list[socket.socket]) -> int | None:
    conn.settimeout(10)
    try:
        msg, fds, _, _ = socket.recv_fds(conn, HEADER.size, 3)
        if len(msg) != HEADER.size or len(fds) != 3:
            raise ValueError("malformed request")
        request = json.loads(_recv_exact(conn, HEADER.unpack(msg)[0]))
    except (OSError, ValueError) as err:
        _log(f"bad request: {err!r}")
        return None
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for sock in inherited:
            sock.close()
        _run_child(request, fds, conn)
    for fd in fds:
        os.close(fd)
    conn.settimeout(None)
    try:
        conn.sendall(RUNNING)
    except OSError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    _log(f"job pid {pid}: swift-rules {' '.join(request['argv'])}")
    return pid


def _run_child(request: dict, fds: list[int], conn: socket.socket) -> None:
    """In the forked child: become the job, run it, exit with its status."""
    code = 1
    try:
        conn.close()
        os.setpgid(0, 0)  # the client's cancellation kills us and what we start
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.path[:] = request["path"]
        sys.argv = ["swift-rules", *request["argv"]]
        _fresh_process_state()
        from swift_rules import cli

        code = cli.run(request["argv"])
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code if isinstance(code, int) else 1)


def _fresh_process_state() -> None:
    """What a new process would have read from its environment or drawn at random."""
    import random

    random.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    if "dask" in sys.modules:
        sys.modules["dask"].config.refresh()


def _reap(children: dict[int, socket.socket], selector) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code  # killed by a signal: the shell's 128+N
        _log(f"job pid {pid}: exit status {code}")
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(conn)
        with contextlib.suppress(OSError):
            conn.sendall(STATUS.pack(code))
        conn.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _log(message: str) -> None:
    now = time.time()
    stamp = f"{time.strftime('%H:%M:%S', time.localtime(now))}.{int(now % 1 * 1000):03d}"
    print(f"[swift-rules warm-start {stamp}] {message}", flush=True)


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1], int(sys.argv[2])))
