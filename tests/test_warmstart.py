"""Warm start: swift-rules commands forked from a server with the libraries imported."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import uproot

from swift_rules import warmstart
from swift_rules.warmstart import channel as warm_channel
from swift_rules.warmstart import client as warm_client
from swift_rules.warmstart import server as warm_server

SLOW_STAGE = """
import os, time
from pathlib import Path
from coffea import processor


class SlowProcessor(processor.ProcessorABC):
    def process(self, events):
        Path(os.environ["SLOW_PID_FILE"]).write_text(str(os.getpid()))
        time.sleep(120)
        return {}

    def postprocess(self, accumulator):
        return accumulator
"""


@pytest.fixture
def owner():
    """A stand-in for the Snakemake process that a warm server serves."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def warm_env(owner, tmp_path):
    value = warmstart.address(owner.pid)
    yield {**os.environ, warmstart.ENV: value}
    owner.kill()
    owner.wait()
    socket_path = Path(value.split(":", 2)[2])
    wait_for(lambda: not socket_path.exists(), "the server to exit after its owner")


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def socket_of(env) -> Path:
    return Path(env[warmstart.ENV].split(":", 2)[2])


def swift(*args: str, env, cwd, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "swift_rules", *args],
        env=env, cwd=cwd, capture_output=True, text=True, **kwargs,
    )  # fmt: skip


def served_jobs(env) -> list[str]:
    log = Path(f"{socket_of(env)}.log")
    return [line for line in log.read_text().splitlines() if ": swift-rules " in line]


