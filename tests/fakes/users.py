"""Throwaway local users, for the tests that play the other users of a shared machine
(a login node with one /tmp, a shared group folder): real uids, real processes.

They need root (useradd, runuser). Each user is removed afterwards, with its group;
processes it still runs are ended one by one, by pid (only the test started them: the
user did not exist before). The user's Python is this interpreter where the user may
run it, else the system's interpreter of the same version with this environment's
packages on PYTHONPATH (a virtual environment under /root is not reachable by others).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import REPO


def need_root() -> None:
    missing = [tool for tool in ("useradd", "userdel", "runuser") if shutil.which(tool) is None]
    if os.geteuid() != 0 or missing:
        pytest.skip(f"playing another local user needs root and {missing or 'useradd'}: not root")


@dataclass
class User:
    name: str
    uid: int
    gid: int
    python: list[str] = field(default_factory=list)
    pythonpath: str = ""

    def env(self, **more: str) -> dict[str, str]:
        """A clean environment for this user's commands (no root's variables)."""
        bin_ = [str(Path(self.python[0]).parent)] if self.python else []
        env = {
            "PATH": ":".join([*bin_, "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": "/nonexistent",
            "LANG": "C.UTF-8",
            "PYTHONPATH": self.pythonpath,
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        return {**env, **more}

    def command(self, *cmd: str, env: dict | None = None, umask: int | None = None) -> list[str]:
        prefix = ["runuser", "-u", self.name, "--", "env", "-i", *_pairs(env or self.env())]
        if umask is not None:  # a shell sets it, then becomes the command
            return [*prefix, "sh", "-c", f'umask {umask:03o}; exec "$@"', "sh", *cmd]
        return [*prefix, *cmd]

    def run(self, *cmd: str, env=None, umask=None, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 300)
        return subprocess.run(self.command(*cmd, env=env, umask=umask), **kw)

    def popen(self, *cmd: str, env=None, umask=None, **kw) -> subprocess.Popen:
        return subprocess.Popen(self.command(*cmd, env=env, umask=umask), **kw)

    def py(self, code: str, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run(*self.python, "-c", code, *args, **kw)


def _pairs(env: dict) -> list[str]:
    return [f"{k}={v}" for k, v in env.items()]


def _python_for(user: User) -> None:
    """The interpreter this user can run, with this environment's packages and the repo."""
    paths = [str(REPO), str(REPO / "tests")]
    if (
        subprocess.run(user.command(sys.executable, "-c", "pass"), capture_output=True).returncode
        == 0
    ):
        user.python, user.pythonpath = [sys.executable], os.pathsep.join(paths)
        return
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(version, path="/usr/local/bin:/usr/bin:/bin")
    if system is None:
        pytest.skip(
            f"user {user.name} cannot run {sys.executable}, and there is no system {version}"
        )
    user.python = [system]
    user.pythonpath = os.pathsep.join([*paths, sysconfig.get_paths()["purelib"]])
    probe = user.py("import distributed, swift_rules")
    if probe.returncode != 0:
        pytest.skip(f"{system} cannot import this environment's packages: {probe.stderr[-300:]}")


def make_user(role: str) -> User:
    need_root()
    name = f"sw{role[:6]}{secrets.token_hex(3)}"
    subprocess.run(
        ["useradd", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", name],
        check=True, capture_output=True,
    )  # fmt: skip
    entry = pwd.getpwnam(name)
    user = User(name, entry.pw_uid, entry.pw_gid)
    try:
        _python_for(user)
    except BaseException:
        remove_user(user)
        raise
    return user


def _pids_of(uid: int) -> list[int]:
    """The live processes of ``uid`` (zombies wait for init to reap them: gone enough)."""
    pids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
            if int(fields["Uid"].split()[1]) == uid and not fields["State"].strip().startswith("Z"):
                pids.append(int(status.parent.name))
    return pids


def remove_user(user: User, grace_s: float = 15.0) -> None:
    """Wait for the user's processes to end (servers exit after their owner); end any
    left by pid; then remove the user and its group."""
    deadline = time.monotonic() + grace_s
    while _pids_of(user.uid) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in _pids_of(user.uid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    # --force: a zombie of the user's may still wait for init to reap it.
    removed = subprocess.run(["userdel", "--force", user.name], capture_output=True, text=True)
    if removed.returncode not in (0, 6):  # 6: no such user
        raise AssertionError(f"cannot remove the test user {user.name}: {removed.stderr}")


@contextlib.contextmanager
def users(*roles: str):
    made: list[User] = []
    try:
        for role in roles:
            made.append(make_user(role))
        yield made
    finally:
        for user in made:
            remove_user(user)


@pytest.fixture
def victim_and_attacker():
    """Two users of one machine: (victim, attacker)."""
    with users("victim", "attack") as pair:
        yield tuple(pair)


@pytest.fixture
def attacker():
    with users("attack") as (user,):
        yield user


@pytest.fixture
def shared_tmp():
    """A folder like /tmp (sticky, everyone may write), private to this test."""
    path = Path(tempfile.mkdtemp(prefix="swift-rules-shared-tmp-", dir="/tmp"))
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)
