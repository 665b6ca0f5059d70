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
"""

# ruff: noqa: UP045
# No `from __future__ import annotations`: Snakemake turns the settings' type hints
# into argparse types, so they must be real types.
import os
import re
import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from snakemake_interface_common.exceptions import WorkflowError
from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo
from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor
from snakemake_interface_executor_plugins.settings import CommonSettings, ExecutorSettingsBase

from swift_rules.dirac.jdl import job_fields
from swift_rules.dirac.outputs import take_outputs
from swift_rules.dirac.transport import (
    ClassicTransport,
    DiracAuthError,
    DiracError,
    DiracUnreachable,
    DiracXTransport,
)

OUTPUTS_TAR = "swift-outputs.tar"
JOB_SCRIPT = "swift-job.sh"
NOT_STARTED = {"Received", "Checking", "Staging", "Waiting", "Matched", "Rescheduled"}
SUCCESS = {"Done", "Completed"}
FAILURE = {"Failed", "Killed", "Deleted"}


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


def _list(text: Optional[str]) -> list[str]:
    return [s.strip() for s in (text or "").split(",") if s.strip()]


class Executor(RemoteExecutor):
    def __post_init__(self):
        s = self.workflow.executor_settings
        self.settings = s
        self.workdir = Path.cwd()
        self.jobdir = Path(s.jobdir)
        self.jobdir.mkdir(parents=True, exist_ok=True)
        self.transport = self._transport(s)
        self._unreachable_since: float | None = None
        try:
            who = self.transport.check()
        except DiracError as err:
            raise WorkflowError(f"DIRAC executor: {err}") from None
        if s.vo and f"({s.vo}," not in who:
            raise WorkflowError(f"DIRAC executor: --dirac-vo is {s.vo}, but the token is {who}")
        self.logger.info(f"DIRAC executor: submitting as {who}")

    def _transport(self, s):
        if s.transport == "classic":
            return ClassicTransport(self.jobdir / "classic")
        if s.transport != "diracx":
            raise WorkflowError(f"--dirac-transport: {s.transport!r} is not diracx or classic")
        url = s.url or os.environ.get("DIRACX_URL")
        if not url:
            raise WorkflowError("DIRAC executor: no server URL: set --dirac-url or DIRACX_URL")
        credentials = (
            s.credentials
            or os.environ.get("DIRACX_CREDENTIALS_PATH")
            or "~/.cache/diracx/credentials.json"
        )
        return DiracXTransport(url, credentials)

    # --- submission -------------------------------------------------------------------

    def get_python_executable(self):
        return "python"

    def _local(self, path) -> Optional[str]:
        """``path`` relative to the working directory (None: outside it)."""
        p = Path(str(path))
        p = p if p.is_absolute() else self.workdir / p
        try:
            return str(p.resolve().relative_to(self.workdir.resolve()))
        except ValueError:
            return None

    def _sandbox(self, job, script: Path) -> dict[str, Path]:
        files = {JOB_SCRIPT: script}
        sources = [*self.workflow.configfiles, *[str(f) for f in self.workflow.included]]
        for path in [*sources, *job.input]:
            name = self._local(path)
            if name is not None and (self.workdir / name).exists():
                files[name] = self.workdir / name
            elif name is None and path in job.input:
                self.logger.warning(f"DIRAC job input {path} is outside the working directory: "
                                    "it must exist at that path on the worker")  # fmt: skip
        return files

    def _script(self, job, outputs: list[str]) -> str:
        cmd = self.format_job_exec(job)
        cmd = cmd.replace("python -m snakemake", '"$PYTHON" -m snakemake', 1)
        for path in self.workflow.configfiles:  # absolute paths -> the sandbox's copies
            name = self._local(path)
            if name:
                cmd = cmd.replace(str(Path(path).absolute()), name)
        # The Snakefile: the sandbox's copy if it is under the working directory, else
        # the same absolute path on the worker (e.g. installed software).
        match = re.search(r"--snakefile '?([^' ]+)'?", cmd)
        if match:
            snakefile = Path(match.group(1))
            snakefile = snakefile if snakefile.is_absolute() else self.workdir / snakefile
            local = self._local(snakefile) or str(snakefile.resolve())
            cmd = cmd.replace(match.group(0), f"--snakefile {shlex.quote(local)}", 1)
        listed = " ".join(shlex.quote(o) for o in outputs)
        return "\n".join([
            "#!/bin/bash",
            f"# swift-rules DIRAC job: rule {job.name}, Snakemake job {job.jobid}",
            f'PYTHON="${{SWIFT_DIRAC_PYTHON:-{self.settings.python}}}"',
            cmd,
            "rc=$?",
            "# The outputs (all of them when it worked) and logs come back in one tar file.",
            f"for f in {listed}; do [ -e \"$f\" ] && echo \"$f\"; done > swift-outputs.txt",
            f"tar -cf {OUTPUTS_TAR} -T swift-outputs.txt",
            "exit $rc",
            "",
        ])  # fmt: skip

    def _fields(self, job) -> dict:
        s = self.settings
        tags = _list(s.tags)
        if int(job.resources.get("gpu", 0) or 0) > 0 and s.gpu_tag not in tags:
            tags.append(s.gpu_tag)
        runtime = job.resources.get("runtime")
        cpu_time = int(runtime) * 60 * max(job.threads, 1) if runtime else s.cpu_time
        return job_fields(
            name=f"{job.name}-{job.jobid}", executable=JOB_SCRIPT,
            output_sandbox=[OUTPUTS_TAR], sites=_list(s.sites),
            banned_sites=_list(s.banned_sites), cpu_time=cpu_time, tags=tags,
            group=s.group, cores=job.threads,
        )  # fmt: skip

    def run_job(self, job):
        if job.is_group():
            raise WorkflowError("the DIRAC executor does not run group jobs")
        outputs = [o for o in map(self._local, [*job.output, *job.log]) if o]
        folder = self.jobdir / f"{job.name}-{job.jobid}"
        shutil.rmtree(folder / "output", ignore_errors=True)  # (a previous run's)
        folder.mkdir(parents=True, exist_ok=True)
        script = folder / JOB_SCRIPT
        script.write_text(self._script(job, outputs))
        script.chmod(0o755)
        try:
            job_id = self.transport.submit(self._fields(job), self._sandbox(job, script))
        except DiracError as err:
            raise WorkflowError(f"DIRAC submission of {job.name} failed: {err}") from None
        self.logger.info(f"Job {job.jobid} ({job.name}) submitted to DIRAC as job {job_id}")
        aux = {"submitted": time.monotonic(), "folder": folder, "stalled": None,
               "outputs": outputs}  # fmt: skip
        self.report_job_submission(SubmittedJobInfo(job, external_jobid=job_id, aux=aux))

    # --- status ---------------------------------------------------------------------------

    async def check_active_jobs(self, active_jobs):
        async with self.status_rate_limiter:
            try:
                states = self.transport.status(j.external_jobid for j in active_jobs)
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
            state = states.get(j.external_jobid)
            if state is None:
                self.report_job_error(j, msg=f"DIRAC job {j.external_jobid} is unknown to "
                                      "the server (deleted?)")  # fmt: skip
            elif state.status in SUCCESS:
                self._succeeded(j)
            elif state.status in FAILURE:
                self._failed(j, state.reason())
            elif self._timed_out(j, state):
                pass
            else:
                yield j

    def _timed_out(self, j, state) -> bool:
        """Kill and fail a job that never started or stays stalled too long."""
        now = time.monotonic()
        if state.status == "Stalled":
            j.aux["stalled"] = j.aux["stalled"] or now
            limit, since = self.settings.stalled_timeout, j.aux["stalled"]
            what = f"stayed Stalled for {limit} s (--dirac-stalled-timeout)"
        else:
            j.aux["stalled"] = None
            if state.status == "Rescheduled":  # queued again: the start clock restarts
                j.aux["submitted"] = now
            if state.status not in NOT_STARTED:
                return False
            limit, since = self.settings.start_timeout, j.aux["submitted"]
            what = f"did not start within {limit} s (--dirac-start-timeout)"
        if now - since < limit:
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
            tar = folder / OUTPUTS_TAR
            if not tar.exists():
                raise DiracError(f"its output sandbox has no {OUTPUTS_TAR}")
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
        ids = [j.external_jobid for j in active_jobs]
        if ids:
            try:
                self.transport.kill(ids)
                self.logger.info(f"Killed DIRAC jobs {', '.join(ids)}")
            except DiracError as err:
                self.logger.error(f"could not kill DIRAC jobs {', '.join(ids)}: {err}")
