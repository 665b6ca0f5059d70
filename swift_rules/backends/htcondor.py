"""Dask workers as HTCondor jobs: dask-jobqueue's ``HTCondorCluster`` from the config.

``executor.type: htcondor``. The stage job (run by Snakemake wherever its profile puts
it) starts a Dask scheduler in its own process and submits workers to the HTCondor
pool with ``condor_submit``, so it must run where ``condor_submit`` works (an access
point). ``executor.htcondor`` says what each worker job asks for; the number of
workers adapts between ``executor.minimum_workers`` and ``executor.maximum_workers``.
If no worker has joined ``executor.worker_timeout`` seconds after the first
submission, the job fails with the pool's reason (idle or held worker jobs), and the
worker jobs are removed.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from swift_rules.backends import adaptive_limits, first_worker, quiet_http, section_settings
from swift_rules.broker import dask_args, export_token
from swift_rules.clusters import ClusterError

# executor.htcondor: what each worker job asks for, and how it is submitted.
DEFAULTS = {
    "cores": 1,
    "memory": "2GB",
    "disk": "1GB",
    "gpus": 0,
    "processes": 1,
    "job_extra": {},
    "scheduler_options": {},
    "worker_extra_args": [],
    "job_script_prologue": [],
    "log_directory": None,
    "python": None,
}


def settings(cfg: Mapping) -> dict:
    """executor.htcondor with its defaults."""
    return section_settings(cfg, "htcondor", DEFAULTS)


def cluster_kwargs(cfg: Mapping) -> dict:
    """Keyword arguments of ``dask_jobqueue.HTCondorCluster`` for this config."""
    s = settings(cfg)
    job_extra = {str(k): str(v) for k, v in dict(s["job_extra"]).items()}
    if int(s["gpus"]):
        # The worker job lands on a GPU slot; HTCondor sets CUDA_VISIBLE_DEVICES, and
        # the stage's device choice (auto) then picks the GPU variant on the worker.
        job_extra.setdefault("request_gpus", str(int(s["gpus"])))
    kwargs = {
        "cores": int(s["cores"]),
        "memory": str(s["memory"]),
        "disk": str(s["disk"]),
        "processes": int(s["processes"]),
        "job_extra_directives": job_extra,
        "scheduler_options": dict(s["scheduler_options"]),
        "worker_extra_args": [str(a) for a in s["worker_extra_args"]],
        "job_script_prologue": [str(line) for line in s["job_script_prologue"]],
        "python": s["python"] or sys.executable,
    }
    if s["log_directory"]:
        kwargs["log_directory"] = str(s["log_directory"])
    # executor.broker: scheduler and workers register at the broker (docs/broker.md).
    broker = dask_args(cfg)
    kwargs["scheduler_options"].update(broker.scheduler_options)
    kwargs["scheduler_options"], _ = quiet_http(kwargs["scheduler_options"])
    kwargs["worker_extra_args"] += broker.worker_args
    kwargs["job_script_prologue"] += [f"export {k}={shlex.quote(v)}" for k, v in broker.env.items()]
    return kwargs


def _pool_diagnosis(cluster) -> str:
    """What the pool says about the worker jobs: states and hold reasons."""
    ids = sorted({str(job.job_id) for job in getattr(cluster, "workers", {}).values()
                  if getattr(job, "job_id", None)})  # fmt: skip
    if not ids:
        return "no worker job was submitted"
    cmd = ["condor_q", *ids, "-af", "ClusterId", "JobStatus", "HoldReason"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"worker jobs {', '.join(ids)}; condor_q failed: {err}"
    names = {"1": "idle", "2": "running", "5": "held", "3": "removed", "4": "completed"}
    lines = []
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2:
            state = names.get(parts[1], f"status {parts[1]}")
            reason = parts[2] if len(parts) > 2 and parts[2] != "undefined" else ""
            lines.append(f"job {parts[0]}: {state}" + (f" ({reason})" if reason else ""))
    summary = "; ".join(lines) or f"worker jobs {', '.join(ids)} are no longer queued"
    if "idle" in summary:
        summary += (
            ". Idle jobs: the pool has no slot that matches cores/memory/disk/gpus "
            "(try `condor_q -better-analyze`)"
        )
    return summary


def client(cfg: Mapping, workers: int):
    """A ``distributed.Client`` of an adaptive HTCondorCluster with at least one worker."""
    if shutil.which("condor_submit") is None:
        raise ClusterError(
            "executor type 'htcondor' submits Dask workers with condor_submit, which is not "
            "on PATH here: run the stage job on an HTCondor access point "
            "(or use profiles/htcondor, which runs the jobs themselves as HTCondor jobs)"
        )
    import dask

    try:
        from dask_jobqueue import HTCondorCluster
    except ImportError as err:
        raise ClusterError(
            f"executor type 'htcondor' needs dask-jobqueue: pip install 'swift-rules[htcondor]' "
            f"({err})"
        ) from err

    s = settings(cfg)
    minimum, maximum, timeout = adaptive_limits(cfg, workers)
    export_token(cfg)
    _, http = quiet_http(s["scheduler_options"])  # (the scheduler reads it as it starts)
    try:
        with dask.config.set(http):
            cluster = HTCondorCluster(**cluster_kwargs(cfg))
    except Exception as err:
        raise ClusterError(f"cannot start the HTCondor Dask cluster: {err}") from err
    try:
        cluster.adapt(minimum=minimum, maximum=maximum)
        # adapt() submits only when there is work or a minimum: ask for one worker now,
        # so that the wait below is bounded even with minimum_workers: 0.
        if minimum == 0:
            cluster.scale(1)
    except BaseException:
        cluster.close()
        raise
    return first_worker(
        cluster,
        timeout,
        f"HTCondor Dask cluster: {cluster.scheduler_address}, {minimum}-{maximum} worker "
        f"job(s) of {s['cores']} core(s), {s['memory']}",
        "the HTCondor pool",
        lambda: _pool_diagnosis(cluster),
    )


# The executable of profiles/htcondor's jobs: see the script's comments.
JOB_WRAPPER = str(Path(__file__).with_name("htcondor-job-wrapper.sh"))
