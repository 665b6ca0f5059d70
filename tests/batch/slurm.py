"""The Slurm cluster of the Slurm tests: a one-node cluster on loopback with slurmdbd
(.ci/slurm/setup.sh; started here when it is not up and we may), the commands that ask
it, and the reference workflow run through profiles/slurm (with a stage job cancelled on
the way) beside a local run, which tests/test_slurm.py compares and
checks; and a workflow whose jobs fail and time out, started early
so that it runs meanwhile. A pytest plugin (conftest's ``pytest_plugins``): the cluster
and the runs are made once a session, and any job of theirs left is cancelled at the end.

Without a cluster (and no way to start one) the tests that need it skip on a developer's
machine, and fail in CI (.ci/run starts the cluster).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml
from helpers import PROFILE_CONFIG, REPO, snakemake_exe, unavailable

SETUP = REPO / ".ci" / "slurm" / "setup.sh"
TEARDOWN = REPO / ".ci" / "slurm" / "teardown.sh"
STATE = Path(os.environ.get("SWIFT_SLURM_STATE", "/var/cache/swift-rules/slurm/cluster.env"))
SNAKEFILE = REPO / "workflow" / "Snakefile"
# Faster than the profile's 40 s for a test; the plugin adds 10 s per idle check.
# Jobs of this test session only: a folder of an earlier session may have had the same
# path (pytest --basetemp), and the cluster's accounting keeps its jobs.
SESSION_START = time.strftime("%Y-%m-%dT%H:%M:%S")
FAST = ["--slurm-init-seconds-before-status-checks", "1", "--retries", "0"]


# --- the cluster -------------------------------------------------------------------------


def _no_cluster(why: str):
    unavailable(
        f"no Slurm cluster: {why}. Start one with `.ci/slurm/setup.sh` "
        "(as root; .ci/run does it before the tests)"
    )


def _state() -> dict:
    lines = STATE.read_text().splitlines() if STATE.exists() else []
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def _up() -> bool:
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                             timeout=20)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and bool(re.search(r"^(idle|mixed|allocated)", out.stdout, re.M))


def slurm(*args, timeout: float = 30) -> str:
    proc = subprocess.run(list(map(str, args)), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{args} failed: {proc.stderr[-2000:]}")
    return proc.stdout


def queued(workdir: Path) -> list[list[str]]:
    """[job id, state, comment] of the queued jobs whose working directory is ``workdir``."""
    out = slurm("squeue", "-h", "-o", "%i|%T|%k|%Z")
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    return [row[:3] for row in rows if len(row) == 4 and row[3] == str(workdir)]


def accounted(workdir: Path, *fields: str) -> list[dict[str, str]]:
    """sacct's rows (one per job) for the jobs that ran in ``workdir``."""
    names = ["JobIDRaw", "WorkDir", *fields]
    out = slurm("sacct", "-X", "-n", "-P", "-S", SESSION_START, "-o", ",".join(names))
    rows = [dict(zip(names, line.split("|"))) for line in out.splitlines() if line.strip()]
    return [row for row in rows if row["WorkDir"] == str(workdir)]


