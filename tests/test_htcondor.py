"""HTCondor, for real: a personal pool on 127.0.0.1 (.ci/htcondor/setup.sh).

- The reference workflow through profiles/htcondor: every job an HTCondor job. A job
  held on the way fails its Snakemake job with the hold reason in the log; the rerun
  completes, and the results equal a local run's, bit for bit.
- A stage job asking for a GPU lands on the pool's (simulated) GPU slot.
- A stage on Dask workers that dask-jobqueue submits to the pool: equal, bit for bit,
  to a local Dask run. A pool that never gives a worker is an error after
  executor.worker_timeout seconds, naming the reason.

The pool, its jobs and the commands that submit run in the pool's root filesystem
as an ordinary user (.ci/htcondor/pool.sh run). Without a pool these tests skip on a
developer's machine, and fail in CI (.ci/run starts the pool).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import uproot
import yaml
from helpers import REPO, agc_config, snakemake_exe

pytestmark = pytest.mark.slow

POOL = REPO / ".ci" / "htcondor" / "pool.sh"
STATE = Path(os.environ.get("SWIFT_HTCONDOR_STATE", "/var/cache/swift-rules/pool.env"))
SNAKEFILE = REPO / "workflow" / "Snakefile"
HOLD_REASON = "swift-rules test: held on purpose"
CONFIG = agc_config(
    results="results",
    data={
        "generated": {"preset": "tiny", "events_per_file": 500, "files_per_sample": 1},
        "files_per_group": 1,
    },
    stages={"agc::ttbar": {"chunksize": 200, "mem_mb": 1500, "runtime": 7,
                           "options": {"btag_threshold": 0.5}}},
    outputs={"plots": {"enabled": False}},
    analysis={"fit": False, "hepdata": False},
)  # fmt: skip


def _no_pool(why: str):
    msg = (
        f"no personal HTCondor pool: {why}. Start one with `.ci/htcondor/setup.sh` "
        "(as root; .ci/run does it before the tests)"
    )
    if os.environ.get("CI"):
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="module")
def pool() -> dict:
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


# --- comparing results ----------------------------------------------------------------


def histograms(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    with uproot.open(path) as f:
        return {
            k.split(";")[0]: (f[k].values(flow=True), f[k].variances(flow=True)) for k in f.keys()
        }


def flat_output(path: Path) -> dict[str, np.ndarray]:
    """Every number of a result file's output: hist values and variances, counts."""
    import hist

    from swift_rules.results import load_result

    out: dict[str, np.ndarray] = {}

    def walk(obj, prefix):
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, f"{prefix}/{k}")
        elif isinstance(obj, hist.Hist):
            out[prefix + ":values"] = obj.values(flow=True)
            if obj.variances(flow=True) is not None:
                out[prefix + ":variances"] = obj.variances(flow=True)
        else:
            out[prefix] = np.asarray(obj)

    walk(load_result(path)[0], "")
    return out


def assert_bitwise_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not all(np.array_equal(x, y) for x, y in zip(a[k], b[k]))]
    assert not different, f"not bit-identical: {different[:5]}"


# --- the reference workflow through profiles/htcondor -----------------------------------


@pytest.fixture(scope="module")
def local_run(pool):
    """The reference workflow run locally (profiles/local), in the pool's environment."""
    path = workdir(pool, "local", CONFIG)
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


@pytest.fixture(scope="module")
def condor_run(pool, local_run):
    """The workflow through profiles/htcondor: a first run in which a stage job is held
    (and fails), then a rerun that completes."""
    path = workdir(pool, "condor", CONFIG)
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
    yield {"path": path, "first": first, "second": second, "held": held,
           "rerun_s": time.monotonic() - started}  # fmt: skip
    shutil.rmtree(path, ignore_errors=True)


def test_held_job_fails_the_snakemake_job_with_its_reason(condor_run):
    first = condor_run["first"]
    assert condor_run["held"], "no swift_process job was seen in the queue to hold"
    assert first.returncode != 0, "the run with a held job did not fail"
    text = first.stdout + first.stderr
    assert HOLD_REASON in text and "is held" in text, text[-3000:]
    assert "Error in rule swift_process" in text
    logs = sorted((condor_run["path"] / ".snakemake" / "log").glob("*.snakemake.log"))
    assert logs and HOLD_REASON in logs[0].read_text()


