"""Snakemake executor plugin for DIRAC: every job a DIRAC (JDL) job.

    snakemake --profile profiles/dirac          # or --executor dirac --dirac-...

Each Snakemake job becomes one JDL job through DiracX's REST API (or the classic
``dirac-wms-job-*`` commands, ``--dirac-transport classic``). Its input sandbox holds
a generated job script, the job's input files, the config files and the workflow
sources that lie under the working directory; sources elsewhere (the installed
swift-rules, its rules) must be at the same path on the worker, as software on CVMFS
is. The job script runs the rule through ``python -m snakemake`` on the worker and packs
the job's outputs and logs into ``swift-outputs.tar``, which comes back in the output
sandbox when the job is Done: of it, only the job's declared outputs and logs reach the
working directory (``swift_rules.dirac.outputs``: a worker node cannot rewrite the
workflow).

States (docs/backends.md): Done and Completed succeed; Failed, Killed and Deleted fail
with DIRAC's reason, the job id and the end of the job's stderr. Rescheduled jobs are
requeued by DIRAC: we keep waiting, and the start timeout counts from then. Stalled
jobs (the pilot stopped answering) may recover: we keep waiting up to
``--dirac-stalled-timeout`` seconds, then kill and fail them. A job that has not
started ``--dirac-start-timeout`` seconds after submission is killed and fails with a
message naming the timeout. All active jobs are polled in one request per status check.

This module holds what Snakemake's plugin interface looks for (``ExecutorSettings``,
``common_settings``, ``Executor``); the rest is modules of its own, as
snakemake-executor-plugin-slurm's are: ``job_script`` (a job's script, sandbox and JDL),
``states`` (which states end a job, and the time-out rules), ``transport`` (DiracX or the
classic commands).
"""

# ruff: noqa: UP045
# No `from __future__ import annotations`: Snakemake turns the settings' type hints
# into argparse types, so they must be real types.
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from snakemake_interface_common.exceptions import WorkflowError
from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo
from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor
from snakemake_interface_executor_plugins.settings import CommonSettings, ExecutorSettingsBase

from snakemake_executor_plugin_dirac import job_script, states
from snakemake_executor_plugin_dirac.transport import make_transport
from swift_rules.dirac.outputs import take_outputs
from swift_rules.dirac.transport import DiracAuthError, DiracError, DiracUnreachable


def _help(text: str, **more) -> dict:
    return {"help": text, **more}


@dataclass
class ExecutorSettings(ExecutorSettingsBase):
    url: Optional[str] = field(
        default=None,
        metadata=_help("DiracX server URL (default: $DIRACX_URL)", env_var=False),
    )
    credentials: Optional[str] = field(
        default=None,
        metadata=_help(
            "DiracX credentials file, as `dirac login` writes it (default: "
            "$DIRACX_CREDENTIALS_PATH, else ~/.cache/diracx/credentials.json)"
        ),
    )
    transport: str = field(
        default="diracx",
        metadata=_help("diracx (REST API) or classic (dirac-wms-job-* commands, proxy)"),
    )
    vo: Optional[str] = field(
        default=None, metadata=_help("expected VO of the token: a clear error otherwise")
    )
    group: Optional[str] = field(default=None, metadata=_help("DIRAC group (JDL OwnerGroup)"))
    sites: Optional[str] = field(
        default=None, metadata=_help("comma-separated sites the jobs may run at (JDL Site)")
    )
    banned_sites: Optional[str] = field(
        default=None, metadata=_help("comma-separated sites to avoid (JDL BannedSites)")
    )
    cpu_time: int = field(
        default=86400,
        metadata=_help("CPU time of a job in seconds (JDL CPUTime) when its rule sets no "
                       "`runtime` (minutes x threads)"),
    )  # fmt: skip
    tags: Optional[str] = field(default=None, metadata=_help("comma-separated JDL Tags"))
    gpu_tag: str = field(
        default="GPU", metadata=_help("tag added to jobs whose `gpu` resource is > 0")
    )
    python: str = field(
        default="python3",
        metadata=_help("Python on the worker node that has swift-rules and Snakemake "
                       "(overridden there by $SWIFT_DIRAC_PYTHON)"),
    )  # fmt: skip
    start_timeout: int = field(
        default=86400,
        metadata=_help("seconds a job may wait to start before it is killed and fails"),
    )
    stalled_timeout: int = field(
        default=3600,
        metadata=_help("seconds to keep waiting on a Stalled job before failing it"),
    )
    unreachable_timeout: int = field(
        default=600,
        metadata=_help("seconds the server may be unreachable during a run before the "
                       "active jobs fail"),
    )  # fmt: skip
    jobdir: str = field(
        default=".snakemake/dirac",
        metadata=_help("folder of the job scripts and downloaded output sandboxes"),
    )