def wait_until_gone(workdir: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while jobs := queued(workdir):
        assert time.monotonic() < deadline, f"jobs left in the queue: {jobs}"
        time.sleep(0.5)


@pytest.fixture(scope="session")
def slurm_base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("slurm")


@pytest.fixture(scope="session")
def slurm_cluster(slurm_base) -> dict:
    """The cluster .ci/slurm/setup.sh started; started here (and stopped after) if it is
    not up and we may. Any job of these tests still queued at the end is cancelled."""
    started_here = False
    if not (STATE.exists() and _up()):
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            _no_cluster(f"{STATE} does not exist, and starting one needs root and apt-get")
        try:
            setup = subprocess.run([SETUP], capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            _no_cluster("`.ci/slurm/setup.sh` did not finish within 300 s")
        if setup.returncode != 0:
            _no_cluster(f"`.ci/slurm/setup.sh` failed: {setup.stderr.strip()[-500:]}")
        started_here = True
    if not _up():
        _no_cluster("sinfo shows no usable node")
    yield _state()
    mine = [line.split("|")[0] for line in slurm("squeue", "-h", "-o", "%i|%Z").splitlines()
            if line.split("|")[-1].startswith(str(slurm_base))]  # fmt: skip
    if mine:
        subprocess.run(["scancel", *mine], timeout=30)
    if started_here:
        subprocess.run([TEARDOWN], capture_output=True, timeout=120)


def workdir(base: Path, name: str, config: dict | None = None) -> Path:
    path = base / name
    path.mkdir()
    if config is not None:
        (path / "config").mkdir()
        (path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="session")
def slurm_profile(slurm_base, slurm_cluster) -> Path:
    """profiles/slurm with the site lines filled in for this cluster, as a site would."""
    settings = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    settings["default-resources"]["slurm_partition"] = f"'{slurm_cluster['SWIFT_SLURM_PARTITION']}'"
    settings["default-resources"]["slurm_account"] = f"'{slurm_cluster['SWIFT_SLURM_ACCOUNT']}'"
    path = slurm_base / "profile"
    path.mkdir()
    (path / "config.yaml").write_text(yaml.safe_dump(settings))
    return path


def snakemake(profile: Path | str, path: Path, *args, snakefile: Path = SNAKEFILE) -> list[str]:
    return [snakemake_exe(), "--profile", str(profile), "--snakefile", str(snakefile),
            "--directory", str(path), *map(str, args)]  # fmt: skip


def run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def output(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


# --- jobs that fail, time out (started first: they run while the rest goes on) ------------

FAILING = """
rule all:
    input: "fails.txt", "times_out.txt"

rule fails:
    output: "fails.txt"
    shell: "test -e ok || {{ echo 'swift-rules test: failing on purpose' >&2; exit 3; }}; "
           "touch {output}"

rule times_out:
    output: "times_out.txt"
    resources: runtime=1
    shell: "test -e ok || sleep 600; touch {output}"
"""


@pytest.fixture(scope="session")
def slurm_failing(slurm_base, slurm_profile):
    """A workflow whose two jobs fail (exit 3) and run past their time limit (1 minute):
    started in the background now, checked by the last test."""
    path = workdir(slurm_base, "failing")
    (path / "Snakefile").write_text(FAILING)
    cmd = snakemake(slurm_profile, path, *FAST, "--keep-going", snakefile=path / "Snakefile")
    log = slurm_base / "failing.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=path, stdout=out, stderr=subprocess.STDOUT)
    yield {"path": path, "proc": proc, "cmd": cmd, "log": log}
    if proc.poll() is None:
        proc.kill()


# --- the reference workflow through profiles/slurm ---------------------------------------


@pytest.fixture(scope="session")
def slurm_local_run(slurm_base, slurm_cluster, slurm_failing):
    """The reference workflow run locally (profiles/local)."""
    path = workdir(slurm_base, "local", PROFILE_CONFIG)
    proc = run(snakemake(REPO / "profiles" / "local", path, "--cores", "2"), cwd=path)
    assert proc.returncode == 0, output(proc)[-5000:]
    return path


def final_state(job: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["sacct", "-X", "-n", "-P", "-j", job, "-o", "State"],
                             capture_output=True, text=True, timeout=30).stdout.strip()  # fmt: skip
        if out and out.split()[0] not in ("PENDING", "RUNNING", "COMPLETING", "REQUEUED"):
            return out
        time.sleep(0.2)
    return "unknown"


def _cancel_first_stage_job(path: Path, stop: threading.Event, cancelled: list) -> None:
    """scancel the first swift_process job of ``path`` that runs (bounded); if it had
    just finished instead, the next one."""
    deadline = time.monotonic() + 240
    while not stop.is_set() and time.monotonic() < deadline:
        for job, state, comment in queued(path):
            if state == "RUNNING" and comment.startswith("rule_swift_process"):
                subprocess.run(["scancel", job], capture_output=True, timeout=30)
                if final_state(job).startswith("CANCELLED"):
                    cancelled.append(job)
                    return
        time.sleep(0.2)


@pytest.fixture(scope="session")
def slurm_profile_run(slurm_base, slurm_profile, slurm_local_run):
    """The workflow through profiles/slurm: a first run in which a stage job is cancelled
    (and fails), then a rerun that completes. The generated inputs are the local run's
    (copied), so the Slurm run starts at the fileset."""
    path = workdir(slurm_base, "profile-run", PROFILE_CONFIG)
    shutil.copytree(slurm_local_run / "data", path / "data")  # (copytree keeps the times)
    cmd = snakemake(slurm_profile, path, *FAST)
    stop, cancelled = threading.Event(), []
    canceller = threading.Thread(target=_cancel_first_stage_job, args=(path, stop, cancelled),
                                 daemon=True)  # fmt: skip
    canceller.start()
    try:
        first = run(cmd, cwd=path)
    finally:
        stop.set()
        canceller.join(30)
    started = time.monotonic()
    second = run(cmd, cwd=path)
    return {"path": path, "local": slurm_local_run, "first": first, "second": second,
            "cancelled": cancelled, "rerun_s": time.monotonic() - started}  # fmt: skip
