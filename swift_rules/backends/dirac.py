"""Dask workers as DIRAC jobs: ``DIRACCluster``, a dask-jobqueue ``JobQueueCluster``.

``executor.type: dirac``. The stage job starts a Dask scheduler in its own process and
submits each worker as a JDL job through DiracX (``swift_rules.dirac.transport``): the
job's executable is dask-jobqueue's worker script (shipped in the input sandbox), which
connects back to the scheduler. Grid worker nodes can rarely be reached from outside,
and the scheduler must be reachable from them: with ``executor.broker`` set, scheduler
and workers meet at the connection broker (docs/broker.md); otherwise the scheduler's
port must be open to the workers (``scheduler_options: {host: ..., port: ...}``). The
sandboxes stay on the grid's storage, so they carry no long-lived secret: each stage
job makes a run token (``swift_rules.broker.protocol.run_token``), good for this run's
endpoints only and for ``executor.broker.run_token_lifetime`` seconds. Scaling is adaptive between
``executor.minimum_workers`` and ``executor.maximum_workers``; if no worker has joined
``executor.worker_timeout`` seconds after the first submission, the stage job fails with
the worker jobs' DIRAC states. Closing the cluster kills its jobs.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shlex
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from swift_rules.backends import adaptive_limits, first_worker, quiet_http, section_settings
from swift_rules.clusters import ClusterError

# executor.dirac: where the worker jobs go and what they ask for.
DEFAULTS = {
    "url": None,
    "credentials": None,
    "group": None,
    "sites": [],
    "banned_sites": [],
    "tags": [],
    "gpus": 0,
    "gpu_tag": "GPU",
    "cpu_time": 86400,
    "cores": 1,
    "memory": "2GB",
    "processes": 1,
    "python": "python3",
    "scheduler_options": {},
    "worker_extra_args": [],
    "job_script_prologue": [],
}
WORKER_SCRIPT = "dask-worker.sh"
TOKEN_IN_SANDBOX = "dask-broker.token"
RUN_TOKEN_LIFETIME_S = 2 * 86400  # executor.broker.run_token_lifetime's default


def settings(cfg: Mapping) -> dict:
    """executor.dirac with its defaults."""
    return section_settings(cfg, "dirac", DEFAULTS)


def transport(s: Mapping):
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


def run_token(cfg: Mapping) -> tuple[str, str]:
    """(run name, run token) for one stage job's workers, from the broker's long-lived
    token (``executor.broker.token_file``, or $DASK_BROKER_TOKEN here)."""
    from swift_rules.broker import protocol

    try:
        credential = protocol.credential(protocol.read_token())
    except ValueError as err:
        raise ClusterError(f"executor.broker: {err}") from None
    if credential.run is not None:
        raise ClusterError(
            "executor.broker: the broker token here is a run token; a stage job needs the "
            "long-lived token to make one for its workers"
        )
    lifetime = (cfg.get("broker") or {}).get("run_token_lifetime") or RUN_TOKEN_LIFETIME_S
    run = f"run-{secrets.token_hex(6)}"
    return run, protocol.run_token(credential.key, run, float(lifetime))


def cluster_kwargs(cfg: Mapping, token: str | None = None) -> dict:
    """Keyword arguments of ``DIRACCluster`` for this config (without ``dirac``);
    ``token``: the run token that the worker jobs' sandboxes carry."""
    from swift_rules.broker import dask_args
    from swift_rules.broker.protocol import TOKEN_FILE_ENV

    s = settings(cfg)
    tags = [str(t) for t in s["tags"]]
    if int(s["gpus"]) and s["gpu_tag"] not in tags:
        tags.append(str(s["gpu_tag"]))
    prologue = [str(line) for line in s["job_script_prologue"]]
    secret_files = {}
    # executor.broker: scheduler and workers register at the broker (docs/broker.md).
    # The long-lived token stays here; the sandbox gets the run token.
    broker = dask_args(cfg)
    for key, value in broker.env.items():
        if key != TOKEN_FILE_ENV:
            prologue.append(f"export {key}={shlex.quote(value)}")
    if token is not None:
        secret_files[TOKEN_IN_SANDBOX] = token
        prologue.append(f'export {TOKEN_FILE_ENV}="$PWD/{TOKEN_IN_SANDBOX}"')
    return {
        "cores": int(s["cores"]),
        "memory": str(s["memory"]),
        "processes": int(s["processes"]),
        "python": str(s["python"]),
        "scheduler_options": quiet_http({**s["scheduler_options"], **broker.scheduler_options})[0],
        "worker_extra_args": [str(a) for a in s["worker_extra_args"]] + broker.worker_args,
        "job_script_prologue": prologue,
        "jdl": {
            "sites": [str(x) for x in s["sites"]],
            "banned_sites": [str(x) for x in s["banned_sites"]],
            "cpu_time": int(s["cpu_time"]),
            "tags": tags,
            "group": s["group"],
            "cores": int(s["cores"]),
        },
        "secret_files": secret_files,
    }


def _diagnosis(cluster, dirac) -> str:
    """The DIRAC states of the cluster's worker jobs."""
    from swift_rules.dirac.transport import DiracError

    ids = sorted({str(j.job_id) for j in cluster.workers.values() if getattr(j, "job_id", None)})
    if not ids:
        return "no worker job was submitted"
    try:
        states = dirac.status(ids)
    except DiracError as err:
        return f"worker jobs {', '.join(ids)}; their states are unknown: {err}"
    return "; ".join(f"job {i}: {states[i].reason()}" if i in states else f"job {i}: unknown"
                     for i in ids)  # fmt: skip


def client(cfg: Mapping, workers: int):
    """A ``distributed.Client`` of an adaptive DIRACCluster with at least one worker."""
    try:
        DIRACCluster = cluster_class()
    except ImportError as err:
        raise ClusterError(
            f"executor type 'dirac' needs dask-jobqueue and diracx-client: "
            f"pip install 'swift-rules[dirac]' ({err})"
        ) from err
    import dask

    from swift_rules.broker import dask_args, export_token
    from swift_rules.dirac.transport import DiracError

    s = settings(cfg)
    minimum, maximum, timeout = adaptive_limits(cfg, workers)
    dirac = transport(s)
    try:
        who = dirac.check()  # a bad token or a dead server: one clear error, now
    except DiracError as err:
        raise ClusterError(f"executor type 'dirac': {err}") from None
    export_token(cfg)
    run, token = run_token(cfg) if dask_args(cfg).address else (None, None)
    try:
        # The scheduler's endpoint id, made now, is the run's: its workers may reach it.
        _, http = quiet_http(s["scheduler_options"])
        with dask.config.set({"distributed.comm.broker.run": run, **http}):
            cluster = DIRACCluster(dirac=dirac, **cluster_kwargs(cfg, token))
    except Exception as err:
        raise ClusterError(f"cannot start the DIRAC Dask cluster: {err}") from err
    try:
        cluster.adapt(minimum=minimum, maximum=maximum)
        if minimum == 0:  # (adapt() alone submits nothing until there is work)
            cluster.scale(1)
    except BaseException:
        cluster.close()
        raise
    return first_worker(
        cluster,
        timeout,
        f"DIRAC Dask cluster: {cluster.scheduler_address}, {minimum}-{maximum} worker job(s) "
        f"as {who}",
        "DIRAC",
        lambda: _diagnosis(cluster, dirac),
    )
