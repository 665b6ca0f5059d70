"""What one Snakemake job becomes on the grid: its job script, its input sandbox and its
JDL fields. Pure functions of the job's command line, files and resources (no server),
unit-tested in tests/test_dirac.py."""

# ruff: noqa: UP045
import re
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Optional

from swift_rules.dirac.jdl import job_fields

OUTPUTS_TAR = "swift-outputs.tar"
JOB_SCRIPT = "swift-job.sh"


def split_list(text: Optional[str]) -> list[str]:
    """A comma-separated setting (``--dirac-sites A,B``) as a list."""
    return [s.strip() for s in (text or "").split(",") if s.strip()]


def relative(path, workdir: Path) -> Optional[str]:
    """``path`` relative to the working directory ``workdir`` (None: outside it)."""
    p = Path(str(path))
    p = p if p.is_absolute() else workdir / p
    try:
        return str(p.resolve().relative_to(workdir.resolve()))
    except ValueError:
        return None


def sandbox(workdir: Path, script: Path, sources: Iterable, inputs: Iterable):
    """({name in the sandbox: path}, [inputs outside the working directory]): the job
    script, then the workflow's sources (config files, included files) and the job's
    inputs that lie under ``workdir`` and exist. An input elsewhere must exist at the same
    path on the worker (software on CVMFS)."""
    files, outside = {JOB_SCRIPT: script}, []
    inputs = list(inputs)
    for path in [*sources, *inputs]:
        name = relative(path, workdir)
        if name is not None and (workdir / name).exists():
            files[name] = workdir / name
        elif name is None and path in inputs:
            outside.append(path)
    return files, outside


def job_script(cmd: str, *, rule: str, jobid, python: str, outputs: list[str],
               workdir: Path, configfiles: Iterable = ()) -> str:  # fmt: skip
    """The job's executable: Snakemake's command line ``cmd`` for the job, rewritten for
    the worker (its Python, the sandbox's copies of the config files and the Snakefile),
    then the outputs and logs packed into ``swift-outputs.tar``."""
    cmd = cmd.replace("python -m snakemake", '"$PYTHON" -m snakemake', 1)
    for path in configfiles:  # absolute paths -> the sandbox's copies
        name = relative(path, workdir)
        if name:
            cmd = cmd.replace(str(Path(path).absolute()), name)
    # The Snakefile: the sandbox's copy if it is under the working directory, else
    # the same absolute path on the worker (e.g. installed software).
    match = re.search(r"--snakefile '?([^' ]+)'?", cmd)
    if match:
        snakefile = Path(match.group(1))
        snakefile = snakefile if snakefile.is_absolute() else workdir / snakefile
        local = relative(snakefile, workdir) or str(snakefile.resolve())
        cmd = cmd.replace(match.group(0), f"--snakefile {shlex.quote(local)}", 1)
    listed = " ".join(shlex.quote(o) for o in outputs)
    return "\n".join([
        "#!/bin/bash",
        f"# swift-rules DIRAC job: rule {rule}, Snakemake job {jobid}",
        f'PYTHON="${{SWIFT_DIRAC_PYTHON:-{python}}}"',
        cmd,
        "rc=$?",
        "# The outputs (all of them when it worked) and logs come back in one tar file.",
        f"for f in {listed}; do [ -e \"$f\" ] && echo \"$f\"; done > swift-outputs.txt",
        f"tar -cf {OUTPUTS_TAR} -T swift-outputs.txt",
        "exit $rc",
        "",
    ])  # fmt: skip


def fields(name: str, resources: Mapping, threads: int, settings) -> dict:
    """The JDL of a job named ``name`` with Snakemake ``resources`` and ``threads``:
    ``runtime`` (minutes) times threads is its CPUTime (else ``--dirac-cpu-time``), a
    ``gpu`` above 0 adds ``--dirac-gpu-tag``, and the profile's sites, tags and group."""
    tags = split_list(settings.tags)
    if int(resources.get("gpu", 0) or 0) > 0 and settings.gpu_tag not in tags:
        tags.append(settings.gpu_tag)
    runtime = resources.get("runtime")
    cpu_time = int(runtime) * 60 * max(threads, 1) if runtime else settings.cpu_time
    return job_fields(
        name=name, executable=JOB_SCRIPT, output_sandbox=[OUTPUTS_TAR],
        sites=split_list(settings.sites), banned_sites=split_list(settings.banned_sites),
        cpu_time=cpu_time, tags=tags, group=settings.group, cores=threads,
    )  # fmt: skip
