"""Batch-system backends: Dask clusters whose workers are batch jobs.

- ``htcondor``: dask-jobqueue's ``HTCondorCluster`` (``swift_rules.backends.htcondor``).
- ``slurm``: dask-jobqueue's ``SLURMCluster`` (``swift_rules.backends.slurm``).
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
