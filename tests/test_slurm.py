"""Slurm, for real: a one-node cluster on loopback (.ci/slurm/setup.sh), with slurmdbd, so
that ``sacct`` shows what every job asked for and how it ended.

- The reference workflow through profiles/slurm (tests/batch/slurm.py): every job a
  Slurm job, the stage jobs with the stage's cores, memory and time limit. A stage job
  cancelled on the way (``scancel``) fails its Snakemake job with Slurm's state; the
  rerun completes (and its results equal a local run's, bit for bit:
  assert_profile_run_equals_local_run).
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
machine, and fail in CI (.ci/run starts the cluster). The session shares one cluster, one
local reference run and one profile run; any job of theirs left at the end is cancelled.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from batch.slurm import (
    FAST,
    accounted,
    final_state,
    output,
    queued,
    run,
    slurm,
    snakemake,
    wait_until_gone,
    workdir,
)  # fmt: skip
from helpers import (
    PROFILE_CONFIG,
    REPO,
    assert_profile_run_equals_local_run,
    assert_same_result,
    broker_serving,
    ctrl_c_as_at_a_terminal,
    run_cli,
    stage_args,
)

pytestmark = pytest.mark.slow


def test_cancelled_job_fails_its_snakemake_job_with_slurms_state(slurm_profile_run):
    first = slurm_profile_run["first"]
    assert slurm_profile_run["cancelled"], "no swift_process job was seen running to cancel"
    assert first.returncode != 0, "the run with a cancelled job did not fail"
    text = output(first)
    job = slurm_profile_run["cancelled"][0]
    assert f"SLURM-job '{job}' failed, SLURM status is: 'CANCELLED'" in text, text[-3000:]
    assert "Error in rule swift_process" in text
    # The failed job's Slurm log is kept, under .snakemake/slurm_logs/rule_swift_process/.
    logs = list(
        (slurm_profile_run["path"] / ".snakemake/slurm_logs/rule_swift_process").rglob("*.log")
    )
    assert any(p.name == f"{job}.log" for p in logs), logs


def test_rerun_after_a_cancelled_job_completes_and_equals_a_local_run_bit_for_bit(
    slurm_profile_run,
):
    assert_profile_run_equals_local_run(slurm_profile_run)


def test_every_job_was_a_slurm_job_with_the_stage_resources(slurm_profile_run, slurm_cluster):
    rows = accounted(slurm_profile_run["path"], "Comment", "State", "AllocCPUS", "ReqMem",
                     "Timelimit", "Partition", "Account")  # fmt: skip
    rules = {re.sub(r"^rule_", "", row["Comment"]).split("_wildcards")[0] for row in rows}
    assert {"swift_process", "swift_merge_sample", "swift_merge", "agc_histograms",
            "agc_provenance"} <= rules, rules  # fmt: skip
    assert all(row["Partition"] == slurm_cluster["SWIFT_SLURM_PARTITION"] for row in rows), rows
    assert all(row["Account"] == slurm_cluster["SWIFT_SLURM_ACCOUNT"] for row in rows), rows
    stage = [row for row in rows if row["Comment"].startswith("rule_swift_process")]
    # 9 samples, one file group each; one of them cancelled in the first run, then rerun.
    assert len([row for row in stage if row["State"] == "COMPLETED"]) == 9, stage
    # stages.agc::ttbar: threads 1, mem_mb 1500, runtime 7 minutes.
    assert all((row["AllocCPUS"], row["ReqMem"], row["Timelimit"]) == ("1", "1500M", "00:07:00")
               for row in stage), stage  # fmt: skip
    # The other rules: the profile's defaults (30 minutes).
    assert all(row["Timelimit"] == "00:30:00" for row in rows if row not in stage), rows
    # The successful jobs' logs were deleted (slurm-keep-successful-logs: false).
    left = list((slurm_profile_run["path"] / ".snakemake/slurm_logs").rglob("*.log"))
    assert [p.stem for p in left] == slurm_profile_run["cancelled"], left


def test_the_submitting_snakemake_stops_the_warm_start_server_no_job_uses(slurm_profile_run):
    """Its jobs are Slurm jobs: the server it started while reading the workflow stops
    once Snakemake has picked the Slurm executor (test_warmstart.py: the server stops
    and leaves nothing behind)."""
    for proc in (slurm_profile_run["first"], slurm_profile_run["second"]):
        assert "warm start off: this run's jobs run elsewhere" in proc.stderr, output(proc)


def test_gpu_stage_job_gets_its_gpu_cores_memory_and_time(
    slurm_base, slurm_profile, slurm_profile_run
):
    """gpu: 1 becomes --gpus=1, threads: 2 --cpus-per-task=2; the node's GPU is simulated
    (its device is /dev/null), so the stage's device choice then says why it took the CPU."""
    config = json.loads(json.dumps(PROFILE_CONFIG))
    config["stages"]["agc::ttbar"].update({"gpu": 1, "threads": 2, "mem_mb": 1200, "runtime": 5})
    path = workdir(slurm_base, "gpu", config)
    shutil.copytree(slurm_profile_run["path"] / "data", path / "data")
    target = "results/agc/ttbar/partial/ttbar__nominal/group0000.pkl"
    proc = run(snakemake(slurm_profile, path, *FAST, target), cwd=path, timeout=200)
    assert proc.returncode == 0, output(proc)[-4000:]
    rows = accounted(path, "Comment", "AllocCPUS", "ReqMem", "Timelimit", "AllocTRES")
    stage = [row for row in rows if row["Comment"].startswith("rule_swift_process")]
    assert len(stage) == 1, rows
    assert (stage[0]["AllocCPUS"], stage[0]["ReqMem"], stage[0]["Timelimit"]) == (
        "2", "1200M", "00:05:00"), stage  # fmt: skip
    assert "gres/gpu=1" in stage[0]["AllocTRES"], stage
    from swift_rules.results import load_result

    run_record = path / "results/logs/agc/ttbar/ttbar__nominal/group0000.run.json"
    reason = json.loads(run_record.read_text())["device_reason"]
    assert load_result(path / target)[1]["variant"] == "cpu" and reason.startswith("auto: ")


