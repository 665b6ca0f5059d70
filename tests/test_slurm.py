"""Slurm, for real: a one-node cluster on loopback (.ci/slurm/setup.sh), with slurmdbd, so
that ``sacct`` shows what every job asked for and how it ended.

- The reference workflow through profiles/slurm: every job a Slurm job, the stage jobs
  with the stage's cores, memory and time limit. A stage job cancelled on the way
  (``scancel``) fails its Snakemake job with Slurm's state; the rerun completes, and the
  results equal a local run's, bit for bit.
- A stage job asking for a GPU and 2 threads gets them (the node's GPU is simulated).
- A job killed at its time limit and a job that fails are failed Snakemake jobs with
  Slurm's state; a rerun completes. Ctrl-C cancels the running jobs.
- A stage on Dask workers that dask-jobqueue submits with sbatch (an open scheduler port,
  and through the connection broker): equal, bit for bit, to a local Dask run. Workers
  that never come (a partition whose time limit is too short, a held job, a request no
  node can hold) are an error after executor.worker_timeout seconds, with Slurm's reason.
- Without a cluster: the resource mapping read by the Slurm plugin's own submit-string
  code, the job script, the schema defaults and the diagnosis of squeue/sacct output.

Without a cluster (and no way to start one) the cluster tests skip on a developer's
machine, and fail in CI (.ci/run starts the cluster). The module shares one cluster, one
local reference run and one profile run; it cancels any job of its own left at the end.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from helpers import REPO, run_cli, snakemake_exe
from test_htcondor import CONFIG, assert_bitwise_equal, flat_output, histograms

pytestmark = pytest.mark.slow

SETUP = REPO / ".ci" / "slurm" / "setup.sh"
TEARDOWN = REPO / ".ci" / "slurm" / "teardown.sh"
STATE = Path(os.environ.get("SWIFT_SLURM_STATE", "/var/cache/swift-rules/slurm/cluster.env"))
SNAKEFILE = REPO / "workflow" / "Snakefile"
# Faster than the profile's 40 s for a test; the plugin adds 10 s per idle check.
FAST = ["--slurm-init-seconds-before-status-checks", "1", "--retries", "0"]


# --- the cluster -------------------------------------------------------------------------


def _no_cluster(why: str):
    msg = (
        f"no Slurm cluster: {why}. Start one with `.ci/slurm/setup.sh` "
        "(as root; .ci/run does it before the tests)"
    )
    if os.environ.get("CI"):
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


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
    out = slurm("sacct", "-X", "-n", "-P", "-S", "2000-01-01", "-o", ",".join(names))
    rows = [dict(zip(names, line.split("|"))) for line in out.splitlines() if line.strip()]
    return [row for row in rows if row["WorkDir"] == str(workdir)]


def wait_until_gone(workdir: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while jobs := queued(workdir):
        assert time.monotonic() < deadline, f"jobs left in the queue: {jobs}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("slurm")


@pytest.fixture(scope="module")
def cluster(base) -> dict:
    """The cluster .ci/slurm/setup.sh started; started here (and stopped after) if it is
    not up and we may. Any job of this module still queued at the end is cancelled."""
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
            if line.split("|")[-1].startswith(str(base))]  # fmt: skip
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


@pytest.fixture(scope="module")
def profile(base, cluster) -> Path:
    """profiles/slurm with the site lines filled in for this cluster, as a site would."""
    settings = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    settings["default-resources"]["slurm_partition"] = f"'{cluster['SWIFT_SLURM_PARTITION']}'"
    settings["default-resources"]["slurm_account"] = f"'{cluster['SWIFT_SLURM_ACCOUNT']}'"
    path = base / "profile"
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


@pytest.fixture(scope="module")
def failing(base, profile):
    """A workflow whose two jobs fail (exit 3) and run past their time limit (1 minute):
    started in the background now, checked by the last test."""
    path = workdir(base, "failing")
    (path / "Snakefile").write_text(FAILING)
    cmd = snakemake(profile, path, *FAST, "--keep-going", snakefile=path / "Snakefile")
    log = base / "failing.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=path, stdout=out, stderr=subprocess.STDOUT)
    yield {"path": path, "proc": proc, "cmd": cmd, "log": log}
    if proc.poll() is None:
        proc.kill()


# --- the reference workflow through profiles/slurm ---------------------------------------


@pytest.fixture(scope="module")
def local_run(base, cluster, failing):
    """The reference workflow run locally (profiles/local)."""
    path = workdir(base, "local", CONFIG)
    proc = run(snakemake(REPO / "profiles" / "local", path, "--cores", "2"), cwd=path)
    assert proc.returncode == 0, output(proc)[-5000:]
    return path


def _final_state(job: str, timeout: float = 30) -> str:
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
                if _final_state(job).startswith("CANCELLED"):
                    cancelled.append(job)
                    return
        time.sleep(0.2)


@pytest.fixture(scope="module")
def slurm_run(base, profile, local_run):
    """The workflow through profiles/slurm: a first run in which a stage job is cancelled
    (and fails), then a rerun that completes. The generated inputs are the local run's
    (copied), so the Slurm run starts at the fileset."""
    path = workdir(base, "profile-run", CONFIG)
    shutil.copytree(local_run / "data", path / "data")  # (copytree keeps the times)
    cmd = snakemake(profile, path, *FAST)
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
    return {"path": path, "first": first, "second": second, "cancelled": cancelled,
            "rerun_s": time.monotonic() - started}  # fmt: skip


def test_cancelled_job_fails_its_snakemake_job_with_slurms_state(slurm_run):
    first = slurm_run["first"]
    assert slurm_run["cancelled"], "no swift_process job was seen running to cancel"
    assert first.returncode != 0, "the run with a cancelled job did not fail"
    text = output(first)
    job = slurm_run["cancelled"][0]
    assert f"SLURM-job '{job}' failed, SLURM status is: 'CANCELLED'" in text, text[-3000:]
    assert "Error in rule swift_process" in text
    # The failed job's Slurm log is kept, under .snakemake/slurm_logs/rule_swift_process/.
    logs = list((slurm_run["path"] / ".snakemake/slurm_logs/rule_swift_process").rglob("*.log"))
    assert any(p.name == f"{job}.log" for p in logs), logs


def test_rerun_after_a_cancelled_job_completes(slurm_run):
    second = slurm_run["second"]
    assert second.returncode == 0, output(second)[-5000:]
    assert (slurm_run["path"] / "results" / "histograms.root").stat().st_size > 0


def test_profile_run_equals_local_run_bit_for_bit(slurm_run, local_run):
    path = slurm_run["path"]
    assert slurm_run["second"].returncode == 0
    assert_bitwise_equal(
        histograms(path / "results/histograms.root"),
        histograms(local_run / "results/histograms.root"),
    )
    merged = "results/agc/ttbar/merged.pkl"
    a, b = flat_output(path / merged), flat_output(local_run / merged)
    assert_bitwise_equal({k: (v,) for k, v in a.items()}, {k: (v,) for k, v in b.items()})
    events = [json.loads((p / "results/provenance.json").read_text())["events"]
              for p in (path, local_run)]  # fmt: skip
    assert events[0] == events[1]


def test_every_job_was_a_slurm_job_with_the_stage_resources(slurm_run, cluster):
    rows = accounted(slurm_run["path"], "Comment", "State", "AllocCPUS", "ReqMem", "Timelimit",
                     "Partition", "Account")  # fmt: skip
    rules = {re.sub(r"^rule_", "", row["Comment"]).split("_wildcards")[0] for row in rows}
    assert {"swift_process", "swift_merge_sample", "swift_merge", "agc_histograms",
            "agc_provenance"} <= rules, rules  # fmt: skip
    assert all(row["Partition"] == cluster["SWIFT_SLURM_PARTITION"] for row in rows), rows
    assert all(row["Account"] == cluster["SWIFT_SLURM_ACCOUNT"] for row in rows), rows
    stage = [row for row in rows if row["Comment"].startswith("rule_swift_process")]
    # 9 samples, one file group each; one of them cancelled in the first run, then rerun.
    assert len([row for row in stage if row["State"] == "COMPLETED"]) == 9, stage
    # stages.agc::ttbar: threads 1, mem_mb 1500, runtime 7 minutes.
    assert all((row["AllocCPUS"], row["ReqMem"], row["Timelimit"]) == ("1", "1500M", "00:07:00")
               for row in stage), stage  # fmt: skip
    # The other rules: the profile's defaults (30 minutes).
    assert all(row["Timelimit"] == "00:30:00" for row in rows if row not in stage), rows
    # The successful jobs' logs were deleted (slurm-keep-successful-logs: false).
    left = list((slurm_run["path"] / ".snakemake/slurm_logs").rglob("*.log"))
    assert [p.stem for p in left] == slurm_run["cancelled"], left


def test_gpu_stage_job_gets_its_gpu_cores_memory_and_time(base, profile, slurm_run):
    """gpu: 1 becomes --gpus=1, threads: 2 --cpus-per-task=2; the node's GPU is simulated
    (its device is /dev/null), so the stage's device choice then says why it took the CPU."""
    config = json.loads(json.dumps(CONFIG))
    config["stages"]["agc::ttbar"].update({"gpu": 1, "threads": 2, "mem_mb": 1200, "runtime": 5})
    path = workdir(base, "gpu", config)
    shutil.copytree(slurm_run["path"] / "data", path / "data")
    target = "results/agc/ttbar/partial/ttbar__nominal/group0000.pkl"
    proc = run(snakemake(profile, path, *FAST, target), cwd=path, timeout=200)
    assert proc.returncode == 0, output(proc)[-4000:]
    rows = accounted(path, "Comment", "AllocCPUS", "ReqMem", "Timelimit", "AllocTRES")
    stage = [row for row in rows if row["Comment"].startswith("rule_swift_process")]
    assert len(stage) == 1, rows
    assert (stage[0]["AllocCPUS"], stage[0]["ReqMem"], stage[0]["Timelimit"]) == (
        "2", "1200M", "00:05:00"), stage  # fmt: skip
    assert "gres/gpu=1" in stage[0]["AllocTRES"], stage
    from swift_rules.results import load_result

    record = load_result(path / target)[1]
    assert record["variant"] == "cpu" and record["device_reason"].startswith("auto: "), record


