"""What the backends share: the ``Backend`` interface, and the one body of the batch
backends (``BatchBackend``), whose workers are batch jobs or pods.

``BatchBackend.client()`` is that body, written once: the batch system's command on
``PATH``, the optional package or a clear error naming the extra to install, the
settings (``executor.<kind>``, checked against the config schema, with the schema's
defaults: the one place where they are written), the adaptive limits, the broker's
token for the scheduler and client in this process, the cluster started with its
scheduler's HTTP pages on loopback and ``/health`` only, adaptive scaling, and the wait
for the first worker, which past ``executor.worker_timeout`` fails with what the batch
system says about the worker jobs. On any failure the cluster is closed, so that no
worker job outlives the stage job.

A backend says only what is its own, as dask-jobqueue's ``HTCondorJob`` does: a few
attributes (``kind``, ``title``, ``cluster_class``, ``command``...) and methods
(``cluster_kwargs``, ``describe``, ``diagnosis``, and where it differs, ``prepare``,
``start`` or ``scale``).
"""

from __future__ import annotations

import importlib
import shlex
import shutil
import sys
from collections.abc import Callable, Mapping

from swift_rules.backends import ClusterError
from swift_rules.backends.broker import dask_args, export_token
from swift_rules.broker.protocol import TOKEN_FILE_ENV

# The scheduler's and workers' HTTP servers (plain HTTP, no authentication) serve only
# /health unless a dashboard is asked for: no worker logs, task names or metrics for
# other users of the machine.
HTTP_HEALTH_ONLY = {
    "distributed.scheduler.http.routes": ["distributed.http.health"],
    "distributed.worker.http.routes": ["distributed.http.health"],
}


# A Dask nanny sets MALLOC_TRIM_THRESHOLD_=65536 for its worker: glibc then hands freed
# memory back to the kernel after every chunk, and the next chunk faults it in again; a
# worker ran the reference stage at 0.58 of one process's rate so, at 0.99 without it
# (benchmarks/dask_scaling.py). Our workers keep glibc's own (adaptive) threshold.
KEEP_GLIBC_TRIM = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
# The same for worker jobs, whose nannies read their Dask settings from the environment.
KEEP_GLIBC_TRIM_ENV = (
    "export DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON=\"{'MALLOC_TRIM_THRESHOLD_': None}\""
)


# A scheduler that queues root tasks (Dask's default) hands the next chunk to whichever
# worker is free, so two workers take turns through every file: each opens every file and
# decompresses the baskets at every chunk boundary twice. Without queuing it gives each
# worker a run of consecutive chunks (co-assignment; stealing still balances the end):
# on 2 workers, 0.76 of the CPU per pass (benchmarks/dask_scaling.py). For a cluster whose
# workers are all there at the start: adaptive ones, whose workers come later, keep the
# queue, from which a worker that joins takes work at once.
CONSECUTIVE_CHUNKS = {"distributed.scheduler.worker-saturation": "inf"}


def quiet_http(scheduler_options: Mapping) -> tuple[dict, dict]:
    """(scheduler options, Dask config to start the scheduler under) without its HTTP
    pages for all: dask-jobqueue's scheduler serves them (worker logs, task names;
    plain HTTP, no authentication) on port 8787 of every interface, on a shared access
    point to everyone. Unless a dashboard is asked for: loopback, and /health only."""
    if "dashboard_address" in scheduler_options:
        return dict(scheduler_options), {}
    return {**scheduler_options, "dashboard_address": "127.0.0.1:0"}, dict(HTTP_HEALTH_ONLY)


def schema_settings(cfg: Mapping, section: str) -> dict:
    """``executor.<section>`` checked against the config schema, with the schema's
    defaults: the one place where they are written. A bad key or value is an error
    naming it."""
    from swift_rules.config import ConfigError, validate_config

    given = {"executor": {section: dict(cfg.get(section) or {})}}
    try:
        return validate_config(given, source=f"executor.{section}")["executor"][section]
    except ConfigError as err:
        raise ClusterError("; ".join(line.strip() for line in str(err).splitlines())) from None


