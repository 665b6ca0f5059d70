"""HTCondor, for real: a personal pool on 127.0.0.1 (.ci/htcondor/setup.sh).

- The reference workflow through profiles/htcondor (tests/batch/htcondor.py): every job
  an HTCondor job. A job held on the way fails its Snakemake job with the hold reason in
  the log; the rerun completes (and its results equal a local run's, bit for bit:
  assert_profile_run_equals_local_run).
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
import time

import pytest
import yaml
from batch.htcondor import HOLD_REASON, SNAKEFILE, condor, history, in_pool, snakemake_cmd, workdir
from helpers import (
    PROFILE_CONFIG,
    REPO,
    assert_profile_run_equals_local_run,
    assert_same_result,
    load_result,
    snakemake_exe,
    stage_args,
)

pytestmark = pytest.mark.slow


def test_held_job_fails_the_snakemake_job_with_its_reason(htcondor_profile_run):
    first = htcondor_profile_run["first"]
    assert htcondor_profile_run["held"], "no swift_process job was seen in the queue to hold"
    assert first.returncode != 0, "the run with a held job did not fail"
    text = first.stdout + first.stderr
    assert HOLD_REASON in text and "is held" in text, text[-3000:]
    assert "Error in rule swift_process" in text
    logs = sorted((htcondor_profile_run["path"] / ".snakemake" / "log").glob("*.snakemake.log"))
    assert logs and HOLD_REASON in logs[0].read_text()


def test_rerun_after_a_held_job_completes_and_equals_a_local_run_bit_for_bit(
    htcondor_profile_run,
):
    assert_profile_run_equals_local_run(htcondor_profile_run)
    # Its jobs are HTCondor jobs: the warm-start server it started while reading the
    # workflow stopped once Snakemake had picked the executor.
    second = htcondor_profile_run["second"]
    assert "warm start off: this run's jobs run elsewhere" in second.stderr, second.stderr[-3000:]


def test_every_job_was_an_htcondor_job_with_the_stage_resources(htcondor_profile_run):
    path = htcondor_profile_run["path"]
    rows = history(f'Iwd == "{path}"', "JobBatchName", "RequestMemory", "RequestCpus",
                   "RequestGpus", "MaxRuntime")  # fmt: skip
    rules = {row[0].rsplit("-", 1)[0] for row in rows}
    # (The inputs are the local run's: no generator jobs.)
    assert {"swift_process", "swift_merge_sample", "swift_merge", "agc_histograms"} <= rules, rules
    stage_jobs = [row for row in rows if row[0].startswith("swift_process")]
    # stages.agc::ttbar: mem_mb 1500, runtime 7 minutes, gpu 0, threads 1.
    assert all(row[1:] == ["1500", "1", "0", "420"] for row in stage_jobs), stage_jobs


def test_gpu_stage_job_lands_on_a_gpu_slot(htcondor_pool, htcondor_profile_run):
    """gpu: 1 becomes request_gpus = 1; the pool's simulated GPU slot takes the job
    and assigns it a GPU. (No real GPU: the stage's device choice then says why.)"""
    source = htcondor_profile_run["path"]
    config = yaml.safe_load(yaml.safe_dump(PROFILE_CONFIG))
    config["stages"]["agc::ttbar"]["gpu"] = 1
    path = workdir(htcondor_pool, "gpu", config)
    in_pool("cp", "-r", "--preserve=timestamps", source / "data", path / "data", cwd=path)
    target = "results/agc/ttbar/partial/ttbar__nominal/group0000.pkl"
    cmd = snakemake_cmd("htcondor", path, "--seconds-between-status-checks", "1", target)
    proc = in_pool(*cmd, cwd=path, timeout=200, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    rows = history(f'Iwd == "{path}"', "RequestGpus", "AssignedGPUs")
    assert rows and rows[0][0] == "1", rows
    assert rows[0][1].startswith("GPU-"), rows  # the slot's (simulated) GPU
    # The slot's GPU is simulated: the probe finds no usable device, auto takes the CPU.
    run_record = path / "results/logs/agc/ttbar/ttbar__nominal/group0000.run.json"
    reason = json.loads(run_record.read_text())["device_reason"]
    assert load_result(path / target)[1]["variant"] == "cpu" and reason.startswith("auto: ")
    shutil.rmtree(path, ignore_errors=True)


def test_grouped_stage_jobs_run_in_one_htcondor_job_warm_started(htcondor_pool, htcondor_local_run):
    """Three stage jobs grouped into one batch job (``--groups``/``--group-components``):
    one HTCondor job, whose Snakemake forks them from one warm-start server (each record
    says so); their results equal the local run's, bit for bit."""
    path = workdir(htcondor_pool, "grouped", PROFILE_CONFIG)
    source = htcondor_local_run / "data"
    in_pool("cp", "-r", "--preserve=timestamps", source, path / "data", cwd=path)
    samples = ("ttbar__nominal", "ttbar__scaledown", "wjets__nominal")
    targets = [f"results/agc/ttbar/partial/{s}/group0000.pkl" for s in samples]
    grouping = ["--groups", "swift_process=stages", "--group-components", "stages=3"]
    cmd = snakemake_cmd("htcondor", path, "--seconds-between-status-checks", "1", *targets,
                        *grouping)  # fmt: skip
    proc = in_pool(*cmd, cwd=path, timeout=240, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    rows = history(f'Iwd == "{path}"', "JobBatchName")
    assert len(rows) == 1, rows
    for sample, target in zip(samples, targets, strict=True):
        record = path / f"results/logs/agc/ttbar/{sample}/group0000.run.json"
        assert json.loads(record.read_text())["warm_started"] is True, record.read_text()
        assert_same_result(path / target, htcondor_local_run / target)
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


def run_stage(path, out: str, executor: dict, workers: int, timeout=300, check=True):
    args = stage_args(path, out, executor, workers)
    return in_pool("swift-rules", *args, cwd=path, timeout=timeout, check=check)


def test_stage_on_dask_workers_in_the_pool_equals_local_dask(htcondor_local_run):
    path = htcondor_local_run  # its generated data
    started = time.monotonic()
    proc = run_stage(path, "dask-htcondor.pkl", DASK_ON_POOL, workers=2)
    elapsed = time.monotonic() - started
    assert "HTCondor Dask cluster: tcp://127.0.0.1:" in proc.stderr
    run_stage(path, "dask-local.pkl", {"type": "local"}, workers=2)
    assert_same_result(path / "dask-htcondor.pkl", path / "dask-local.pkl")

    assert load_result(path / "dask-htcondor.pkl")[1]["stage"] == "agc::ttbar"
    # The workers were HTCondor jobs (dask-jobqueue names them), and are gone now.
    workers = history(f'Iwd == "{path}" && regexp("^HTCondorCluster", JobBatchName)',
                      "ClusterId", "RequestMemory")  # fmt: skip
    assert workers and all(row[1] == "953" for row in workers), workers  # 1GB (10^9 B)
    assert not condor("condor_q", "-constraint", f'Iwd == "{path}"', "-af", "ClusterId")
    assert elapsed < 120


def test_pool_that_never_gives_workers_fails_after_worker_timeout(htcondor_local_run):
    local_run = htcondor_local_run
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
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(PROFILE_CONFIG))
    started = time.monotonic()
    proc = subprocess.run(
        snakemake_cmd("htcondor", tmp_path), cwd=tmp_path, capture_output=True, text=True,
        timeout=120, env={**os.environ, "CONDOR_CONFIG": "/dev/null"},
    )  # fmt: skip
    assert proc.returncode != 0
    assert "Unable to locate local daemon" in proc.stdout + proc.stderr
    assert time.monotonic() - started < 120
