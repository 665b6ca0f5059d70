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

import subprocess
from collections.abc import Mapping
from pathlib import Path

from swift_rules.backends.base import (
    BatchBackend,
    jobqueue_kwargs,
    schema_settings,
    worker_job_ids,
)  # fmt: skip


def cluster_kwargs(cfg: Mapping) -> dict:
    """Keyword arguments of ``dask_jobqueue.HTCondorCluster`` for this config."""
    s = schema_settings(cfg, "htcondor")
    job_extra = {str(k): str(v) for k, v in dict(s["job_extra"]).items()}
    if int(s["gpus"]):
        # The worker job lands on a GPU slot; HTCondor sets CUDA_VISIBLE_DEVICES, and
        # the stage's device choice (auto) then picks the GPU variant on the worker.
        job_extra.setdefault("request_gpus", str(int(s["gpus"])))
    return jobqueue_kwargs(cfg, s, disk=str(s["disk"]), job_extra_directives=job_extra)


STATES = {"1": "idle", "2": "running", "5": "held", "3": "removed", "4": "completed"}


def describe_jobs(ids: list[str], condor_q: str) -> str:
    """Why the worker jobs ``ids`` gave no worker, in one line, from the output of
    ``condor_q IDS -af ClusterId JobStatus HoldReason``: states and hold reasons."""
    lines = []
    for line in condor_q.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2:
            state = STATES.get(parts[1], f"status {parts[1]}")
            reason = parts[2] if len(parts) > 2 and parts[2] != "undefined" else ""
            lines.append(f"job {parts[0]}: {state}" + (f" ({reason})" if reason else ""))
    summary = "; ".join(lines) or f"worker jobs {', '.join(ids)} are no longer queued"
    if "idle" in summary:
        summary += (
            ". Idle jobs: the pool has no slot that matches cores/memory/disk/gpus "
            "(try `condor_q -better-analyze`)"
        )
    return summary


class HTCondorBackend(BatchBackend):
    kind, title = "htcondor", "HTCondor"
    cluster_class = "dask_jobqueue:HTCondorCluster"
    command, submit_from = "condor_submit", "on an HTCondor access point"
    giver = "the HTCondor pool"

    def cluster_kwargs(self) -> dict:
        return cluster_kwargs(self.cfg)

    def describe(self) -> str:
        return f" of {self.settings['cores']} core(s), {self.settings['memory']}"

    def diagnosis(self, cluster) -> str:
        ids = worker_job_ids(cluster)
        if not ids:
            return "no worker job was submitted"
        cmd = ["condor_q", *ids, "-af", "ClusterId", "JobStatus", "HoldReason"]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.TimeoutExpired) as err:
            return f"worker jobs {', '.join(ids)}; condor_q failed: {err}"
        return describe_jobs(ids, out)


# The executable of profiles/htcondor's jobs: see the script's comments.
JOB_WRAPPER = str(Path(__file__).with_name("htcondor-job-wrapper.sh"))
