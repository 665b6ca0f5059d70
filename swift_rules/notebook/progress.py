"""A Snakemake run's progress, read from what Snakemake prints (its log).

Snakemake writes one block per job it starts (``rule NAME:`` with ``jobid:`` and
``log:``), a line per job it finishes, ``N of M steps (P%) done``, its job table
(``Job stats:``) and its errors (``Error in rule NAME:``, ``ConfigError in ...:``).
:class:`LogReader` follows that text as it grows, from any process: the notebook
that started the run, or one that attaches later. Snakemake 9's lines are read, and
Snakemake 7's ``Finished job N.``.
"""

from __future__ import annotations

import ast
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*m")
TIMESTAMP = re.compile(r"^\[(\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4})\]$")
JOB_START = re.compile(r"^(?:local)?(?:rule|checkpoint) ([\w.-]+):$")
JOB_FIELD = re.compile(r"^ {4}(\w+): (.*)$")
FINISHED_9 = re.compile(r"^Finished jobid: (\d+) \(Rule: ([\w.-]+)\)$")
FINISHED_7 = re.compile(r"^Finished job (\d+)\.$")
STEPS = re.compile(r"^(\d+) of (\d+) steps \(\d+%\) done$")
ERROR_IN_RULE = re.compile(r"^Error in rule ([\w.-]+):$")
# ConfigError in file "...", line 30:   WorkflowError:   MissingInputException in rule x:
ERROR_HEAD = re.compile(r"^([A-Z]\w*(?:Error|Exception))(?: in .*)?:$")
CONFIG_FILES = re.compile(r"^\s*Config file\(s\): (.*)$")
LOG_SUFFIX = " (check log file(s) for error details)"
DASHBOARD = re.compile(r"^\[swift-rules\] Dask dashboard: (\S+)")
NOTHING = "Nothing to be done"
TERMINATING = "Terminating processes on user request"


@dataclass
class Job:
    jobid: str
    rule: str
    logs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    wildcards: str = ""
    started: float | None = None
    ended: float | None = None


@dataclass
class LogState:
    """Everything read so far from one run's log."""

    totals: dict[str, int] = field(default_factory=dict)  # rule -> jobs planned
    jobs: dict[str, Job] = field(default_factory=dict)
    running: dict[str, Job] = field(default_factory=dict)
    finished: list[Job] = field(default_factory=list)
    failed: list[Job] = field(default_factory=list)
    steps: tuple[int, int] | None = None
    nothing_to_do: bool = False
    terminating: bool = False
    errors: list[list[str]] = field(default_factory=list)  # workflow-level error blocks
    config_files: list[str] = field(default_factory=list)


def _parse_time(text: str) -> float | None:
    try:
        return time.mktime(time.strptime(text, "%a %b %d %H:%M:%S %Y"))
    except ValueError:
        return None