def test_grouped_stage_jobs_run_in_one_slurm_job_warm_started(
    slurm_base, slurm_profile, slurm_local_run
):
    """Three stage jobs grouped into one batch job (``--groups``/``--group-components``):
    one Slurm job, whose Snakemake forks them from one warm-start server (each record
    says so); their results equal the local run's, bit for bit."""
    path = workdir(slurm_base, "grouped", PROFILE_CONFIG)
    shutil.copytree(slurm_local_run / "data", path / "data")
    samples = ("ttbar__nominal", "ttbar__scaledown", "wjets__nominal")
    targets = [f"results/agc/ttbar/partial/{s}/group0000.pkl" for s in samples]
    grouping = ["--groups", "swift_process=stages", "--group-components", "stages=3"]
    proc = run(snakemake(slurm_profile, path, *FAST, *targets, *grouping), cwd=path, timeout=240)
    assert proc.returncode == 0, output(proc)[-4000:]
    rows = accounted(path, "Comment", "State", "AllocCPUS")
    assert len(rows) == 1 and rows[0]["State"] == "COMPLETED", rows
    for sample, target in zip(samples, targets, strict=True):
        record = path / f"results/logs/agc/ttbar/{sample}/group0000.run.json"
        assert json.loads(record.read_text())["warm_started"] is True, record.read_text()
        assert_same_result(path / target, slurm_local_run / target)


def test_ctrl_c_cancels_the_slurm_jobs(slurm_base, slurm_profile):
    path = workdir(slurm_base, "interrupted")
    (path / "Snakefile").write_text(
        # What stages.smk does for every swift-rules workflow (see the last tests).
        "from swift_rules.executors import guard_slurm_executor\nguard_slurm_executor()\n\n"
        'rule all:\n    input: "a.txt", "b.txt"\n\n'
        'rule sleep:\n    output: "{name}.txt"\n    shell: "sleep 600; touch {output}"\n'
    )
    cmd = snakemake(slurm_profile, path, *FAST, snakefile=path / "Snakefile")
    log = slurm_base / "interrupted.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=path, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=ctrl_c_as_at_a_terminal)  # fmt: skip
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
    states = {job: final_state(job) for job in jobs}
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
    return run_cli(*stage_args(path, out, executor, workers), cwd=path, check=False)