def test_commands_run_in_warm_children_with_cwd_env_streams_and_status(warm_env, tmp_path):
    (tmp_path / "config.yaml").write_text("stages: {agc::ttbar: {}}\n")
    ok = swift("validate", "config.yaml", env=warm_env, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "config.yaml" in ok.stdout + ok.stderr
    # The job's environment reaches the child: the device override is read from it.
    forced = swift(
        "stages", env={**warm_env, "SWIFT_RULES_DEVICE": "gpu"}, cwd=tmp_path, timeout=120
    )
    assert "agc::ttbar" in forced.stdout
    assert "would run: nothing" in forced.stdout  # no GPU variant of it is usable here
    bad = swift("validate", "missing.yaml", env=warm_env, cwd=tmp_path)
    assert bad.returncode != 0
    assert "missing.yaml" in bad.stderr
    assert len(served_jobs(warm_env)) == 3


def test_results_equal_a_cold_run(warm_env, tiny_dataset, tmp_path):
    files = tiny_dataset["ttbar__nominal"][:1]
    args = ["run", "agc::ttbar", "--sample", "ttbar__nominal", "--files", *files, "--workers", "1"]
    cold_env = {k: v for k, v in warm_env.items() if k != warmstart.ENV}
    for name, env in (("cold", cold_env), ("warm", warm_env)):
        out = [
            "--out",
            str(tmp_path / f"{name}.pkl"),
            "--run-record",
            str(tmp_path / f"{name}.json"),
        ]
        proc = swift(*args, *out, env=env, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    assert any("agc::ttbar" in line for line in served_jobs(warm_env))
    started = {
        n: json.loads((tmp_path / f"{n}.json").read_text())["warm_started"]
        for n in ("cold", "warm")
    }
    assert started == {"cold": False, "warm": True}
    from swift_rules.results import load_result

    cold, cold_meta = load_result(tmp_path / "cold.pkl")
    warm, warm_meta = load_result(tmp_path / "warm.pkl")
    assert cold_meta["events"] == warm_meta["events"] == cold["nevts"] == warm["nevts"]
    for key, histogram in cold["hists"].items():
        assert np.array_equal(histogram.view(flow=True), warm["hists"][key].view(flow=True))


def test_cancelling_a_job_kills_its_child(warm_env, tmp_path):
    (tmp_path / "slow_stage.py").write_text(SLOW_STAGE)
    data = tmp_path / "one.root"
    with uproot.recreate(data) as f:
        ids = {"run": np.uint32, "luminosityBlock": np.uint32, "event": np.uint64}
        f.mktree("Events", ids)
        f["Events"].extend({name: np.arange(5, dtype=t) for name, t in ids.items()})
    pid_file = tmp_path / "child.pid"
    register = json.dumps({"slow::stage": {"cpu": "slow_stage:SlowProcessor"}})
    client = subprocess.Popen(
        [sys.executable, "-m", "swift_rules", "run", "slow::stage", "--sample", "s__n",
         "--files", str(data), "--out", str(tmp_path / "out.pkl"), "--register", register],
        env={**warm_env, "SLOW_PID_FILE": str(pid_file)}, cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: pid_file.exists() or client.poll() is not None, "the stage to start")
        assert client.poll() is None, f"the job ended early ({client.returncode})"
        child = int(pid_file.read_text())
        assert child != client.pid  # it runs in the server's child, not in the client
        client.send_signal(signal.SIGTERM)  # what Snakemake does to a cancelled job
        client.wait(timeout=30)
        wait_for(lambda: not _alive(child), "the child to be killed", timeout=30)
    finally:
        client.kill()
    assert not (tmp_path / "out.pkl").exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie waiting for the server to reap it is as good as gone.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ", 1)[1][0] != "Z"


def test_no_warm_start_on_another_host_or_when_preload_fails(owner, tmp_path):
    (tmp_path / "config.yaml").write_text("stages: {}\n")
    elsewhere = {**os.environ, warmstart.ENV: f"not-{os.uname().nodename}:{owner.pid}:/nowhere"}
    proc = swift("validate", "config.yaml", env=elsewhere, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not Path("/nowhere").exists()

    env = {**os.environ, warmstart.ENV: warmstart.address(owner.pid),
           warmstart.PRELOAD_ENV: "no_such_module_here"}  # fmt: skip
    proc = swift("validate", "config.yaml", env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr  # ran in the client instead
    failed = Path(f"{socket_of(env)}.failed")
    assert "no_such_module_here" in failed.read_text()
    assert "no_such_module_here" in Path(f"{socket_of(env)}.log").read_text()
    for leftover in (failed, Path(f"{socket_of(env)}.log")):
        leftover.unlink()
    socket_of(env).parent.rmdir()  # (the server leaves its folder when its log explains)


def test_offered_only_to_local_jobs_of_the_main_snakemake_process(monkeypatch):
    class Workflow:
        is_main_process = True
        local_exec = True
        dryrun = False

    started = []  # (a server for this pytest process would live as long as it)
    monkeypatch.setattr(warm_client, "_start_server", lambda *args: started.append(args))
    monkeypatch.delenv(warmstart.ENV, raising=False)
    warmstart.offer(Workflow, enabled=True)
    host, pid, path = os.environ[warmstart.ENV].split(":", 2)
    assert (host, int(pid)) == (os.uname().nodename, os.getpid())
    assert started == [(path, os.getpid())]
    os.rmdir(os.path.dirname(path))  # the fresh private folder
    Workflow.dryrun = True  # a dry run runs no job
    warmstart.offer(Workflow, enabled=True)
    assert warmstart.ENV not in os.environ and len(started) == 1
    Workflow.dryrun = False
    Workflow.local_exec = False  # a cluster executor: jobs run elsewhere
    warmstart.offer(Workflow, enabled=True)
    assert warmstart.ENV not in os.environ
    monkeypatch.setenv(warmstart.ENV, "inherited")
    warmstart.offer(object(), enabled=True)  # Snakemake 7, or a job's own Snakemake
    assert warmstart.ENV not in os.environ
    Workflow.local_exec = True
    warmstart.offer(Workflow, enabled=False)
    assert warmstart.ENV not in os.environ


def test_offered_by_a_batch_jobs_snakemake_only_when_it_runs_several_jobs(monkeypatch):
    """A group job's Snakemake (``--mode remote``, several ``--target-jobs``) runs its
    jobs warm; one that runs a single job does not start a server for it."""

    class Workflow:
        is_main_process = False
        remote_exec = True
        local_exec = True
        dryrun = False

    started = []
    monkeypatch.setattr(warm_client, "_start_server", lambda *args: started.append(args))
    monkeypatch.delenv(warmstart.ENV, raising=False)
    one = ["snakemake", "--target-jobs", "swift_process:dataset=a,group=0000", "--cores", "1"]
    group = [
        "snakemake",
        "--target-jobs",
        "swift_process:dataset=a,group=0000",
        "swift_process:dataset=b,group=0000",
        "--local-groupid",
        "7",
        "--mode",
        "remote",
    ]
    assert [warm_client.target_jobs(argv) for argv in (one, group, ["snakemake"])] == [1, 2, 0]
    assert warm_client.target_jobs(group[:4]) == 2  # the last option
    monkeypatch.setattr(sys, "argv", one)
    warmstart.offer(Workflow, enabled=True)
    assert warmstart.ENV not in os.environ and not started
    monkeypatch.setattr(sys, "argv", group)
    warmstart.offer(Workflow, enabled=True)
    assert len(started) == 1
    offered = os.environ[warmstart.ENV]
    os.rmdir(os.path.dirname(offered.split(":", 2)[2]))
    # A job step of the group (Slurm: a Snakemake per job, started with srun) keeps it...
    monkeypatch.setattr(sys, "argv", one)
    warmstart.offer(Workflow, enabled=True)
    assert os.environ[warmstart.ENV] == offered and len(started) == 1
    # ...but not an offer of the main process (a server outside the batch job).
    monkeypatch.delenv(warm_channel.GROUP_ENV)
    warmstart.offer(Workflow, enabled=True)
    assert warmstart.ENV not in os.environ and len(started) == 1


def test_no_server_from_a_python_without_the_libraries(monkeypatch, capsys):
    """A Snakemake whose own Python lacks what the server preloads (an engine's
    environment with Snakemake only) starts none: no failed server, no folder left."""

    class Workflow:
        is_main_process = True
        local_exec = True
        dryrun = False

    started = []
    monkeypatch.setattr(warm_client, "_start_server", lambda *args: started.append(args))
    monkeypatch.setattr(warm_client, "PRELOAD", ("numpy", "no_such_package_here.sub"))
    monkeypatch.delenv(warmstart.ENV, raising=False)
    warmstart.offer(Workflow, enabled=True)
    assert not started and warmstart.ENV not in os.environ
    err = capsys.readouterr().err
    assert f"warm start off: {sys.executable} cannot import no_such_package_here:" in err


def test_a_run_whose_jobs_run_elsewhere_stops_its_server(monkeypatch):
    """Snakemake 9 picks its executor after it has read the workflow: the main process
    offers warm start, then withdraws it once a cluster executor turns out to run the
    jobs, and the server it started stops and leaves nothing behind. A local executor
    keeps it."""

    class Workflow:
        is_main_process = True
        local_exec = True
        dryrun = False
        executor_plugin = None

    def offered():
        warmstart.offer(Workflow, enabled=True)
        return warm_client._SERVERS[-1], warm_channel.parse(os.environ[warmstart.ENV])[2]

    monkeypatch.delenv(warmstart.ENV, raising=False)
    # A local executor: the server stays, preloads and serves.
    server, path = offered()
    Workflow.executor_plugin = object()
    wait_for(lambda: "preloaded" in Path(path + ".log").read_text(), "the preload")
    assert server.poll() is None and warmstart.ENV in os.environ
    warm_client.withdraw()  # (what a cluster run does; here, to stop it)
    assert server.wait(60) == 0 and not os.path.exists(os.path.dirname(path))
    assert warmstart.ENV not in os.environ
    # A cluster executor (Slurm, HTCondor...): withdrawn while the server still preloads.
    Workflow.executor_plugin = None
    server, path = offered()
    Workflow.local_exec, Workflow.executor_plugin = False, object()
    assert server.wait(60) == 0
    assert warmstart.ENV not in os.environ and not os.path.exists(os.path.dirname(path))


# -- another user of the machine ---------------------------------------------------------
# The victim and the attacker are real throwaway users (tests/users.py); the victim's
# TMPDIR is a shared sticky folder, like the one /tmp of a login node.

# The attacker's fake warm-start server: it takes the lock, so that the victim's own
# server exits believing one runs, and records what a victim's job hands it.
FAKE_SERVER = r"""
import fcntl, json, os, socket, struct, sys
path, record = sys.argv[1], sys.argv[2]
lock = open(path + ".lock", "w")
os.chmod(path + ".lock", 0o666)
fcntl.flock(lock, fcntl.LOCK_EX)
server = socket.socket(socket.AF_UNIX)
server.bind(path)
os.chmod(path, 0o777)
server.listen()
print("ready", flush=True)
while True:
    conn, _ = server.accept()
    msg, fds, _, _ = socket.recv_fds(conn, 8, 3)
    if len(msg) != 8:  # a job that hung up on us
        conn.close()
        continue
    size, data = struct.unpack("!Q", msg)[0], b""
    while len(data) < size:
        data += conn.recv(size - len(data))
    request = json.loads(data)
    with open(record, "a") as out:
        out.write(json.dumps({**request, "fds": len(fds)}) + "\n")
    os.write(fds[1], b"all good\n")
    for fd in fds:
        os.close(fd)
    conn.sendall(b"R" + struct.pack("!i", 0))
    conn.close()
"""

# The victim's Snakemake at parse time: its pid first (what an attacker sees in `ps`),
# then, once told to go on, the SWIFT_RULES_WARM value that it offers its jobs.
SNAKEMAKE = r"""
import os, sys
from swift_rules import warmstart
class Workflow:
    is_main_process, local_exec, dryrun = True, True, False
print(os.getpid(), flush=True)
sys.stdin.readline()
warmstart.offer(Workflow, True)
print(os.environ.get(warmstart.ENV, "none"), flush=True)
sys.stdin.readline()
"""

# A job request of the attacker's own, sent to ARGV[1]: a stage whose module is theirs.
INTRUDER = r"""
import json, os, socket, struct, sys
path, folder = sys.argv[1], sys.argv[2]
register = json.dumps({"evil::stage": {"cpu": "evilmod:Evil"}})
argv = ["run", "evil::stage", "--sample", "s__n", "--files", "/nonexistent.root",
        "--out", os.path.join(folder, "out.pkl"), "--register", register]
request = json.dumps({"argv": argv, "cwd": folder, "env": {"PATH": "/usr/bin"},
                      "path": sys.path}).encode()
sock = socket.socket(socket.AF_UNIX)
sock.settimeout(120)
sock.connect(path)
try:
    socket.send_fds(sock, [struct.pack("!Q", len(request))], [0, 1, 2])
    sock.sendall(request)
    print("answer:", sock.recv(1), flush=True)
except (BrokenPipeError, ConnectionResetError) as err:
    print("answer: closed,", err, flush=True)
"""


def _as(user, folder: Path, mode: int = 0o700) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    os.chown(folder, user.uid, user.gid)
    folder.chmod(mode)
    return folder


def _victim_job(victim, shared_tmp, value, work):
    """`swift-rules validate` as the victim's Snakemake job, with a secret in its env."""
    env = victim.env(TMPDIR=str(shared_tmp), SECRET_TOKEN="victims-secret-0123456789")
    if value is not None:
        env[warmstart.ENV] = value
    return victim.run(*victim.python, "-m", "swift_rules", "validate", "config.yaml",
                      env=env, cwd=work, timeout=180)  # fmt: skip


def _victim_work(victim, shared_tmp) -> Path:
    work = _as(victim, shared_tmp / "victim-work")
    for name, text in (("config.yaml", "stages: {}\n"), ("notes.txt", "precious\n")):
        (work / name).write_text(text)
        os.chown(work / name, victim.uid, victim.gid)
    return work


def _fake_server(attacker, path: Path, record: Path, procs: list):
    proc = attacker.popen(*attacker.python, "-c", FAKE_SERVER, str(path), str(record),
                          stdout=subprocess.PIPE, text=True)  # fmt: skip
    procs.append(proc)
    assert proc.stdout.readline().strip() == "ready"
    return proc


@pytest.fixture
def procs():
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.stdin:
            proc.stdin.close()  # a Snakemake stand-in exits; its server follows
        proc.terminate()  # runuser passes it on to the command (a kill would orphan it)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _snakemake(victim, shared_tmp, procs, umask=0o022):
    env = victim.env(TMPDIR=str(shared_tmp))
    proc = victim.popen(*victim.python, "-c", SNAKEMAKE, env=env, umask=umask,
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    procs.append(proc)
    return proc, int(proc.stdout.readline())


def _go(proc) -> str:
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return proc.stdout.readline().strip()


def test_a_planted_warm_folder_lock_socket_and_links_are_not_used(
    victim_and_attacker, shared_tmp, procs
):
    """The attack on the old predictable folder <tmp>/swift-rules-warm-<uid>: the attacker
    makes it first, takes the lock, listens on the socket of the victim's Snakemake pid
    and plants links to the victim's files. The victim's job must still run in the
    victim's own server (a group-shared umask 002 too), handing the attacker nothing."""
    victim, attacker = victim_and_attacker
    work = _victim_work(victim, shared_tmp)
    snakemake, pid = _snakemake(victim, shared_tmp, procs, umask=0o002)
    planted = _as(attacker, shared_tmp / f"swift-rules-warm-{victim.uid}", 0o755)
    record = _as(attacker, shared_tmp / "attacker") / "record.jsonl"
    sock = planted / f"{pid}.sock"
    os.symlink(work / "notes.txt", f"{sock}.log")  # the server would append its log there
    os.lchown(f"{sock}.log", attacker.uid, attacker.gid)
    _fake_server(attacker, sock, record, procs)

    value = _go(snakemake)
    assert value != "none", "warm start was not offered"
    job = _victim_job(victim, shared_tmp, value, work)
    assert job.returncode == 0, job.stderr
    assert "all good" not in job.stdout and "config.yaml" in job.stdout + job.stderr
    assert not record.exists(), f"the attacker's server got the job: {record.read_text()}"
    assert (work / "notes.txt").read_text() == "precious\n"
    path = Path(value.split(":", 2)[2])
    assert path.parent != planted
    folder = os.lstat(path.parent)
    assert (folder.st_uid, stat.S_IMODE(folder.st_mode)) == (victim.uid, 0o700)
    assert os.stat(path).st_mode & 0o077 == 0  # whatever the umask
    assert any("swift-rules validate" in line for line in served_jobs({warmstart.ENV: value}))


def test_a_warm_folder_of_another_user_is_refused(victim_and_attacker, shared_tmp, procs):
    """SWIFT_RULES_WARM naming a folder that is not the victim's (a stale value whose
    folder the attacker made again): the job runs without warm start, saying why."""
    victim, attacker = victim_and_attacker
    work = _victim_work(victim, shared_tmp)
    folder = _as(attacker, shared_tmp / "swift-rules-warm-stale", 0o755)
    record = _as(attacker, shared_tmp / "attacker") / "record.jsonl"
    _fake_server(attacker, folder / "4242.sock", record, procs)
    value = f"{os.uname().nodename}:4242:{folder / '4242.sock'}"
    job = _victim_job(victim, shared_tmp, value, work)
    assert job.returncode == 0, job.stderr
    assert not record.exists(), f"the attacker's server got the job: {record.read_text()}"
    why = f"warm start off: {folder} belongs to uid {attacker.uid}, not to you (uid {victim.uid})"
    assert why in job.stderr


def test_both_ends_check_the_other_ends_uid(victim_and_attacker, shared_tmp, procs):
    """SO_PEERCRED, in case a socket of one user is ever reachable by the other (here
    root moves sockets by hand): a job does not talk to another user's server, and a
    server does not run another user's request (a stage module of theirs)."""
    victim, attacker = victim_and_attacker
    work = _victim_work(victim, shared_tmp)
    lair = _as(attacker, shared_tmp / "attacker", 0o755)
    record = lair / "record.jsonl"
    _fake_server(attacker, lair / "fake.sock", record, procs)

    # 1. The victim's private folder, with the attacker's listening socket moved into it.
    made = victim.py("from swift_rules import warmstart; print(warmstart.address(4242))",
                     env=victim.env(TMPDIR=str(shared_tmp)))  # fmt: skip
    value = made.stdout.strip()
    os.rename(lair / "fake.sock", value.split(":", 2)[2])
    job = _victim_job(victim, shared_tmp, value, work)
    assert job.returncode == 0, job.stderr
    assert not record.exists(), f"the job talked to the attacker's server: {record.read_text()}"
    assert f"runs as uid {attacker.uid}, not as you (uid {victim.uid})" in job.stderr

    # 2. The victim's real server, its socket linked where the attacker can reach it.
    (lair / "evilmod.py").write_text(
        f"open({str(lair / 'pwned')!r}, 'w').write(str(__import__('os').getuid()))\n"
        "class Evil: pass\n"
    )
    snakemake, _ = _snakemake(victim, shared_tmp, procs)
    sock = Path(_go(snakemake).split(":", 2)[2])
    wait_for(sock.exists, "the victim's server to bind")
    os.link(sock, lair / "door.sock")
    (lair / "door.sock").chmod(0o666)
    intruder = attacker.py(INTRUDER, str(lair / "door.sock"), str(lair), timeout=180)
    assert intruder.returncode == 0, intruder.stderr
    assert "answer: b'R'" not in intruder.stdout  # closed without running anything
    assert not (lair / "pwned").exists(), "the attacker's module ran as the victim"
    log = Path(f"{sock}.log").read_text()
    assert f"refused a connection from uid {attacker.uid}" in log
    # ...and the victim's own jobs are still served.
    job = _victim_job(victim, shared_tmp, f"{os.uname().nodename}:0:{sock}", work)
    assert job.returncode == 0 and "warm start off" not in job.stderr, job.stderr
    assert any(
        "swift-rules validate" in line for line in Path(f"{sock}.log").read_text().splitlines()
    )


def test_files_of_the_warm_folder_are_never_followed_as_links(owner, tmp_path):
    """Lock, log and failure mark are opened without following links (O_NOFOLLOW)."""
    value = warmstart.address(owner.pid)
    path = value.split(":", 2)[2]
    precious = tmp_path / "precious.txt"
    precious.write_text("precious\n")
    try:
        os.symlink(precious, path + ".log")
        with pytest.raises(warmstart.Unavailable, match="cannot open the log"):
            warm_client._start_server(path, owner.pid)
        os.symlink(precious, path + ".lock")
        assert warm_server.serve(path, owner.pid) == 4
        os.symlink(precious, path + ".failed")
        warm_server._mark_failed(path, RuntimeError("x"))
        assert precious.read_text() == "precious\n"
    finally:
        shutil.rmtree(Path(path).parent)