def test_ctrl_c_cancels_the_slurm_jobs(base, profile):
    path = workdir(base, "interrupted")
    (path / "Snakefile").write_text(
        # What stages.smk does for every swift-rules workflow (see the last tests).
        "from swift_rules.executors import guard_slurm_executor\nguard_slurm_executor()\n\n"
        'rule all:\n    input: "a.txt", "b.txt"\n\n'
        'rule sleep:\n    output: "{name}.txt"\n    shell: "sleep 600; touch {output}"\n'
    )
    cmd = snakemake(profile, path, *FAST, snakefile=path / "Snakefile")
    log = base / "interrupted.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=path, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while [state for _, state, _ in queued(path)] != ["RUNNING", "RUNNING"]:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, queued(path)
            time.sleep(0.5)
        jobs = sorted(job for job, _, _ in queued(path))
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert proc.returncode != 0, text[-3000:]
    wait_until_gone(path)
    # (sacct has a job about a second after its submission: wait for each one's state.)
    states = {job: _final_state(job) for job in jobs}
    assert all(state.startswith("CANCELLED") for state in states.values()), (states, text[-3000:])


# --- Dask workers as Slurm jobs (SLURMCluster) -------------------------------------------

DASK_ON_SLURM = {
    "type": "slurm",
    "maximum_workers": 2,
    "worker_timeout": 120,
    # Loopback only: the scheduler in the stage job, and the workers, on 127.0.0.1.
    "slurm": {"memory": "1GB", "walltime": "00:10:00", "log_directory": "dask-logs",
              "scheduler_options": {"host": "127.0.0.1"},
              "worker_extra_args": ["--host", "127.0.0.1"]},
}  # fmt: skip


