"""What the rule files need of Snakemake's executor plugins: the names under which each
plugin reads a job's resources, and work-arounds for faults of theirs.

Imported when Snakemake parses the rule files: light (a plugin is imported only to patch
it, and only where it is installed), and Python 3.8 (REANA's engine).
"""

from __future__ import annotations

import getpass
import subprocess
from collections.abc import Callable, Mapping

# Executor settings of workflow jobs (JSON), set by the rule files, read by the jobs.
EXECUTOR_ENV = "SWIFT_RULES_EXECUTOR"


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