def adaptive_limits(cfg: Mapping, workers: int) -> tuple[int, int, float]:
    """(minimum, maximum, worker_timeout) of the executor section, shared by the
    batch-system backends. maximum_workers null: the stage's ``threads``."""
    minimum = int(cfg.get("minimum_workers") if cfg.get("minimum_workers") is not None else 1)
    maximum = cfg.get("maximum_workers")
    maximum = max(int(workers), 1) if maximum is None else int(maximum)
    if not 0 <= minimum <= maximum or maximum < 1:
        raise ClusterError(
            "executor: need 0 <= minimum_workers <= maximum_workers and maximum_workers >= 1 "
            f"(got {minimum} and {maximum})"
        )
    timeout = cfg.get("worker_timeout")
    return minimum, maximum, float(300 if timeout is None else timeout)


def jobqueue_kwargs(cfg: Mapping, s: Mapping, ship_token_file: bool = True, **own) -> dict:
    """Keyword arguments of a dask-jobqueue cluster that every batch backend's settings
    ``s`` have (cores, memory, processes, the scheduler's options, the worker's arguments
    and prologue, its Python, the log folder), with ``own`` (the backend's) and
    ``executor.broker`` merged in: scheduler and workers register at the broker
    (docs/broker.md), and the worker jobs' prologue exports where its token file is
    (``ship_token_file``; DIRAC's sandboxes carry a run token instead)."""
    kwargs = {
        "cores": int(s["cores"]),
        "memory": str(s["memory"]),
        "processes": int(s["processes"]),
        **own,
        "scheduler_options": dict(s["scheduler_options"]),
        "worker_extra_args": [str(a) for a in s["worker_extra_args"]],
        "job_script_prologue": [KEEP_GLIBC_TRIM_ENV, *(str(x) for x in s["job_script_prologue"])],
        "python": s["python"] or sys.executable,
    }
    if s.get("log_directory"):
        kwargs["log_directory"] = str(s["log_directory"])
    broker = dask_args(cfg)
    kwargs["scheduler_options"].update(broker.scheduler_options)
    kwargs["scheduler_options"], _ = quiet_http(kwargs["scheduler_options"])
    kwargs["worker_extra_args"] += broker.worker_args
    kwargs["job_script_prologue"] += [
        f"export {k}={shlex.quote(v)}"
        for k, v in broker.env.items()
        if ship_token_file or k != TOKEN_FILE_ENV
    ]
    return kwargs


def worker_job_ids(cluster, key: Callable | None = None) -> list[str]:
    """The batch ids of a dask-jobqueue cluster's worker jobs (submitted ones only)."""
    ids = {str(job.job_id) for job in getattr(cluster, "workers", {}).values()
           if getattr(job, "job_id", None)}  # fmt: skip
    return sorted(ids, key=key)


def first_worker(cluster, timeout: float, banner: str, giver: str, diagnosis: Callable[[], str]):
    """A ``distributed.Client`` of an (adaptive, already scaled) batch ``cluster`` once its
    first worker has joined.

    Past ``timeout`` seconds, a ClusterError says that ``giver`` gave no worker, and why
    (``diagnosis()``). The cluster is closed on any failure, so that no worker job
    outlives the stage job.
    """
    from distributed import Client

    try:
        dask_client = Client(cluster)
        print(f"[swift-rules] {banner}; waiting up to {timeout:g} s for the first",
              file=sys.stderr, flush=True)  # fmt: skip
        try:
            dask_client.wait_for_workers(1, timeout=timeout)
        except (TimeoutError, OSError) as err:
            why = diagnosis()
            dask_client.close()
            raise ClusterError(
                f"{giver} gave no Dask worker within {timeout:g} s (executor.worker_timeout): {why}"
            ) from err
        return dask_client
    except BaseException:
        cluster.close()
        raise


class Backend:
    """One kind of Dask cluster (``executor.type``): how a stage job gets its client,
    and lets go of it."""

    def __init__(self, cfg: Mapping, workers: int):
        self.cfg, self.workers = cfg, workers

    def client(self):
        raise NotImplementedError

    def close(self, client) -> None:
        """The client, then the cluster that it was made for."""
        cluster = getattr(client, "cluster", None)
        client.close()
        if cluster is not None:
            cluster.close()


