"""Batch-system backends: Dask clusters whose workers are batch jobs, and the
batch-system names of the resources the rules declare.

- ``htcondor``: dask-jobqueue's ``HTCondorCluster`` (``swift_rules.backends.htcondor``).
- ``kubernetes``: dask-kubernetes' ``KubeCluster`` from a ``DaskCluster`` spec that we
  build and check (``swift_rules.backends.kubernetes``).

``swift_rules.clusters.BACKENDS`` maps ``executor.type`` to these. Nothing here
imports dask-jobqueue or dask-kubernetes until a cluster is made, so the rule files
and the planner stay fast and work without those optional packages.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping

from swift_rules.clusters import ClusterError


def quiet_http(scheduler_options: Mapping) -> tuple[dict, dict]:
    """(scheduler options, Dask config to start the scheduler under) without its HTTP
    pages for all: dask-jobqueue's scheduler serves them (worker logs, task names;
    plain HTTP, no authentication) on port 8787 of every interface, on a shared access
    point to everyone. Unless a dashboard is asked for: loopback, and /health only."""
    from swift_rules.clusters import HTTP_HEALTH_ONLY

    if "dashboard_address" in scheduler_options:
        return dict(scheduler_options), {}
    return {**scheduler_options, "dashboard_address": "127.0.0.1:0"}, dict(HTTP_HEALTH_ONLY)


def section_settings(cfg: Mapping, section: str, defaults: Mapping) -> dict:
    """``executor.<section>`` with its defaults; unknown keys are an error naming them."""
    given = cfg.get(section) or {}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ClusterError(
            f"executor.{section}: unknown key(s) {unknown}; known: {sorted(defaults)}"
        )
    return {**defaults, **{k: v for k, v in given.items() if v is not None}}


def batch_resources(settings_of: Callable[[object], Mapping]) -> dict[str, Callable]:
    """Snakemake resources, per job, carrying a stage's requests in batch-system names.

    ``settings_of(wildcards)`` gives the stage's settings (``threads``, ``mem_mb``,
    ``gpu``, ``runtime``). Snakemake's executor plugins read different names:
    the Kubernetes plugin reads ``mem_mb`` and ``gpu`` (already declared by the rules),
    the HTCondor plugin ``htcondor_request_mem_mb`` and ``request_gpus``; ``+MaxRuntime``
    (seconds) is the usual site convention for an expected runtime. ``threads`` become
    ``request_cpus`` and pod CPU requests in both plugins without help.
    """
    return {
        "htcondor_request_mem_mb": lambda w: settings_of(w)["mem_mb"],
        "request_gpus": lambda w: settings_of(w)["gpu"],
        "classad_MaxRuntime": lambda w: 60 * settings_of(w)["runtime"],
    }


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


def guard_htcondor_executor_startup() -> None:
    """Work around a start-up race of snakemake-executor-plugin-htcondor 0.3.0.

    Snakemake's RemoteExecutor starts its status thread before the plugin's
    ``__post_init__`` has set ``_event_logs``; on a rerun in the same folder the
    thread finds the previous run's event log and fails with "'Executor' object
    has no attribute '_event_logs'". A class-level default closes the window (the
    instance's own dict replaces it in ``__post_init__``). No-op without the plugin.
    """
    try:
        from snakemake_executor_plugin_htcondor import Executor
    except Exception:  # not installed, or its HTCondor bindings cannot load here
        return
    if not hasattr(Executor, "_event_logs"):
        Executor._event_logs = {}


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
