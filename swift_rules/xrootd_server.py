"""A local XRootD data server or XCache caching proxy (Debian's xrootd-server package).

Used by the tests and the remote-read benchmark to serve files over ``root://`` on
loopback, and usable as a quick local mirror. The server's own trace log (opens and
reads) is kept, so a caller can tell which requests reached it.

XRootD has no authentication here, and listens on every interface: so by default the
export is read-only and only this machine (``localhost``) may connect; an XCache may
contact only the origins it is given (docs/security.md).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from swift_rules.errors import SwiftError

# xrootd refuses to run as root; it drops to this user when started as root.
UNPRIVILEGED_USER = "nobody"


class XRootDError(SwiftError):
    """The xrootd program is missing, or a server did not start."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class XRootDServer:
    """``xrootd`` serving ``root`` (a data server), or caching ``origin`` (an XCache).

    ``origin`` is ``host:port`` of the server to proxy, or ``=`` (forwarding mode: the
    URL names the origin, ``root://cache//root://origin//path``); the cache's files and
    ``.cinfo`` records go to ``root`` then. ``http`` adds XRootD's HTTP protocol on a
    second port. Ports are kept across stop/start, so URLs stay valid when a stopped
    server is started again.

    Who may do what: ``allow``, the client hosts that may connect (XRootD host names,
    ``*`` once in a name; default this machine only); ``writable``, whether they may
    write and delete (default not); ``origins``, the hosts a forwarding cache may fetch
    from (default ``localhost``; a fixed ``origin``: its host).
    """

    def __init__(
        self,
        root,
        workdir,
        *,
        origin: str | None = None,
        http: bool = False,
        allow: Sequence[str] = ("localhost",),
        writable: bool = False,
        origins: Sequence[str] | None = None,
    ):
        self.root, self.workdir = Path(root).resolve(), Path(workdir).resolve()
        self.origin, self.port = origin, free_port()
        self.http_port = free_port() if http else None
        self.name = "cache" if origin else "origin"
        self.allow, self.writable = tuple(allow), writable
        if origins is None:
            origins = ("localhost",) if origin in (None, "=") else (origin.rsplit(":", 1)[0],)
        self.origins = tuple(origins)
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str | Path) -> str:
        """``root://`` URL of a file under the served root (or of the origin's, for a cache)."""
        rel = Path(path).resolve().relative_to(self.root) if Path(path).is_absolute() else path
        return f"root://{self.address}//{rel}"

    def http_url(self, path: str | Path) -> str:
        return self.url(path).replace(f"root://{self.address}", f"http://{self.http_address}")

    @property
    def http_address(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "xrootd.log"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _config(self) -> str:
        lines = [
            "all.export /" + ("" if self.writable else " r/o"),
            *(f"xrd.allow host {host}" for host in self.allow),
            f"all.adminpath {self.workdir / 'admin'}",
            f"all.pidpath {self.workdir / 'admin'}",
            f"oss.localroot {self.root}",
            # Opens (fs) and reads (fsio) in the log: which requests reached this server.
            "xrootd.trace fs fsio",
        ]
        if self.origin:
            lines += [
                "ofs.osslib libXrdPss.so",
                f"pss.origin {self.origin}",
                *(f"pss.permit {host}" for host in self.origins),
                "pss.cachelib libXrdPfc.so",
                "pfc.ram 1g",  # a ceiling (xrootd's minimum), not an allocation
                "pfc.diskusage 0.98 0.99",  # cache on a shared disk: purge only when nearly full
                "pfc.trace info",
            ]
        if self.http_port:
            lines.append(f"xrd.protocol http:{self.http_port} libXrdHttp.so")
        return "\n".join(lines) + "\n"

    def start(self, wait_s: float = 30.0) -> XRootDServer:
        exe = shutil.which("xrootd")
        if exe is None:
            raise XRootDError("no xrootd program on PATH: install Debian's xrootd-server package")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "xrootd.cfg"
        cfg.write_text(self._config())
        cmd = [exe, "-p", str(self.port), "-c", str(cfg), "-l", str(self.log_path)]
        if os.geteuid() == 0:
            self._give_to(UNPRIVILEGED_USER)
            cmd += ["-R", UNPRIVILEGED_USER]
        out = (self.workdir / "stdout.log").open("ab")
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + wait_s
        while not all(_listening(p) for p in (self.port, self.http_port) if p):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise XRootDError(
                    f"xrootd ({self.name}) did not start on port {self.port} within {wait_s} s; "
                    f"its log {self.log_path} ends:\n{self.log_text()[-2000:]}"
                )
            time.sleep(0.1)
        return self

    def _give_to(self, user: str) -> None:
        """The unprivileged server must write its folders and read the served files."""
        entry = pwd.getpwnam(user)
        for top in (self.workdir, self.root):
            for dirpath, _dirs, files in os.walk(top):
                os.chown(dirpath, entry.pw_uid, entry.pw_gid)
                for name in files:
                    path = os.path.join(dirpath, name)
                    os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
        # Its parent folders must be traversable by others (pytest's tmp_path is not).
        for parent in sorted({*self.workdir.parents, *self.root.parents}):
            if parent.stat().st_mode & 0o001 == 0:
                raise XRootDError(
                    f"{parent} is not traversable by {user!r}, whom xrootd runs as: "
                    "serve files from a folder others can reach"
                )

    def stop(self, wait_s: float = 10.0) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __enter__(self) -> XRootDServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