def test_rerun_after_a_held_job_completes(condor_run):
    second = condor_run["second"]
    assert second.returncode == 0, (second.stdout + second.stderr)[-5000:]
    assert (condor_run["path"] / "results" / "histograms.root").stat().st_size > 0


def test_profile_run_equals_local_run_bit_for_bit(condor_run, local_run):
    condor_path = condor_run["path"]
    assert condor_run["second"].returncode == 0
    assert_bitwise_equal(
        histograms(condor_path / "results/histograms.root"),
        histograms(local_run / "results/histograms.root"),
    )
    merged = "results/agc/ttbar/merged.pkl"
    a, b = flat_output(condor_path / merged), flat_output(local_run / merged)
    assert_bitwise_equal({k: (v,) for k, v in a.items()}, {k: (v,) for k, v in b.items()})
    events = [json.loads((p / "results/provenance.json").read_text())["events"]
              for p in (condor_path, local_run)]  # fmt: skip
    assert events[0] == events[1]


def test_every_job_was_an_htcondor_job_with_the_stage_resources(condor_run):
    path = condor_run["path"]
    rows = history(f'Iwd == "{path}"', "JobBatchName", "RequestMemory", "RequestCpus",
                   "RequestGpus", "MaxRuntime")  # fmt: skip
    rules = {row[0].rsplit("-", 1)[0] for row in rows}
    assert {"swift_generate", "swift_process", "swift_merge_sample", "swift_merge",
            "agc_histograms"} <= rules, rules  # fmt: skip
    stage_jobs = [row for row in rows if row[0].startswith("swift_process")]
    # stages.agc::ttbar: mem_mb 1500, runtime 7 minutes, gpu 0, threads 1.
    assert all(row[1:] == ["1500", "1", "0", "420"] for row in stage_jobs), stage_jobs