@pytest.fixture(scope="module")
def local_dask(slurm_local_run) -> Path:
    proc = run_stage(slurm_local_run, "dask-local.pkl", {"type": "local"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return slurm_local_run / "dask-local.pkl"


def dask_workers(path: Path) -> list[dict[str, str]]:
    return [row for row in accounted(path, "JobName", "State", "ReqMem", "Timelimit")
            if row["JobName"] == "dask-worker"]  # fmt: skip


def test_stage_on_slurm_dask_workers_equals_local_dask(slurm_cluster, slurm_local_run, local_dask):
    path = slurm_local_run  # its generated data
    before = {row["JobIDRaw"] for row in dask_workers(path)}
    started = time.monotonic()
    proc = run_stage(path, "dask-slurm.pkl", DASK_ON_SLURM)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Slurm Dask cluster: tcp://127.0.0.1:" in proc.stderr
    assert_same_result(path / "dask-slurm.pkl", local_dask)
    from swift_rules.results import load_result

    assert load_result(path / "dask-slurm.pkl")[1]["stage"] == "agc::ttbar"
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


def test_stage_on_slurm_workers_through_the_broker(
    slurm_cluster, slurm_local_run, local_dask, tmp_path
):
    """Workers that could not be reached: scheduler and workers meet at the broker."""
    token = tmp_path / "broker.token"
    token.write_text("swift-rules-slurm-test-token-0123456789\n")
    token.chmod(0o600)  # (the broker refuses a token that others may read)
    with broker_serving(token, tmp_path / "broker.log") as address:
        executor = json.loads(json.dumps(DASK_ON_SLURM))
        del executor["slurm"]["scheduler_options"], executor["slurm"]["worker_extra_args"]
        executor["broker"] = {"address": address, "token_file": str(token)}
        proc = run_stage(slurm_local_run, "dask-broker.pkl", executor)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Slurm Dask cluster: broker://127.0.0.1:" in proc.stderr
    assert_same_result(slurm_local_run / "dask-broker.pkl", local_dask)
    wait_until_gone(slurm_local_run)


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
    slurm_cluster, slurm_base, slurm_local_run, slurm_settings, where, reason
):
    executor = json.loads(json.dumps(DASK_ON_SLURM))
    executor["slurm"].update(slurm_settings)
    executor["worker_timeout"] = 8
    path = workdir(slurm_base, f"never-{len(list(slurm_base.glob('never-*')))}")
    shutil.copytree(slurm_local_run / "data", path / "data")
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


def test_timed_out_and_failed_jobs_fail_with_slurms_state_and_a_rerun_completes(slurm_failing):
    path, proc = slurm_failing["path"], slurm_failing["proc"]
    proc.wait(timeout=400)  # the time limit is 1 minute, enforced every 30 s
    text = slurm_failing["log"].read_text()
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
    rerun = run(slurm_failing["cmd"], cwd=path, timeout=200)
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
                 "export DASK_BROKER_TOKEN_FILE='/shared/it'\"'\"'s.token'",
                 # the workers' nannies leave glibc's trim threshold alone
                 "export DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON="
                 "\"{'MALLOC_TRIM_THRESHOLD_': None}\""):  # fmt: skip
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


def test_slurm_profile_dry_run_plans_the_workflow(tmp_path):
    """The plugin accepts the profile's settings; nothing is submitted (no cluster needed)."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(PROFILE_CONFIG))
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


def test_cancel_guard_cancels_jobs_the_executor_lost_track_of(slurm_cluster, slurm_base):
    """Ctrl-C while the status thread holds the active jobs: the plugin is given none to
    cancel. The guarded cancel_jobs still cancels every job named with the run's id."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    import logging
    import uuid

    import snakemake_executor_plugin_slurm as plugin

    from swift_rules.executors import guard_slurm_executor

    guard_slurm_executor()
    path = workdir(slurm_base, "lost")
    run_uuid = str(uuid.uuid4())
    job = slurm("sbatch", "--parsable", f"--job-name={run_uuid}", "-o", "/dev/null",
                "-D", path, "--wrap", "sleep 600").strip()  # fmt: skip
    executor = SimpleNamespace(run_uuid=run_uuid, _submitted_job_clusters=set(),
                               logger=logging.getLogger("test"))  # fmt: skip
    plugin.Executor.cancel_jobs(executor, [])
    wait_until_gone(path)
    assert final_state(job).startswith("CANCELLED")