class LogReader:
    """Follows a Snakemake log file: call :meth:`update` to read what was added."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.state = LogState()
        self._offset = 0
        self._partial = ""
        self._block: str | None = None  # "job", "error", "table", "failed"
        self._job: Job | None = None
        self._last_time: float | None = None

    def update(self) -> LogState:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return self.state
        self._offset += len(data)
        text = self._partial + data.decode("utf-8", "replace")
        lines = text.split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._line(ANSI.sub("", line.rstrip("\r")))
        return self.state

    def feed(self, text: str) -> LogState:
        """Parse ``text`` as if it were the log (tests, or a log held in memory)."""
        for line in text.splitlines():
            self._line(ANSI.sub("", line))
        return self.state

    # -- one line at a time -----------------------------------------------------------

    def _line(self, line: str) -> None:
        st = self.state
        if self._block == "table":
            self._table_line(line)
            return
        if self._block in ("job", "failed"):
            m = JOB_FIELD.match(line)
            if m:
                self._job_field(*m.groups())
                return
            if line.startswith("        "):  # the shell command under `shell:`
                return
            self._block, self._job = None, None
        if self._block == "error":
            if line.strip() and not TIMESTAMP.match(line) and not _is_marker(line):
                if not line.startswith('  File "'):  # Snakemake's traceback of the Snakefile
                    st.errors[-1].append(line.rstrip())
                return
            self._block = None

        if m := TIMESTAMP.match(line):
            self._last_time = _parse_time(m.group(1))
        elif m := JOB_START.match(line):
            self._job = Job(jobid="?", rule=m.group(1), started=self._last_time)
            self._block = "job"
        elif m := FINISHED_9.match(line):
            self._finish(m.group(1), m.group(2))
        elif m := FINISHED_7.match(line):
            self._finish(m.group(1), None)
        elif m := STEPS.match(line):
            st.steps = (int(m.group(1)), int(m.group(2)))
        elif m := ERROR_IN_RULE.match(line):
            self._job = Job(jobid="?", rule=m.group(1), ended=self._last_time)
            self._block = "failed"
        elif line.startswith("Job stats:"):
            st.totals = {}
            self._block = "table"
        elif m := ERROR_HEAD.match(line):
            st.errors.append([line.rstrip()])
            self._block = "error"
        elif m := CONFIG_FILES.match(line):
            st.config_files = _config_files(m.group(1))
        elif line.startswith(NOTHING):
            st.nothing_to_do = True
        elif line.startswith(TERMINATING):
            st.terminating = True

    def _table_line(self, line: str) -> None:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            if parts[0] == "total":
                self._block = None
            else:
                self.state.totals[parts[0]] = int(parts[1])
        elif not line.strip() or (parts and parts[0] not in ("job", "count") and "---" not in line):
            self._block = None

    def _job_field(self, key: str, value: str) -> None:
        job = self._job
        if job is None:
            return
        if key == "jobid":
            job.jobid = value.strip()
            if self._block == "job":
                known = self.state.jobs.get(job.jobid)
                if known is not None and known.rule == job.rule:
                    job.logs = job.logs or known.logs
                self.state.jobs[job.jobid] = job
                self.state.running[job.jobid] = job
            else:
                known = self.state.jobs.get(job.jobid)
                if known is not None:
                    job.logs = job.logs or known.logs
                    job.outputs = known.outputs
                    job.wildcards = job.wildcards or known.wildcards
                    job.started = known.started
                self.state.running.pop(job.jobid, None)
                self.state.failed.append(job)
        elif key == "log":
            logs = value.removesuffix(LOG_SUFFIX)
            job.logs = [p.strip() for p in logs.split(", ") if p.strip()]
        elif key == "wildcards":
            job.wildcards = value.strip()
        elif key == "output" and self._block == "job":
            job.outputs = [p.strip() for p in value.split(", ") if p.strip()]

    def _finish(self, jobid: str, rule: str | None) -> None:
        job = self.state.running.pop(jobid, None) or self.state.jobs.get(jobid)
        if job is None:
            job = Job(jobid=jobid, rule=rule or "?")
        job.ended = self._last_time
        self.state.finished.append(job)


def _is_marker(line: str) -> bool:
    return bool(
        JOB_START.match(line)
        or ERROR_IN_RULE.match(line)
        or FINISHED_9.match(line)
        or STEPS.match(line)
        or line.startswith(("Select jobs", "Execute ", "Complete log", "Shutting down"))
    )


def _config_files(text: str) -> list[str]:
    """``[PosixPath('/x/o.yaml'), 'config/config.yaml']`` -> the paths, in that order."""
    try:
        return [str(p) for p in ast.literal_eval(text)]
    except (ValueError, SyntaxError):
        return re.findall(r"'([^']*)'", text)


def dashboard_in_log(path: str | Path, limit: int = 65536) -> str | None:
    """The Dask dashboard that a stage job's log names (written when its client starts)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(limit).decode("utf-8", "replace")
    except OSError:
        return None
    for line in head.splitlines():
        if m := DASHBOARD.match(line):
            return m.group(1)
    return None


def tail(path: str | Path, lines: int = 10, limit: int = 16384) -> list[str]:
    """The last ``lines`` lines of a (log) file; [] if it cannot be read."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    out = [ANSI.sub("", x) for x in text.splitlines()]
    if size > limit:
        out = out[1:]
    return out[-lines:]