def run_stage(path: Path, out: str, executor: dict, workers: int = 2):
    files = sorted(str(p) for p in (path / "data/generated/ttbar__nominal").glob("*.root"))
    return run_cli(
        "run", "agc::ttbar", "--sample", "ttbar__nominal", "--files", *files, "--out", out,
        "--workers", str(workers), "--no-progress",
        "--settings", json.dumps({"chunksize": 100, "options": {"btag_threshold": 0.5}}),
        "--executor", json.dumps(executor), cwd=path, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def local_dask(local_run) -> Path:
    proc = run_stage(local_run, "dask-local.pkl", {"type": "local"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return local_run / "dask-local.pkl"


def dask_workers(path: Path) -> list[dict[str, str]]:
    return [row for row in accounted(path, "JobName", "State", "ReqMem", "Timelimit")
            if row["JobName"] == "dask-worker"]  # fmt: skip


def test_stage_on_slurm_dask_workers_equals_local_dask(cluster, local_run, local_dask):
    path = local_run  # its generated data
    before = {row["JobIDRaw"] for row in dask_workers(path)}
    started = time.monotonic()
    proc = run_stage(path, "dask-slurm.pkl", DASK_ON_SLURM)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Slurm Dask cluster: tcp://127.0.0.1:" in proc.stderr
    a, b = flat_output(path / "dask-slurm.pkl"), flat_output(local_dask)
    assert_bitwise_equal({k: (v,) for k, v in a.items()}, {k: (v,) for k, v in b.items()})
    from swift_rules.results import load_result

    assert load_result(path / "dask-slurm.pkl")[1]["executor"]["type"] == "slurm"
    # The workers were Slurm jobs with the requested memory (1GB = 954 MiB) and time
    # limit, gone when the stage job closed its cluster (cancelled, or ended by the
    # worker itself when its scheduler went away first).
    wait_until_gone(path)
    deadline = time.monotonic() + 20
    while not (workers := [r for r in dask_workers(path) if r["JobIDRaw"] not in before]):
        assert time.monotonic() < deadline, "no worker job in sacct"
        time.sleep(0.5)
    assert all((r["ReqMem"], r["Timelimit"]) == ("954M", "00:10:00") for r in workers), workers
    assert all(r["State"].startswith(("CANCELLED", "COMPLETED")) for r in workers), workers
    assert elapsed < 120


def test_stage_on_slurm_workers_through_the_broker(cluster, local_run, local_dask, tmp_path):
    """Workers that could not be reached: scheduler and workers meet at the broker."""
    token = tmp_path / "broker.token"
    token.write_text("swift-rules-slurm-test-token-0123456789\n")
    log = tmp_path / "broker.log"
    broker = subprocess.Popen(
        [sys.executable, "-m", "swift_rules.cli", "broker", "serve", "--host", "127.0.0.1",
         "--port", "0", "--token-file", str(token)],
        stdout=open(log, "w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline, match = time.monotonic() + 30, None
        while not match:
            assert time.monotonic() < deadline and broker.poll() is None, log.read_text()
            match = re.search(r"broker listening on \S+:(\d+)", log.read_text())
            time.sleep(0.2)
        executor = json.loads(json.dumps(DASK_ON_SLURM))
        del executor["slurm"]["scheduler_options"], executor["slurm"]["worker_extra_args"]
        executor["broker"] = {"address": f"127.0.0.1:{match.group(1)}", "token_file": str(token)}
        proc = run_stage(local_run, "dask-broker.pkl", executor)
    finally:
        broker.terminate()
        broker.wait(15)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Slurm Dask cluster: broker://127.0.0.1:" in proc.stderr
    a, b = flat_output(local_run / "dask-broker.pkl"), flat_output(local_dask)
    assert_bitwise_equal({k: (v,) for k, v in a.items()}, {k: (v,) for k, v in b.items()})
    wait_until_gone(local_run)


@pytest.mark.parametrize(
    "slurm_settings, where, reason",
    [
        ({"partition": "short"}, "partition short",
         "PartitionTimeLimit: executor.slurm.walltime is above the partition's time limit"),
        ({"job_extra_directives": ["--hold"]}, "the default partition",
         "JobHeldUser: held by its user"),
        ({"memory": "100TB"}, "the default partition",
         "no worker job was submitted; sbatch --test-only: allocation failure: "
         "Requested node configuration is not available"),
    ],
    ids=["partition-time-limit", "held", "no-node-fits"],
)  # fmt: skip
def test_slurm_that_never_gives_workers_fails_after_worker_timeout(
    cluster, base, local_run, slurm_settings, where, reason
):
    executor = json.loads(json.dumps(DASK_ON_SLURM))
    executor["slurm"].update(slurm_settings)
    executor["worker_timeout"] = 8
    path = workdir(base, f"never-{len(list(base.glob('never-*')))}")
    shutil.copytree(local_run / "data", path / "data")
    started = time.monotonic()
    proc = run_stage(path, "never.pkl", executor)
    elapsed = time.monotonic() - started
    assert proc.returncode != 0
    assert f"Slurm ({where}) gave no Dask worker within 8 s (executor.worker_timeout)" in (
        proc.stderr), proc.stderr[-3000:]  # fmt: skip
    assert reason in proc.stderr, proc.stderr[-3000:]
    assert elapsed < 60, elapsed
    assert not (path / "never.pkl").exists()
    wait_until_gone(path)  # its worker jobs were cancelled when the stage job gave up


def test_timed_out_and_failed_jobs_fail_with_slurms_state_and_a_rerun_completes(failing):
    path, proc = failing["path"], failing["proc"]
    proc.wait(timeout=400)  # the time limit is 1 minute, enforced every 30 s
    text = failing["log"].read_text()
    assert proc.returncode != 0, text[-3000:]
    states = {row["Comment"]: row for row in accounted(path, "Comment", "State", "ExitCode",
                                                       "Timelimit")}  # fmt: skip
    fails, times_out = states["rule_fails"], states["rule_times_out"]
    # (The batch job exits with the code of the Snakemake that ran the rule in it: 1.)
    assert fails["State"] == "FAILED" and fails["ExitCode"] != "0:0", states
    assert (times_out["State"], times_out["Timelimit"]) == ("TIMEOUT", "00:01:00"), states
    for row in (fails, times_out):
        assert f"SLURM-job '{row['JobIDRaw']}' failed, SLURM status is: '{row['State']}'" in text
    assert "Error in rule fails" in text and "Error in rule times_out" in text
    log = path / ".snakemake/slurm_logs/rule_fails" / f"{fails['JobIDRaw']}.log"
    assert "swift-rules test: failing on purpose" in log.read_text()
    (path / "ok").touch()
    rerun = run(failing["cmd"], cwd=path, timeout=200)
    assert rerun.returncode == 0, output(rerun)[-3000:]
    assert (path / "fails.txt").exists() and (path / "times_out.txt").exists()


# --- without a cluster -------------------------------------------------------------------


class Resources(dict):
    """Snakemake's job resources as the plugin reads them: .get(name) and .name."""

    __getattr__ = dict.__getitem__


def test_stage_resources_reach_the_slurm_plugin_under_the_names_it_reads():
    """The resources swift_process declares (stages.smk), read by the plugin's own code
    that builds the sbatch call (submit_string.get_submit_command, utils.set_gres_string)."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    from swift_rules.executors import batch_resources

    stage = {"threads": 3, "mem_mb": 1500, "runtime": 7, "gpu": 1}
    declared = {"mem_mb": stage["mem_mb"], "runtime": stage["runtime"], "gpu": stage["gpu"]}
    declared.update({k: f(None) for k, f in batch_resources(lambda w: stage).items()})
    job = SimpleNamespace(resources=Resources(declared), threads=1)  # threads: cpus_per_task
    params = {"run_uuid": "u", "slurm_logfile": "l", "comment_str": "c", "account": "-A a",
              "partition": "-p p", "workdir": "/w"}  # fmt: skip
    call = get_submit_command(job, params) + set_gres_string(job)
    assert " -t 7" in call and " --mem 1500" in call and "--cpus-per-task=3" in call, call
    assert call.endswith(" --gpus=1"), call
    job.resources["gpu"] = 0  # a CPU stage: no GPU request at all
    call = get_submit_command(job, params) + set_gres_string(job)
    assert "gpu" not in call and " --ntasks=1" in call, call


def test_slurm_job_script_asks_for_what_the_config_says():
    """The worker job script dask-jobqueue writes (no job is submitted)."""
    pytest.importorskip("dask_jobqueue")
    from dask_jobqueue import SLURMCluster

    from swift_rules.backends.slurm import cluster_kwargs

    cfg = {"slurm": {"cores": 2, "memory": "3GB", "walltime": "02:00:00", "partition": "gpu",
                     "account": "physics", "gpus": 1, "job_extra_directives": ["--qos=short"],
                     "job_script_prologue": ["source /cvmfs/setup.sh"],
                     "scheduler_options": {"host": "127.0.0.1"}},
           "broker": {"address": "broker.example.org:8785",
                      "token_file": "/shared/it's.token"}}  # fmt: skip
    kwargs = cluster_kwargs(cfg)
    kwargs["scheduler_options"] = {"host": "127.0.0.1", "dashboard_address": None}  # no broker
    with SLURMCluster(**kwargs) as cluster:
        script = cluster.job_script()
    for line in ("#SBATCH -p gpu", "#SBATCH -A physics", "#SBATCH --cpus-per-task=2",
                 "#SBATCH --mem=3G", "#SBATCH -t 02:00:00", "#SBATCH --qos=short",
                 "#SBATCH --gpus=1", "source /cvmfs/setup.sh",
                 "export DASK_BROKER_TOKEN_FILE='/shared/it'\"'\"'s.token'"):  # fmt: skip
        assert line in script.splitlines(), (line, script)
    assert "--protocol broker --host broker.example.org:8785" in script


def test_pending_reasons_and_ended_jobs_are_diagnosed_in_one_line():
    from swift_rules.backends.slurm import diagnosis

    queued_ = (
        "12|PENDING|PartitionTimeLimit\n13|PENDING|JobHeldUser\n15|PENDING|QOSMaxJobsPerUser\n"
    )
    ended = "14|FAILED|127:0\n12|PENDING|0:0\n16|CANCELLED by 0|0:0\n"
    text = diagnosis(["12", "13", "14", "15", "16", "17"], queued_, ended, "dask-logs",
                     {"14": "python: not found"})  # fmt: skip
    assert text == (
        "job 12: pending (PartitionTimeLimit: executor.slurm.walltime is above the partition's "
        "time limit); job 13: pending (JobHeldUser: held by its user: `scontrol release JOBID`); "
        "job 14: failed (exit code 127:0; python: not found); "
        "job 15: pending (QOSMaxJobsPerUser: a limit of the QOS or account); "
        "job 16: cancelled; job 17: not known to squeue or sacct. "
        "The worker jobs' output and errors are in dask-logs"
    )
    assert diagnosis(["7"], "7|PENDING|Resources\n", "") == (
        "job 7: pending (Resources: waiting for a node with the requested cores, memory and "
        "GPUs free)"
    )
    assert diagnosis(["8"], "", "8|TIMEOUT|0:0\n").endswith(
        "Set executor.slurm.log_directory to keep the worker jobs' output"
    )


def test_slurm_executor_without_sbatch_is_a_clear_error(monkeypatch):
    from swift_rules.backends import ClusterError, dask_client

    monkeypatch.setenv("PATH", "/nonexistent")
    with (
        pytest.raises(ClusterError, match="sbatch, which is not on PATH"),
        dask_client({"type": "slurm"}, 2),
    ):
        pass


def test_slurm_profile_dry_run_plans_the_workflow(tmp_path):
    """The plugin accepts the profile's settings; nothing is submitted (no cluster needed)."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    proc = run(snakemake(REPO / "profiles" / "slurm", tmp_path, "--dry-run"), cwd=tmp_path,
               timeout=120)  # fmt: skip
    assert proc.returncode == 0, output(proc)[-3000:]
    assert re.search(r"^swift_process\s+9$", proc.stdout, re.MULTILINE), proc.stdout[-3000:]


def test_cancelled_state_guard_keeps_slurms_one_word_state():
    """sacct says `CANCELLED by 0`; the guarded plugin query reads CANCELLED (a failed
    state) from the same output, run through the plugin's own query function."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    import asyncio
    import logging

    import snakemake_executor_plugin_slurm as plugin

    from swift_rules.executors import guard_slurm_executor

    guard_slurm_executor()
    guard_slurm_executor()  # idempotent
    command = "printf '5|CANCELLED by 0\\n6|COMPLETED\\n7|RUNNING\\n'"
    states, _ = asyncio.run(plugin.query_job_status(f"sh -c {shlex.quote(command)}",
                                                    logging.getLogger("t")))  # fmt: skip
    assert states == {"5": "CANCELLED", "6": "COMPLETED", "7": "RUNNING"}


def test_cancel_guard_cancels_jobs_the_executor_lost_track_of(cluster, base):
    """Ctrl-C while the status thread holds the active jobs: the plugin is given none to
    cancel. The guarded cancel_jobs still cancels every job named with the run's id."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    import logging
    import uuid

    import snakemake_executor_plugin_slurm as plugin

    from swift_rules.executors import guard_slurm_executor

    guard_slurm_executor()
    path = workdir(base, "lost")
    run_uuid = str(uuid.uuid4())
    job = slurm("sbatch", "--parsable", f"--job-name={run_uuid}", "-o", "/dev/null",
                "-D", path, "--wrap", "sleep 600").strip()  # fmt: skip
    executor = SimpleNamespace(run_uuid=run_uuid, _submitted_job_clusters=set(),
                               logger=logging.getLogger("test"))  # fmt: skip
    plugin.Executor.cancel_jobs(executor, [])
    wait_until_gone(path)
    assert _final_state(job).startswith("CANCELLED")