common_settings = CommonSettings(
    non_local_exec=True,
    # Grid worker nodes share no file system with us: inputs and outputs travel in the
    # sandboxes, which this plugin handles itself.
    implies_no_shared_fs=True,
    job_deploy_sources=False,
    pass_default_storage_provider_args=True,
    pass_default_resources_args=True,
    pass_envvar_declarations_to_cmd=False,
    auto_deploy_default_storage_provider=False,
    init_seconds_before_status_checks=1,
    can_transfer_local_files=True,
)


def _main_thread_takes_ctrl_c() -> None:
    """Block Ctrl-C and SIGTERM in the status-check thread (and the threads it starts).

    A signal goes to any thread that does not block it, and Python runs its handler in
    the main thread only when that thread next runs Python code. Snakemake's main thread
    waits on a semaphore, which only a signal delivered to it interrupts: one taken by
    another thread left Snakemake running, its jobs unkilled, until the next job ended.
    """
    if threading.current_thread() is not threading.main_thread():
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


class Executor(RemoteExecutor):
    def __post_init__(self):
        s = self.workflow.executor_settings
        self.settings = s
        self.workdir = Path.cwd()
        self.jobdir = Path(s.jobdir)
        self.jobdir.mkdir(parents=True, exist_ok=True)
        self.transport = make_transport(s, self.jobdir)
        self._unreachable_since: float | None = None
        # The ids of the jobs submitted and not yet ended. A status check takes the jobs
        # off Snakemake's active list while it runs, so a Ctrl-C then would kill nothing.
        self._unended: set[str] = set()
        self._unended_lock = threading.Lock()
        try:
            who = self.transport.check()
        except DiracError as err:
            raise WorkflowError(f"DIRAC executor: {err}") from None
        if s.vo and f"({s.vo}," not in who:
            raise WorkflowError(f"DIRAC executor: --dirac-vo is {s.vo}, but the token is {who}")
        self.logger.info(f"DIRAC executor: submitting as {who}")

    # --- submission -------------------------------------------------------------------

    def get_python_executable(self):
        return "python"

    def run_job(self, job):
        if job.is_group():
            raise WorkflowError("the DIRAC executor does not run group jobs")
        declared = [*job.output, *job.log]
        outputs = [o for o in (job_script.relative(p, self.workdir) for p in declared) if o]
        folder = self.jobdir / f"{job.name}-{job.jobid}"
        shutil.rmtree(folder / "output", ignore_errors=True)  # (a previous run's)
        folder.mkdir(parents=True, exist_ok=True)
        script = folder / job_script.JOB_SCRIPT
        script.write_text(job_script.job_script(
            self.format_job_exec(job), rule=job.name, jobid=job.jobid,
            python=self.settings.python, outputs=outputs, workdir=self.workdir,
            configfiles=self.workflow.configfiles,
        ))  # fmt: skip
        script.chmod(0o755)
        sources = [*self.workflow.configfiles, *[str(f) for f in self.workflow.included]]
        files, outside = job_script.sandbox(self.workdir, script, sources, job.input)
        for path in outside:
            self.logger.warning(f"DIRAC job input {path} is outside the working directory: "
                                "it must exist at that path on the worker")  # fmt: skip
        fields = job_script.fields(f"{job.name}-{job.jobid}", job.resources, job.threads,
                                   self.settings)  # fmt: skip
        try:
            job_id = self.transport.submit(fields, files)
        except DiracError as err:
            raise WorkflowError(f"DIRAC submission of {job.name} failed: {err}") from None
        self.logger.info(f"Job {job.jobid} ({job.name}) submitted to DIRAC as job {job_id}")
        aux = {"clock": states.Clock(submitted=time.monotonic()), "folder": folder,
               "outputs": outputs}  # fmt: skip
        with self._unended_lock:
            self._unended.add(job_id)
        self.report_job_submission(SubmittedJobInfo(job, external_jobid=job_id, aux=aux))

    def report_job_success(self, job_info):
        self._ended(job_info)
        super().report_job_success(job_info)

    def report_job_error(self, job_info, msg=None, **kwargs):
        self._ended(job_info)
        super().report_job_error(job_info, msg=msg, **kwargs)

    def _ended(self, job_info):
        with self._unended_lock:
            self._unended.discard(job_info.external_jobid)

    # --- status ---------------------------------------------------------------------------

    async def check_active_jobs(self, active_jobs):
        _main_thread_takes_ctrl_c()
        async with self.status_rate_limiter:
            try:
                found = self.transport.status(j.external_jobid for j in active_jobs)
                self._unreachable_since = None
            except DiracAuthError as err:
                for j in active_jobs:  # no retry: a refused token stays refused
                    self.report_job_error(j, msg=f"DIRAC job {j.external_jobid}: {err}")
                return
            except DiracUnreachable as err:
                now = time.monotonic()
                self._unreachable_since = self._unreachable_since or now
                if now - self._unreachable_since < self.settings.unreachable_timeout:
                    self.logger.warning(f"{err}; retrying at the next status check")
                    for j in active_jobs:
                        yield j
                    return
                for j in active_jobs:
                    self.report_job_error(j, msg=f"DIRAC job {j.external_jobid}: {err} for "
                                          f"{self.settings.unreachable_timeout} s")  # fmt: skip
                return
        for j in active_jobs:
            state = found.get(j.external_jobid)
            if state is None:
                self.report_job_error(j, msg=f"DIRAC job {j.external_jobid} is unknown to "
                                      "the server (deleted?)")  # fmt: skip
            elif states.outcome(state.status) == "success":
                self._succeeded(j)
            elif states.outcome(state.status) == "failure":
                self._failed(j, state.reason())
            elif self._timed_out(j, state):
                pass
            else:
                yield j

    def _timed_out(self, j, state) -> bool:
        """Kill and fail a job that never started or stays stalled too long."""
        s = self.settings
        what = states.overdue(state.status, j.aux["clock"], time.monotonic(), s.start_timeout,
                              s.stalled_timeout)  # fmt: skip
        if what is None:
            return False
        try:
            self.transport.kill([j.external_jobid])
        except DiracError as err:
            self.logger.warning(f"could not kill DIRAC job {j.external_jobid}: {err}")
        self.report_job_error(j, msg=(
            f"DIRAC job {j.external_jobid} {what}; last state {state.reason()}; "
            "the job was killed"
        ))  # fmt: skip
        return True

    def _succeeded(self, j):
        folder = j.aux["folder"] / "output"
        try:
            self.transport.output(j.external_jobid, folder)
            tar = folder / job_script.OUTPUTS_TAR
            if not tar.exists():
                raise DiracError(f"its output sandbox has no {job_script.OUTPUTS_TAR}")
            extra = take_outputs(tar.read_bytes(), self.workdir, j.aux["outputs"], folder)
        except DiracError as err:
            self.report_job_error(j, msg=f"DIRAC job {j.external_jobid} is Done, but {err}")
            return
        if extra:
            self.logger.warning(f"DIRAC job {j.external_jobid} sent back files it did not "
                                f"declare, left out: {', '.join(extra)}")  # fmt: skip
        self.report_job_success(j)

    def _failed(self, j, reason: str):
        folder = j.aux["folder"] / "output"
        tail = ""
        try:
            self.transport.output(j.external_jobid, folder)
            stderr = folder / "std.err"
            if stderr.exists():
                lines = stderr.read_text(errors="replace").strip().splitlines()[-30:]
                tail = f"\nstderr ({stderr}), last lines:\n" + "\n".join(lines)
        except DiracError as err:
            tail = f" (no output sandbox: {err})"
        self.report_job_error(j, msg=f"DIRAC job {j.external_jobid} {reason}{tail}")

    def cancel_jobs(self, active_jobs):
        with self._unended_lock:  # (a superset of active_jobs: see __post_init__)
            ids = sorted(self._unended)
        if ids:
            try:
                self.transport.kill(ids)
                self.logger.info(f"Killed DIRAC jobs {', '.join(ids)}")
            except DiracError as err:
                self.logger.error(f"could not kill DIRAC jobs {', '.join(ids)}: {err}")
