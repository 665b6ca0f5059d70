"""The personal HTCondor pool of the HTCondor tests (.ci/htcondor/setup.sh starts it):
the fixture that finds it, the commands that run in it, and the reference workflow run
through profiles/htcondor (with a held job on the way) beside a local run, which
tests/test_htcondor.py compares and checks. A pytest plugin
(conftest's ``pytest_plugins``): the runs are made once a session.

The pool, its jobs and the commands that submit run in the pool's root filesystem as an
ordinary user (.ci/htcondor/pool.sh run). Without a pool the tests that need one skip
on a developer's machine, and fail in CI (.ci/run starts the pool).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
import yaml
from helpers import PROFILE_CONFIG, REPO, snakemake_exe, unavailable

POOL = REPO / ".ci" / "htcondor" / "pool.sh"
STATE = Path(os.environ.get("SWIFT_HTCONDOR_STATE", "/var/cache/swift-rules/pool.env"))
SNAKEFILE = REPO / "workflow" / "Snakefile"
HOLD_REASON = "swift-rules test: held on purpose"


def _no_pool(why: str):
    unavailable(
        f"no personal HTCondor pool: {why}. Start one with `.ci/htcondor/setup.sh` "
        "(as root; .ci/run does it before the tests)"
    )


@pytest.fixture(scope="session")
def htcondor_pool() -> dict:
    if not STATE.exists():
        _no_pool(f"{STATE} does not exist")
    state = dict(
        line.split("=", 1) for line in STATE.read_text().splitlines() if "=" in line
    )  # fmt: skip
    root = Path(state["SWIFT_HTCONDOR_ROOT"])
    try:
        status = subprocess.run([POOL, "status"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        _no_pool("`pool.sh status` did not answer within 30 s")
    if status.returncode != 0:
        _no_pool(status.stderr.strip() or "pool.sh status failed")
    mounts = {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}
    if f"{root}{REPO}" not in mounts:
        _no_pool(f"this checkout ({REPO}) is not mounted in {root}; rerun setup.sh from it")
    return state


def in_pool(*cmd, cwd: Path, timeout: float = 300, check=True) -> subprocess.CompletedProcess:
    """``cmd`` in the pool's root, as the job user, in ``cwd``."""
    proc = subprocess.run(
        [str(POOL), "run", *map(str, cmd)], cwd=cwd, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def workdir(pool: dict, name: str, config: dict | None = None) -> Path:
    """A folder that the host and the pool see at the same path, writable by its jobs."""
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=pool["SWIFT_HTCONDOR_SCRATCH"]))
    path.chmod(0o777)
    if config is not None:
        (path / "config").mkdir()
        (path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
        (path / "config").chmod(0o777)
    return path


def snakemake_cmd(profile: str, path: Path, *args) -> list[str]:
    return [
        snakemake_exe(), "--profile", str(REPO / "profiles" / profile), "--snakefile",
        str(SNAKEFILE), "--directory", str(path), *args,
    ]  # fmt: skip


def condor(*args, timeout: float = 30) -> str:
    """An HTCondor command in the pool (as the job user)."""
    return in_pool(*args, cwd=REPO, timeout=timeout).stdout


def history(constraint: str, *attrs: str) -> list[list[str]]:
    out = condor("condor_history", "-constraint", constraint, "-af", *attrs)
    return [line.split() for line in out.splitlines() if line.strip()]


# --- the reference workflow through profiles/htcondor -----------------------------------


@pytest.fixture(scope="session")
def htcondor_local_run(htcondor_pool):
    """The reference workflow run locally (profiles/local), in the pool's environment."""
    path = workdir(htcondor_pool, "local", PROFILE_CONFIG)
    in_pool(*snakemake_cmd("local", path, "--cores", "2"), cwd=path, timeout=300)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _hold_first_stage_job(path: Path, stop: threading.Event, held: list) -> None:
    """Hold the first swift_process job of ``path`` that appears in the queue (bounded)."""
    deadline = time.monotonic() + 240
    while not stop.is_set() and time.monotonic() < deadline:
        proc = subprocess.run(
            [str(POOL), "run", "condor_q", "-constraint", f'Iwd == "{path}"',
             "-af", "ClusterId", "JobBatchName"],
            cwd=REPO, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        for line in proc.stdout.splitlines():
            cluster, _, batch = line.partition(" ")
            if batch.startswith("swift_process"):
                hold = subprocess.run(
                    [str(POOL), "run", "condor_hold", "-reason", HOLD_REASON, cluster],
                    cwd=REPO, capture_output=True, text=True, timeout=30,
                )  # fmt: skip
                if hold.returncode == 0:  # (else it had just finished: try the next)
                    held.append(cluster)
                    return
        time.sleep(0.2)


@pytest.fixture(scope="session")
def htcondor_profile_run(htcondor_pool, htcondor_local_run):
    """The workflow through profiles/htcondor: a first run in which a stage job is held
    (and fails), then a rerun that completes. ``local``: the local run to compare with.
    The generated inputs are the local run's (copied), so the pool's run starts at the
    fileset."""
    path = workdir(htcondor_pool, "condor", PROFILE_CONFIG)
    in_pool("cp", "-r", "--preserve=timestamps", htcondor_local_run / "data", path / "data",
            cwd=path)  # fmt: skip
    cmd = snakemake_cmd("htcondor", path, "--seconds-between-status-checks", "1", "--retries", "0")
    stop, held = threading.Event(), []
    holder = threading.Thread(target=_hold_first_stage_job, args=(path, stop, held), daemon=True)
    holder.start()
    try:
        first = in_pool(*cmd, cwd=path, timeout=300, check=False)
    finally:
        stop.set()
        holder.join(30)
    # The held job stays in the queue (a person would look at it): remove it.
    for cluster in held:
        condor("condor_rm", cluster)
    started = time.monotonic()
    second = in_pool(*cmd, cwd=path, timeout=400, check=False)
    yield {"path": path, "local": htcondor_local_run, "first": first, "second": second,
           "held": held, "rerun_s": time.monotonic() - started}  # fmt: skip
    shutil.rmtree(path, ignore_errors=True)
