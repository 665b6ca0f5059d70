"""Batch-system backends: Dask clusters whose workers are batch jobs, and the
batch-system names of the resources the rules declare.

- ``htcondor``: dask-jobqueue's ``HTCondorCluster`` (``swift_rules.backends.htcondor``).
- ``slurm``: dask-jobqueue's ``SLURMCluster`` (``swift_rules.backends.slurm``).
- ``kubernetes``: dask-kubernetes' ``KubeCluster`` from a ``DaskCluster`` spec that we
  build and check (``swift_rules.backends.kubernetes``).

``swift_rules.clusters.BACKENDS`` maps ``executor.type`` to these. Nothing here
imports dask-jobqueue or dask-kubernetes until a cluster is made, so the rule files
and the planner stay fast and work without those optional packages.
"""

from __future__ import annotations

import getpass
import subprocess
import sys
from collections.abc import Callable, Mapping

from swift_rules.clusters import ClusterError


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


def batch_resources(settings_of: Callable[[object], Mapping]) -> dict[str, Callable]:
    """Snakemake resources, per job, carrying a stage's requests in batch-system names.

    ``settings_of(wildcards)`` gives the stage's settings (``threads``, ``mem_mb``,
    ``gpu``, ``runtime``). Snakemake's executor plugins read different names:
    the Kubernetes plugin reads ``mem_mb`` and ``gpu`` (already declared by the rules),
    the HTCondor plugin ``htcondor_request_mem_mb`` and ``request_gpus``; ``+MaxRuntime``
    (seconds) is the usual site convention for an expected runtime. ``threads`` become
    ``request_cpus`` and pod CPU requests in both plugins without help. The Slurm plugin
    reads ``mem_mb`` (``--mem``), ``runtime`` (``--time``, minutes) and ``gpu``
    (``--gpus``) under the rules' own names, and ``cpus_per_task`` (``--cpus-per-task``)
    before ``threads``: set here, a site profile's default ``cpus_per_task`` cannot
    override the stage's ``threads``.
    """
    return {
        "htcondor_request_mem_mb": lambda w: settings_of(w)["mem_mb"],
        "request_gpus": lambda w: settings_of(w)["gpu"],
        "classad_MaxRuntime": lambda w: 60 * settings_of(w)["runtime"],
        "cpus_per_task": lambda w: settings_of(w)["threads"],
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


def guard_slurm_executor() -> None:
    """Work around two ways in which snakemake-executor-plugin-slurm 2.8.0 (with
    snakemake-interface-executor-plugins 9.4) loses a job.

    - ``sacct`` gives the state of a job cancelled with ``scancel`` as ``CANCELLED by UID``;
      the plugin compares the whole text with its failed states, takes the job for one
      that still runs, and waits for ever. Keeping the state's first word (Slurm's state
      names are one word) makes it a failed Snakemake job with Slurm's state.
    - Ctrl-C cancels the jobs in the executor's list of active jobs, which its status
      thread empties while it checks them: a Ctrl-C then cancels nothing and leaves the
      jobs running. After the plugin's own ``scancel``, every job of this run (its job
      name is the run's id) is cancelled too.

    No-op without the plugin, and when applied already.
    """
    try:
        import snakemake_executor_plugin_slurm as plugin
    except Exception:  # not installed (e.g. REANA's Snakemake 7 environment)
        return
    if getattr(plugin.query_job_status, "swift_rules_guard", False):
        return
    query, cancel_jobs = plugin.query_job_status, plugin.Executor.cancel_jobs

    async def one_word_states(command, logger):
        states, duration = await query(command, logger)
        if states:
            states = {job: (state.split() or [state])[0] for job, state in states.items()}
        return states, duration

    def cancel_all_jobs_of_the_run(self, active_jobs):
        cancel_jobs(self, active_jobs)
        cmd = ["scancel", f"--name={self.run_uuid}", f"--user={getpass.getuser()}"]
        if self._submitted_job_clusters:
            cmd.append("--clusters=all")
        try:
            subprocess.run(cmd, capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as err:
            self.logger.warning(f"could not cancel the jobs named {self.run_uuid}: {err}")

    one_word_states.swift_rules_guard = True
    plugin.query_job_status = one_word_states
    plugin.Executor.cancel_jobs = cancel_all_jobs_of_the_run


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
