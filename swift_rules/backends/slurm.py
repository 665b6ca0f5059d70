"""Dask workers as Slurm jobs: dask-jobqueue's ``SLURMCluster`` from the config.

``executor.type: slurm``. The stage job (run by Snakemake wherever its profile puts it)
starts a Dask scheduler in its own process and submits workers with ``sbatch``, so it
must run where ``sbatch`` works (a login node, or inside a Slurm job on sites that allow
submitting from jobs). ``executor.slurm`` says what each worker job asks for (defaults:
the config schema); the number of workers adapts between ``executor.minimum_workers``
and ``executor.maximum_workers``. If no worker has joined ``executor.worker_timeout``
seconds after the first submission, the stage job fails with Slurm's reason (the
pending reason ``squeue`` gives, the state and exit code of a job that ended, or why
``sbatch`` refused the job), and the worker jobs are cancelled.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

from swift_rules.backends.base import (
    BatchBackend,
    jobqueue_kwargs,
    schema_settings,
    worker_job_ids,
)  # fmt: skip

# What the common pending reasons (squeue %r) mean for a Dask worker job.
PENDING_REASONS = {
    "Resources": "waiting for a node with the requested cores, memory and GPUs free",
    "Priority": "other jobs of higher priority come first",
    "PartitionTimeLimit": "executor.slurm.walltime is above the partition's time limit",
    "PartitionNodeLimit": "the request is outside the partition's node limits",
    "PartitionConfig": "the request does not fit the partition (cores, memory, GPUs)",
    "PartitionDown": "the partition is down",
    "PartitionInactive": "the partition is inactive",
    "ReqNodeNotAvail": "the nodes it needs are down, drained or reserved",
    "BadConstraints": "no node has the requested features",
    "JobHeldUser": "held by its user: `scontrol release JOBID`",
    "JobHeldAdmin": "held by an administrator",
    "InvalidAccount": "executor.slurm.account is not valid for this user",
    "InvalidQOS": "the QOS is not valid for this user or partition",
}


def cluster_kwargs(cfg: Mapping) -> dict:
    """Keyword arguments of ``dask_jobqueue.SLURMCluster`` for this config."""
    s = schema_settings(cfg, "slurm")
    directives = [str(d) for d in s["job_extra_directives"]]
    if int(s["gpus"]) and not any(d.startswith(("--gpus", "--gres")) for d in directives):
        # Slurm sets CUDA_VISIBLE_DEVICES in the job, and the stage's device choice
        # (auto) then picks the GPU variant on the worker.
        directives.append(f"--gpus={int(s['gpus'])}")
    return jobqueue_kwargs(
        cfg, s, walltime=str(s["walltime"]), queue=s["partition"], account=s["account"],
        job_extra_directives=directives,
    )  # fmt: skip


# --- why no worker came: pure functions over squeue's and sacct's output -----------------


def parse_rows(text: str, fields: int) -> list[list[str]]:
    """Lines of ``|``-separated values (squeue -o '%i|%T|%r', sacct --parsable2), each
    padded or cut to ``fields`` values; blank lines skipped."""
    rows = []
    for line in text.splitlines():
        if line.strip():
            values = [v.strip() for v in line.split("|", fields - 1)]
            rows.append((values + [""] * fields)[:fields])
    return rows


def describe_queued(job: str, state: str, reason: str) -> str:
    """One worker job that ``squeue`` still shows: its state and pending reason."""
    text = f"job {job}: {state.lower()}"
    if reason and reason not in ("None", "(null)"):
        meaning = PENDING_REASONS.get(reason)
        if meaning is None and reason.startswith(("QOS", "Assoc")):
            meaning = "a limit of the QOS or account"
        text += f" ({reason}: {meaning})" if meaning else f" ({reason})"
    return text


def describe_ended(job: str, state: str, exit_code: str, last_error: str = "") -> str:
    """One worker job that has left the queue, from ``sacct``: its state and exit code,
    and the last line of its error file when there is one."""
    text = f"job {job}: {state.split()[0].lower()}" if state else f"job {job}: unknown"
    details = [f"exit code {exit_code}"] if exit_code and exit_code != "0:0" else []
    details += [last_error] if last_error else []
    return text + (f" ({'; '.join(details)})" if details else "")


ENDED_BADLY = ("failed", "cancelled", "timeout", "out_of_memory", "node_fail", "boot_fail")


def diagnosis(
    ids: list[str],
    queued: str,
    ended: str,
    log_directory: str | None = None,
    last_errors: Mapping[str, str] | None = None,
) -> str:
    """Why the worker jobs ``ids`` gave no worker, in one line, from the output of
    ``squeue -h -o '%i|%T|%r'`` (``queued``) and ``sacct -X -n -P -o JobIDRaw,State,ExitCode``
    (``ended``); ``last_errors``: the last line of each job's error file."""
    last_errors = last_errors or {}
    seen = {}
    for job, state, reason in parse_rows(queued, 3):
        seen[job] = describe_queued(job, state, reason)
    for job, state, exit_code in parse_rows(ended, 3):
        seen.setdefault(job, describe_ended(job, state, exit_code, last_errors.get(job, "")))
    parts = [seen.get(job, f"job {job}: not known to squeue or sacct") for job in ids]
    text = "; ".join(parts)
    if any(p.split(": ", 1)[1].startswith(ENDED_BADLY) for p in parts):
        text += (
            f". The worker jobs' output and errors are in {log_directory}"
            if log_directory
            else ". Set executor.slurm.log_directory to keep the worker jobs' output"
        )
    return text