class BatchBackend(Backend):
    """Dask workers as batch jobs (or pods), adaptive between ``executor.minimum_workers``
    and ``executor.maximum_workers``; the client is given once the first worker joined."""

    kind = ""  # executor.type, and its settings' section executor.<kind>
    title = ""  # the batch system in messages: "HTCondor"
    cluster_class = ""  # "module:Class", the Dask cluster (an optional package)
    needs = "dask-jobqueue"  # what that package is called in the error without it
    command: str | None = None  # submits the workers: must be on PATH here
    submit_from = ""  # where to run the stage job instead, when it is not
    giver = ""  # who gave no worker, in the time-out error: "the HTCondor pool"
    # The scheduler runs in the stage job (dask-jobqueue): its HTTP pages are quieted, and
    # it (and the client) read the broker's token here.
    local_scheduler = True

    def client(self):
        """A ``distributed.Client`` of the cluster once it has a worker."""
        self.check_here()
        cluster_class = self.load_cluster_class()
        self.settings = schema_settings(self.cfg, self.kind)
        self.minimum, self.maximum, self.timeout = adaptive_limits(self.cfg, self.workers)
        self.prepare()
        if self.local_scheduler:
            export_token(self.cfg)
        cluster = self.start(cluster_class)
        try:
            self.scale(cluster)
        except BaseException:
            cluster.close()
            raise
        return first_worker(cluster, self.timeout, self.banner(cluster), self.giver,
                            lambda: self.diagnosis(cluster))  # fmt: skip

    # --- what a backend may change ---------------------------------------------------

    def check_here(self) -> None:
        """Fail at once where the workers cannot be submitted from."""
        if self.command and shutil.which(self.command) is None:
            raise ClusterError(
                f"executor type {self.kind!r} submits Dask workers with {self.command}, which "
                f"is not on PATH here: run the stage job {self.submit_from} (or use "
                f"profiles/{self.kind}, which runs the jobs themselves as {self.title} jobs)"
            )

    def load_cluster_class(self) -> type:
        """The Dask cluster class, or an error naming the extra that installs it."""
        try:
            return self.import_cluster_class()
        except ImportError as err:
            raise ClusterError(
                f"executor type {self.kind!r} needs {self.needs}: pip install "
                f"'swift-rules[{self.kind}]' ({err})"
            ) from err

    def import_cluster_class(self) -> type:
        module, _, name = self.cluster_class.partition(":")
        return getattr(importlib.import_module(module), name)

    def prepare(self) -> None:
        """Checks before the cluster starts (settings and limits are read)."""

    def cluster_kwargs(self) -> dict:
        raise NotImplementedError

    def dask_config(self) -> dict:
        """More Dask config to start the cluster under."""
        return {}

    def start(self, cluster_class: type):
        """The cluster; a failure to start it is a ClusterError saying so."""
        kwargs = self.cluster_kwargs()
        config = {**self.dask_config()}
        if self.local_scheduler:  # (the scheduler reads it as it starts)
            config.update(quiet_http(self.settings["scheduler_options"])[1])
        import dask

        try:
            with dask.config.set(config):
                return cluster_class(**kwargs)
        except Exception as err:
            raise ClusterError(f"cannot start the {self.title} Dask cluster: {err}") from err

    def scale(self, cluster) -> None:
        cluster.adapt(minimum=self.minimum, maximum=self.maximum)
        # adapt() submits only when there is work or a minimum: ask for one worker now,
        # so that the wait for the first one is bounded even with minimum_workers: 0.
        if self.minimum == 0:
            cluster.scale(1)

    def banner(self, cluster) -> str:
        """The line printed while waiting for the first worker."""
        return (
            f"{self.title} Dask cluster: {cluster.scheduler_address}, "
            f"{self.minimum}-{self.maximum} worker job(s){self.describe()}"
        )

    def describe(self) -> str:
        """What the worker jobs are, at the end of the banner."""
        return ""

    def diagnosis(self, cluster) -> str:
        """Why no worker came: what the batch system says about the worker jobs."""
        return "no diagnosis"