def test_gpu_stage_job_lands_on_a_gpu_slot(pool, condor_run):
    """gpu: 1 becomes request_gpus = 1; the pool's simulated GPU slot takes the job
    and assigns it a GPU. (No real GPU: the stage's device choice then says why.)"""
    source = condor_run["path"]
    config = yaml.safe_load(yaml.safe_dump(CONFIG))
    config["stages"]["agc::ttbar"]["gpu"] = 1
    path = workdir(pool, "gpu", config)
    in_pool("cp", "-r", "--preserve=timestamps", source / "data", path / "data", cwd=path)
    target = "results/agc/ttbar/partial/ttbar__nominal/group0000.pkl"
    cmd = snakemake_cmd("htcondor", path, "--seconds-between-status-checks", "1", target)
    proc = in_pool(*cmd, cwd=path, timeout=200, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    rows = history(f'Iwd == "{path}"', "RequestGpus", "AssignedGPUs")
    assert rows and rows[0][0] == "1", rows
    assert rows[0][1].startswith("GPU-"), rows  # the slot's (simulated) GPU
    from swift_rules.results import load_result

    record = load_result(path / target)[1]
    # The slot's GPU is simulated: the probe finds no usable device, auto takes the CPU.
    assert record["variant"] == "cpu" and record["device_reason"].startswith("auto: "), record
    shutil.rmtree(path, ignore_errors=True)


# --- Dask workers submitted to the pool by dask-jobqueue -----------------------------------

DASK_ON_POOL = {
    "type": "htcondor",
    "maximum_workers": 2,
    "worker_timeout": 120,
    # Loopback only: the scheduler in the stage job, and the workers, on 127.0.0.1.
    "htcondor": {"memory": "1GB", "disk": "200MB", "log_directory": "dask-logs",
                 "scheduler_options": {"host": "127.0.0.1"},
                 "worker_extra_args": ["--host", "127.0.0.1"]},
}  # fmt: skip


def run_stage(path: Path, out: str, executor: dict, workers: int, timeout=300, check=True):
    files = sorted(str(p) for p in (path / "data/generated/ttbar__nominal").glob("*.root"))
    return in_pool(
        "swift-rules", "run", "agc::ttbar", "--sample", "ttbar__nominal", "--files", *files,
        "--out", out, "--workers", str(workers), "--no-progress",
        "--settings", json.dumps({"chunksize": 100, "options": {"btag_threshold": 0.5}}),
        "--executor", json.dumps(executor), cwd=path, timeout=timeout, check=check,
    )  # fmt: skip


def test_stage_on_dask_workers_in_the_pool_equals_local_dask(local_run):
    path = local_run  # its generated data
    started = time.monotonic()
    proc = run_stage(path, "dask-htcondor.pkl", DASK_ON_POOL, workers=2)
    elapsed = time.monotonic() - started
    assert "HTCondor Dask cluster: tcp://127.0.0.1:" in proc.stderr
    run_stage(path, "dask-local.pkl", {"type": "local"}, workers=2)
    a, b = flat_output(path / "dask-htcondor.pkl"), flat_output(path / "dask-local.pkl")
    assert_bitwise_equal({k: (v,) for k, v in a.items()}, {k: (v,) for k, v in b.items()})
    from swift_rules.results import load_result

    assert load_result(path / "dask-htcondor.pkl")[1]["executor"]["type"] == "htcondor"
    # The workers were HTCondor jobs (dask-jobqueue names them), and are gone now.
    workers = history(f'Iwd == "{path}" && regexp("^HTCondorCluster", JobBatchName)',
                      "ClusterId", "RequestMemory")  # fmt: skip
    assert workers and all(row[1] == "953" for row in workers), workers  # 1GB (10^9 B)
    assert not condor("condor_q", "-constraint", f'Iwd == "{path}"', "-af", "ClusterId")
    assert elapsed < 120


def test_pool_that_never_gives_workers_fails_after_worker_timeout(local_run):
    executor = json.loads(json.dumps(DASK_ON_POOL))
    executor["htcondor"]["memory"] = "100TB"  # no slot will ever match
    executor["worker_timeout"] = 8
    started = time.monotonic()
    proc = run_stage(local_run, "never.pkl", executor, workers=2, timeout=120, check=False)
    elapsed = time.monotonic() - started
    assert proc.returncode != 0
    assert "gave no Dask worker within 8 s (executor.worker_timeout)" in proc.stderr
    assert "idle" in proc.stderr and "no slot that matches" in proc.stderr
    assert elapsed < 60, elapsed
    assert not (local_run / "never.pkl").exists()
    # Its worker job was removed when the stage job gave up.
    deadline = time.monotonic() + 30
    while condor("condor_q", "-constraint", f'Iwd == "{local_run}"', "-af", "ClusterId"):
        assert time.monotonic() < deadline, "the worker job was left in the queue"
        time.sleep(1)


# --- bad configuration, without a pool ---------------------------------------------------


def test_htcondor_executor_without_condor_submit_is_a_clear_error(monkeypatch):
    from swift_rules.backends import ClusterError, dask_client

    monkeypatch.setenv("PATH", "/nonexistent")
    with (
        pytest.raises(ClusterError, match="condor_submit, which is not on PATH"),
        dask_client({"type": "htcondor"}, 2),
    ):
        pass


def test_unknown_profile_is_a_clear_error(tmp_path):
    started = time.monotonic()
    proc = subprocess.run(
        [snakemake_exe(), "--profile", str(REPO / "profiles" / "no-such-profile"),
         "--snakefile", str(SNAKEFILE), "--dry-run"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "no-such-profile" in proc.stderr
    assert time.monotonic() - started < 60


def test_htcondor_profile_without_a_pool_fails_fast(tmp_path):
    """No schedd to submit to: the first submission fails, naming the cause."""
    pytest.importorskip("snakemake_executor_plugin_htcondor")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    started = time.monotonic()
    proc = subprocess.run(
        snakemake_cmd("htcondor", tmp_path), cwd=tmp_path, capture_output=True, text=True,
        timeout=120, env={**os.environ, "CONDOR_CONFIG": "/dev/null"},
    )  # fmt: skip
    assert proc.returncode != 0
    assert "Unable to locate local daemon" in proc.stdout + proc.stderr
    assert time.monotonic() - started < 120
