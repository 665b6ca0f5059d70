"""The server half of warm start: it imports the heavy libraries once, then forks a child
per job that runs the job's command line with the job's working directory, environment
and standard streams (``swift_rules.cli.run``), and hands back its exit status. Started
by the client half as ``python -m swift_rules.warmstart.server PATH OWNER_PID``."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import selectors
import signal
import socket
import sys
import time
from functools import partial

from swift_rules.gcfreeze import frozen_imports
from swift_rules.warmstart.channel import (
    HEADER,
    PRELOAD,
    PRELOAD_ENV,
    RUNNING,
    STATUS,
    WITHDRAWN,
    not_private,
    open_private,
    peer_uid,
    recv_exact,
)  # fmt: skip


def serve(path: str, owner: int) -> int:
    """Serve jobs on ``path`` until process ``owner`` (Snakemake) has gone or withdrawn.

    Exit status 0: served, or another server holds the lock; 3: preload failed; 4: the
    folder is not private, or a file in it is a link.
    """
    problem = not_private(os.path.dirname(path))
    try:
        if problem:
            raise OSError(problem)
        lock = open_private(path + ".lock", os.O_RDWR | os.O_CREAT)  # held while we serve
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
    wanted = partial(_wanted, owner, path)
    try:
        try:
            ready = _preload(wanted)
        except BaseException as err:
            failed = True
            _mark_failed(path, err)
            _log(f"preload failed, jobs run without warm start: {err!r}")
            return 3
        if ready:
            _loop(listener, wanted)
        else:
            _log(f"Snakemake pid {owner} has gone or withdrawn while preloading: exiting")
    finally:
        # The log stays when it explains a failure; so does the folder then.
        mine = (path, path + ".lock", path + WITHDRAWN)
        for leftover in (*mine, *(() if failed else (path + ".log",))):
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
        fd = open_private(path + ".failed", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except OSError:
        return  # there already (or a link): clients see it exists and run without us
    with os.fdopen(fd, "w") as out:
        out.write(f"{err!r}\n")


def _wanted(owner: int, path: str) -> bool:
    """Whether Snakemake pid ``owner`` still runs and has not withdrawn its offer."""
    return _alive(owner) and not os.path.lexists(path + WITHDRAWN)


def _preload(wanted) -> bool:
    """Import what jobs need; False: Snakemake exited or withdrew meanwhile (a run with
    nothing to do ends before the preload, and its server should not go on using a core)."""
    import importlib
    import threading

    started = time.perf_counter()
    extra = [m for m in os.environ.get(PRELOAD_ENV, "").split(",") if m.strip()]
    # Frozen before the children are forked, as Python's gc docs advise for a pre-fork server.
    with frozen_imports():
        for name in (*PRELOAD, *extra):
            if not wanted():
                return False
            importlib.import_module(name.strip())
        import numba

        numba.njit(lambda x: x + 1)(1)  # sets up numba's compiler: 0.8 s of every job's start
        _look_up_once()
    if threading.active_count() != 1:
        # fork() copies only the calling thread: a lock held elsewhere would deadlock a child.
        raise RuntimeError(f"preloading started threads: {threading.enumerate()}")
    _log(f"preloaded {len(PRELOAD) + len(extra)} modules in {time.perf_counter() - started:.1f} s")
    return True


def _look_up_once() -> None:
    """What every job would look up the same way (~50 ms each): the installed packages'
    versions and entry points, the first command-line parser, and the imports of
    swift_rules' own modules (for the code fingerprint; a file edited since is parsed
    again, by its time and size)."""
    from swift_rules import cli, fingerprint, registry, runner

    runner.software_versions()
    cli.build_parser("run")  # argparse's first parser compiles its patterns: ~15 ms
    for group in (registry.ENTRY_POINT_GROUP, cli.COMMAND_GROUP):
        registry.installed_entry_points(group)
    fingerprint.remember_imports("swift_rules")


def _loop(listener: socket.socket, wanted) -> None:
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
        if not children and not wanted():
            _log("Snakemake has gone or withdrawn its offer: exiting")
            return


def _from_us(conn: socket.socket) -> bool:
    """Only this user's processes may have jobs run (as this user, with their streams)."""
    uid, pid = peer_uid(conn)
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
        request = json.loads(recv_exact(conn, HEADER.unpack(msg)[0]))
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
        from swift_rules import cli, runner

        runner.warm_started = True  # (the run record says so)

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
