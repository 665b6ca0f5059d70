"""Dask workers as DIRAC jobs: ``DIRACCluster``, a dask-jobqueue ``JobQueueCluster``.

``executor.type: dirac``. The stage job starts a Dask scheduler in its own process and
submits each worker as a JDL job through DiracX (``swift_rules.dirac.transport``): the
job's executable is dask-jobqueue's worker script (shipped in the input sandbox), which
connects back to the scheduler. Grid worker nodes can rarely be reached from outside,
and the scheduler must be reachable from them: with ``executor.broker`` set, scheduler
and workers meet at the connection broker (docs/broker.md); otherwise the scheduler's
port must be open to the workers (``scheduler_options: {host: ..., port: ...}``). The
sandboxes stay on the grid's storage, so they carry no long-lived secret: each stage
job makes a run token (``swift_rules.backends.broker.run_token``), good for this run's
endpoints only and for ``executor.broker.run_token_lifetime`` seconds. Scaling is adaptive between
``executor.minimum_workers`` and ``executor.maximum_workers``; if no worker has joined
``executor.worker_timeout`` seconds after the first submission, the stage job fails with
the worker jobs' DIRAC states. Closing the cluster kills its jobs.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from swift_rules.backends import ClusterError
from swift_rules.backends.base import (
    BatchBackend,
    jobqueue_kwargs,
    schema_settings,
    worker_job_ids,
)  # fmt: skip
from swift_rules.backends.broker import dask_args, run_token
from swift_rules.broker.protocol import TOKEN_FILE_ENV

WORKER_SCRIPT = "dask-worker.sh"
TOKEN_IN_SANDBOX = "dask-broker.token"


def transport(s: Mapping):
    """The DiracX transport of settings ``s`` (``executor.dirac``)."""
    from swift_rules.dirac.transport import DiracXTransport

    url = s["url"] or os.environ.get("DIRACX_URL")
    if not url:
        raise ClusterError("executor.dirac.url is not set (nor DIRACX_URL): the DiracX server")
    credentials = (
        s["credentials"]
        or os.environ.get("DIRACX_CREDENTIALS_PATH")
        or "~/.cache/diracx/credentials.json"
    )
    return DiracXTransport(str(url), credentials)


def _job_class():
    from dask_jobqueue.core import Job

    from swift_rules.dirac.jdl import job_fields

    class DIRACJob(Job):
        """One Dask worker as one DIRAC job: its script is the JDL's executable."""

        config_name = "dirac"
        submit_command = cancel_command = None  # (the transport, not commands)

        def __init__(self, scheduler=None, name=None, *, dirac=None, jdl=None, files=None,
                     secret_files=None, **kwargs):  # fmt: skip
            super().__init__(scheduler=scheduler, name=name, **kwargs)
            self.dirac, self.jdl, self.files = dirac, dict(jdl or {}), dict(files or {})
            self.secret_files = dict(secret_files or {})  # name: text, written mode 600
            self.job_header = ""

        async def start(self):
            with tempfile.TemporaryDirectory() as tmp:
                script = Path(tmp) / WORKER_SCRIPT
                script.write_text(self.job_script())
                script.chmod(0o755)
                fields = job_fields(name=self.name, executable=WORKER_SCRIPT, **self.jdl)
                files = {WORKER_SCRIPT: script, **self.files}
                for name, text in self.secret_files.items():
                    files[name] = Path(tmp) / name
                    with os.fdopen(os.open(files[name], os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                        f.write(text)
                self.job_id = await asyncio.to_thread(self.dirac.submit, fields, files)
            await super(Job, self).start()  # ProcessInterface: now running

        async def close(self):
            if self.job_id:
                from swift_rules.dirac.transport import DiracError

                try:
                    await asyncio.to_thread(self.dirac.kill, [self.job_id])
                except DiracError as err:
                    print(f"[swift-rules] could not kill DIRAC job {self.job_id}: {err}",
                          file=sys.stderr)  # fmt: skip

    return DIRACJob


def cluster_class():
    """``DIRACCluster`` (made on first use: dask-jobqueue is an optional dependency)."""
    import dask
    from dask_jobqueue.core import JobQueueCluster

    # dask-jobqueue reads every job default from its config: ours are LocalCluster's.
    defaults = {**dask.config.get("jobqueue.local"), "shebang": "#!/usr/bin/env bash"}
    dask.config.update_defaults({"jobqueue": {"dirac": defaults}})

    class DIRACCluster(JobQueueCluster):
        """Dask workers as DIRAC jobs. ``dirac``: a ``Transport``; ``jdl``: keyword
        arguments of ``swift_rules.dirac.jdl.job_fields`` (sites, tags, cpu_time...);
        ``files``: extra input-sandbox files {name: path}."""

        job_cls = _job_class()

    return DIRACCluster


def cluster_kwargs(cfg: Mapping, token: str | None = None) -> dict:
    """Keyword arguments of ``DIRACCluster`` for this config (without ``dirac``);
    ``token``: the run token that the worker jobs' sandboxes carry."""
    s = schema_settings(cfg, "dirac")
    tags = [str(t) for t in s["tags"]]
    if int(s["gpus"]) and s["gpu_tag"] not in tags:
        tags.append(str(s["gpu_tag"]))
    # executor.broker: the long-lived token stays here; the sandbox gets the run token.
    kwargs = jobqueue_kwargs(cfg, s, ship_token_file=False)
    secret_files = {}
    if token is not None:
        secret_files[TOKEN_IN_SANDBOX] = token
        kwargs["job_script_prologue"].append(f'export {TOKEN_FILE_ENV}="$PWD/{TOKEN_IN_SANDBOX}"')
    kwargs["jdl"] = {
        "sites": [str(x) for x in s["sites"]],
        "banned_sites": [str(x) for x in s["banned_sites"]],
        "cpu_time": int(s["cpu_time"]),
        "tags": tags,
        "group": s["group"],
        "cores": int(s["cores"]),
    }
    kwargs["secret_files"] = secret_files
    return kwargs


class DiracBackend(BatchBackend):
    kind, title = "dirac", "DIRAC"
    needs = "dask-jobqueue and diracx-client"
    giver = "DIRAC"

    def import_cluster_class(self) -> type:
        return cluster_class()

    def prepare(self) -> None:
        from swift_rules.dirac.transport import DiracError

        self.dirac = transport(self.settings)
        try:
            self.who = self.dirac.check()  # a bad token or a dead server: one clear error, now
        except DiracError as err:
            raise ClusterError(f"executor type 'dirac': {err}") from None

    def start(self, cluster_class: type):
        # With a broker, the workers' sandboxes carry a run token (made from the broker's
        # token, which export_token has just found), and the scheduler's endpoint id, made
        # as it starts, is the run's: its workers may reach it.
        self.run, self.token = (None, None)
        if dask_args(self.cfg).address:
            lifetime = schema_settings(self.cfg, "broker")["run_token_lifetime"]
            self.run, self.token = run_token(lifetime)
        return super().start(cluster_class)

    def dask_config(self) -> dict:
        return {"distributed.comm.broker.run": self.run}

    def cluster_kwargs(self) -> dict:
        return {"dirac": self.dirac, **cluster_kwargs(self.cfg, self.token)}

    def describe(self) -> str:
        return f" as {self.who}"

    def diagnosis(self, cluster) -> str:
        """The DIRAC states of the cluster's worker jobs."""
        from swift_rules.dirac.transport import DiracError

        ids = worker_job_ids(cluster)
        if not ids:
            return "no worker job was submitted"
        try:
            states = self.dirac.status(ids)
        except DiracError as err:
            return f"worker jobs {', '.join(ids)}; their states are unknown: {err}"
        return "; ".join(f"job {i}: {states[i].reason()}" if i in states else f"job {i}: unknown"
                         for i in ids)  # fmt: skip