def _run(cmd: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=30)


def _cluster_diagnosis(cluster, log_directory: str | None) -> str:
    """What Slurm says about the cluster's worker jobs (or, if none was submitted, why
    sbatch would refuse one)."""
    ids = worker_job_ids(cluster, key=lambda j: (len(j), j))
    try:
        if not ids:
            test = _run(["sbatch", "--test-only"], stdin=cluster.job_script())
            why = (test.stderr or test.stdout).strip().splitlines() or ["(no output)"]
            return f"no worker job was submitted; sbatch --test-only: {why[-1]}"
        queued = _run(["squeue", "-h", "-j", ",".join(ids), "-o", "%i|%T|%r"]).stdout
        ended = _run(["sacct", "-X", "-n", "-P", "-j", ",".join(ids),
                      "-o", "JobIDRaw,State,ExitCode"]).stdout  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"worker jobs {', '.join(ids) or '(none)'}; asking Slurm failed: {err}"
    last_errors = {}
    for job in ids if log_directory else ():
        # dask-jobqueue's file name: #SBATCH -e LOG_DIRECTORY/JOB_NAME-%J.err
        err = Path(log_directory) / f"{cluster.job_name or 'worker'}-{job}.err"
        lines = err.read_text(errors="replace").strip().splitlines() if err.is_file() else []
        if lines:
            last_errors[job] = lines[-1].strip()[-300:]
    return diagnosis(ids, queued, ended, log_directory, last_errors)


class SlurmBackend(BatchBackend):
    kind, title = "slurm", "Slurm"
    cluster_class = "dask_jobqueue:SLURMCluster"
    command, submit_from = "sbatch", "where sbatch works"

    @property
    def where(self) -> str:
        partition = self.settings["partition"]
        return f"partition {partition}" if partition else "the default partition"

    @property
    def giver(self) -> str:
        return f"Slurm ({self.where})"

    def cluster_kwargs(self) -> dict:
        return cluster_kwargs(self.cfg)

    def describe(self) -> str:
        s = self.settings
        return f" of {s['cores']} core(s), {s['memory']}, {s['walltime']} in {self.where}"

    def diagnosis(self, cluster) -> str:
        return _cluster_diagnosis(cluster, self.settings["log_directory"])
