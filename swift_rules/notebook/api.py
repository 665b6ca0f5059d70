"""Start, watch, attach to and stop a workflow from a notebook; its results as objects."""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import json
import os
import shutil
import signal
import socket
import stat
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from swift_rules.notebook import state as st
from swift_rules.notebook.progress import LogReader, dashboard_in_log, tail
from swift_rules.notebook.state import NotebookError
from swift_rules.notebook.status import Failure, RuleProgress, RunningJob, Status

SNAKEFILES = ("workflow/Snakefile", "Snakefile", "workflow/snakefile", "snakefile")
OVERRIDES = "config.yaml"


def _resolve(path: str | os.PathLike, *bases: Path) -> Path | None:
    """``path`` as given (from the kernel's folder), else under each base in turn."""
    p = Path(path).expanduser()
    for candidate in (p, *(b / p for b in bases)):
        if candidate.exists():
            return candidate.resolve()
    return None


def _project(target, directory) -> tuple[Path, Path]:
    """(Snakefile, working directory) of a project folder or a Snakefile."""
    path = Path(target).expanduser()
    if not path.exists():
        raise NotebookError(f"no such Snakefile or project directory: {target}")
    path = path.resolve()
    if path.is_dir():
        for name in SNAKEFILES:
            if (path / name).is_file():
                snakefile, workdir = path / name, path
                break
        else:
            raise NotebookError(f"{target} has no Snakefile (looked for {', '.join(SNAKEFILES)})")
    else:
        snakefile, workdir = path, path.parent
        # The Snakemake convention: PROJECT/workflow/[analysis/]Snakefile runs in PROJECT.
        for level in (path.parent, path.parent.parent):
            if level.name == "workflow":
                workdir = level.parent
                break
    if directory is not None:
        workdir = Path(directory).expanduser().resolve()
        if not workdir.is_dir():
            raise NotebookError(f"no such directory: {directory}")
    return snakefile, workdir


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The jobs run `swift-rules` and `python` of this kernel's environment.
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(
        [bindir, *(p for p in env.get("PATH", "").split(os.pathsep) if p)]
    )
    # A kernel sets matplotlib's inline backend, which a plot job has no use for.
    if env.get("MPLBACKEND", "").startswith("module://"):
        env["MPLBACKEND"] = "Agg"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run(
    target: str | os.PathLike = ".",
    *,
    profile: str | os.PathLike | None = None,
    config: Mapping | None = None,
    configfiles: Iterable[str | os.PathLike] = (),
    cores: int | str | None = None,
    targets: Iterable[str] = (),
    args: Iterable[str] = (),
    directory: str | os.PathLike | None = None,
) -> Workflow:
    """Start a workflow as a process of its own and return its handle at once.

    ``target``: a Snakefile or a project directory (``workflow/Snakefile`` or
    ``Snakefile`` inside); a ``PROJECT/workflow/Snakefile`` runs in PROJECT, as
    Snakemake's convention has it (``directory`` to choose). ``profile``: a Snakemake
    profile (a path, or a profile's name). ``config``: overrides merged into the
    workflow's config (as ``--configfile``, so numbers stay numbers). ``cores``: as
    ``--cores`` (default: the profile's, or all). ``targets``, ``args``: more of
    Snakemake's command line.

    The process belongs to no kernel: closing the browser, restarting the kernel or
    logging out leaves it running; :func:`attach` finds it again.
    """
    snakefile, workdir = _project(target, directory)
    folder = st.state_dir(workdir, create=True)
    previous = st.read_json(folder / "run.json")
    if previous and st.is_our_run(previous, folder):
        raise NotebookError(
            f"a workflow started from a notebook is still running in {workdir} (since "
            f"{time.strftime('%H:%M:%S', time.localtime(previous.get('started', 0)))}): "
            f"swift_rules.notebook.attach({str(workdir)!r}) to watch it, .stop() to stop it"
        )
    cmd = [sys.executable, "-m", "snakemake", *targets, "--snakefile", str(snakefile)]
    cmd += ["--directory", str(workdir)]
    if profile is not None:
        found = _resolve(profile, workdir)
        cmd += ["--profile", str(found or profile)]
    if cores is not None:
        cmd += ["--cores", str(cores)]
    elif profile is None:
        cmd += ["--cores", "all"]
    files = []
    for path in configfiles:
        found = _resolve(path, workdir)
        if found is None:
            raise NotebookError(f"no such config file: {path}")
        files.append(str(found))
    for name in ("exit.json", "stop.json", OVERRIDES):
        try:
            os.unlink(folder / name)
        except FileNotFoundError:
            pass
    if config:
        try:
            text = yaml.safe_dump(json.loads(json.dumps(dict(config))), sort_keys=False)
        except (TypeError, ValueError) as err:
            raise NotebookError(f"config overrides must be plain data (YAML): {err}") from None
        with st.open_private(folder / OVERRIDES) as fh:
            fh.write(text)
        files.append(str((folder / OVERRIDES).resolve()))
    if files:
        cmd += ["--configfile", *files]
    cmd += [str(a) for a in args]

    import subprocess

    supervisor = [sys.executable, "-m", st.SUPERVISOR, str(folder.resolve()), "--", *cmd]
    with st.open_private(folder / "run.log", "wb") as log:
        proc = subprocess.Popen(
            supervisor,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_child_env(),
            start_new_session=True,
        )
    record = {
        "version": 1,
        "pid": proc.pid,
        "start_ticks": st.start_ticks(proc.pid),
        "started": time.time(),
        "snakefile": str(snakefile),
        "directory": str(workdir),
        "command": cmd,
        "config": json.loads(json.dumps(dict(config or {}))),
    }
    st.write_json(folder / "run.json", record)
    return Workflow(workdir, record, popen=proc)


def attach(directory: str | os.PathLike = ".") -> Workflow:
    """The handle of the last workflow started from a notebook in ``directory``
    (the workflow's working directory), running or ended."""
    workdir = Path(directory).expanduser().resolve()
    if not workdir.is_dir():
        raise NotebookError(f"no such directory: {directory}")
    folder = st.state_dir(workdir)
    record = st.read_json(folder / "run.json")
    if record is None:
        raise NotebookError(f"no workflow was started from a notebook in {workdir}")
    return Workflow(workdir, record)


def dashboard_link(url: str) -> str:
    """A Dask dashboard link that works from this notebook's browser.

    With jupyter-server-proxy installed, through the Jupyter server
    (``{prefix}proxy/PORT/status``, ``{prefix}proxy/HOST:PORT/status`` for another
    machine), where ``prefix`` is JupyterHub's ``JUPYTERHUB_SERVICE_PREFIX`` (``/``
    outside a hub): a facility exposes nothing else. Otherwise the URL as it is.
    """
    import importlib.util

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.port:
        return url  # already a link (Dask's `distributed.dashboard.link` template)
    if importlib.util.find_spec("jupyter_server_proxy") is None:
        return url
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or "/"
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    where = str(parts.port) if parts.hostname in _own_names() else f"{parts.hostname}:{parts.port}"
    query = f"?{parts.query}" if parts.query else ""
    return f"{prefix}proxy/{where}{parts.path or '/status'}{query}"


def _own_names() -> set[str]:
    """This machine's names and addresses (a scheduler here is proxied as localhost)."""
    names = {"127.0.0.1", "localhost", "::1", "0.0.0.0", socket.gethostname(), socket.getfqdn()}
    try:
        import psutil  # a dependency of distributed

        names.update(a.address for addrs in psutil.net_if_addrs().values() for a in addrs)
    except (ImportError, OSError):
        pass
    return names


def _merge(base: dict, extra: Mapping) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


class Workflow:
    """A workflow run started with :func:`run` or found with :func:`attach`."""

    def __init__(self, directory: Path, record: dict, popen=None):
        self.directory = Path(directory)
        self.record = record
        self.snakefile = Path(record.get("snakefile", "Snakefile"))
        self._folder = st.state_dir(self.directory)
        self._popen = popen
        self._reader = LogReader(self._folder / "run.log")
        self._dashboards: dict[str, str | None] = {}
        self._config: dict | None = None
        self._live: list = []  # the live displays of this handle

    def __repr__(self) -> str:
        return f"<swift-rules workflow {self._label()} in {self.directory}: {self.status().state}>"

    def _label(self) -> str:
        try:
            return str(self.snakefile.relative_to(self.directory))
        except ValueError:
            return str(self.snakefile)

    # -- progress ---------------------------------------------------------------------------

    def _alive(self) -> bool:
        # The handle that started the supervisor knows it from its Popen; a handle found
        # with attach() knows it by pid, start time, owner and command line (/proc).
        if self._popen is not None and self._popen.poll() is None:
            return True
        return st.is_our_run(self.record, self._folder)

    def status(self) -> Status:
        """Where the run stands now (a :class:`Status`; ``print`` it for text)."""
        alive = self._alive()
        log = self._reader.update()
        ended = None if alive else st.read_json(self._folder / "exit.json")
        stop = st.read_json(self._folder / "stop.json")
        s = Status(
            state="running",
            directory=str(self.directory),
            snakefile=self._label(),
            started=float(self.record.get("started", time.time())),
            nothing_to_do=log.nothing_to_do,
        )
        if alive:
            if stop or log.terminating:
                s.state = "stopping"
            elif not log.totals and not log.nothing_to_do:
                s.state = "starting"
        else:
            if ended is not None:
                s.returncode = ended.get("returncode")
                s.ended = ended.get("ended")
            if ended is not None and s.returncode == 0:
                s.state = "finished"
            elif stop:
                s.state = "stopped"
            elif ended is not None:
                s.state = "failed"
            else:
                s.state = "lost"
                try:
                    s.ended = os.stat(self._folder / "run.log").st_mtime
                except OSError:
                    s.ended = time.time()
        rules = {r: RuleProgress(r, total=n) for r, n in log.totals.items()}
        for job in log.finished:
            rules.setdefault(job.rule, RuleProgress(job.rule)).done += 1
        for job in log.running.values():
            rules.setdefault(job.rule, RuleProgress(job.rule)).running += 1 if alive else 0
        if s.state != "stopped":
            for job in log.failed:
                rules.setdefault(job.rule, RuleProgress(job.rule)).failed += 1
        s.rules = list(rules.values())
        s.total = sum(log.totals.values())
        s.done = log.steps[0] if log.steps else len(log.finished)
        if log.steps:
            s.total = log.steps[1]
        if alive:
            s.running = [
                RunningJob(j.rule, j.jobid, j.wildcards, j.logs, j.started)
                for j in log.running.values()
            ]
            s.dashboards = self._running_dashboards(log.running.values())
        if s.state in ("failed", "lost", "running", "stopping"):
            s.failures = [
                Failure(j.rule, j.jobid, j.wildcards, j.logs, self._log_tail(j.logs))
                for j in log.failed
            ]
        if s.state == "finished":
            s.message = "nothing to be done: all up to date" if log.nothing_to_do else ""
        elif s.state == "stopped":
            cancelled = len(log.failed) + (len(log.running) if not log.failed else 0)
            s.message = "stopped on request" + (
                f", {cancelled} running job(s) cancelled" if cancelled else ""
            )
        elif s.state == "failed":
            if s.failures:
                s.message = f"{len(s.failures)} job(s) failed"
            else:
                s.error = self._error_text(log)
                lines = s.error.splitlines() or ["Snakemake failed"]
                s.message = next((x.strip() for x in lines if not x.endswith(":")), lines[0])
        elif s.state == "lost":
            s.message = (
                "its process ended without a record (killed, or the machine restarted); "
                "the end of its log follows"
            )
            s.error = self.log(8)
        elif s.failures:
            s.message = f"{len(s.failures)} job(s) failed"
        return s

    def _log_tail(self, logs: list[str], lines: int = 10) -> list[str]:
        for name in logs:
            text = tail(self.directory / name, lines)
            if text:
                return text
        return []

    def _error_text(self, log) -> str:
        blocks = [b for b in log.errors if not b[0].startswith("RuleException")]
        blocks = [
            b
            for b in blocks
            if b != ["WorkflowError:", "At least one job did not complete successfully."]
        ]
        if blocks:
            return "\n".join("\n".join(b) for b in blocks)
        lines = [x for x in tail(self._folder / "run.log", 8) if x.strip()]
        return "\n".join(lines)

    def _running_dashboards(self, jobs) -> list[tuple[str, str]]:
        found = []
        for job in jobs:
            for name in job.logs:
                if name not in self._dashboards or self._dashboards[name] is None:
                    self._dashboards[name] = dashboard_in_log(self.directory / name)
                url = self._dashboards[name]
                if url and url not in (d for _, d in found):
                    found.append((dashboard_link(url), url))
        return found

    def dashboards(self) -> list[str]:
        """Links to the Dask dashboards of the stage jobs running now (through the
        Jupyter server where jupyter-server-proxy is installed)."""
        return [link for link, _ in self.status().dashboards]

    def display(self, interval: float = 1.0):
        """Show the live progress display: a widget in Jupyter (updated by a thread
        of its own: the kernel stays free), the status as text elsewhere."""
        from swift_rules.notebook.display import show

        live = show(self, interval)
        if live is not None:
            self._live.append(live)

    def _ipython_display_(self):
        self.display()

    def wait(self, timeout: float | None = None, check: bool = True, progress: bool | None = None):
        """Wait until the run ends (or ``timeout`` seconds); return its :class:`Status`.

        ``check``: a failed or lost run is an error (its message, in one line).
        ``progress``: print a line at each change (default: outside Jupyter only).
        """
        from swift_rules.notebook.display import in_kernel

        if progress is None:
            progress = not in_kernel()
        deadline = None if timeout is None else time.monotonic() + timeout
        last = None
        while True:
            s = self.status()
            line = s.headline()
            if progress and (s.state, s.done, s.total) != last:
                print(f"[swift-rules] {line}", flush=True)
                last = (s.state, s.done, s.total)
            if not s.is_running:
                break
            if deadline is not None and time.monotonic() >= deadline:
                return s
            time.sleep(0.5)
        if check and s.state in ("failed", "lost"):
            if s.state == "lost":
                head = f"the workflow is lost: {s.message}"
            else:
                detail = f": {s.message}" if s.failures or not s.error else ""
                head = f"the workflow failed{detail}"
            raise WorkflowFailed(f"{head}\n{_failure_text(s)}".rstrip())
        return s

    def stop(self, grace: float = 60.0) -> Status:
        """Stop the run: Snakemake gets SIGINT (it cancels its jobs, on a cluster too,
        and removes the outputs of the jobs it cancels), SIGTERM after ``grace`` seconds,
        SIGKILL 10 s later. Outputs are written atomically: none is left half-written."""
        if not self._alive():
            return self.status()
        st.write_json(self._folder / "stop.json", {"requested": time.time()})
        pgid = self.record["pid"]
        for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            if not self._alive():
                break
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            if st.wait_gone(self.record, self._folder, wait, self._popen):
                break
        if not self._alive():
            ended = st.read_json(self._folder / "exit.json") or {}
            if isinstance(ended.get("snakemake_pid"), int):
                st.wait_warm_server(ended["snakemake_pid"], timeout=15.0)
            self._remove_partial_writes()
        return self.status()

    def _remove_partial_writes(self) -> None:
        """Remove what the cancelled jobs were writing. swift-rules writes every output
        beside it (``.tmp-NAME-*``) and renames it into place, so a cancelled job leaves
        no output; a job killed outright (a warm-start job gets SIGTERM) can leave that
        temporary entry. Only those of the jobs this run cancelled, and only our own."""
        log = self._reader.update()
        jobs = [*log.running.values(), *log.failed]
        for job in jobs:
            for output in job.outputs:
                target = self.directory / output
                try:
                    entries = list(target.parent.glob(f".tmp-{glob.escape(target.name)}-*"))
                except OSError:
                    continue
                for entry in entries:
                    try:
                        info = entry.lstat()
                    except OSError:
                        continue
                    if info.st_uid != os.geteuid():
                        continue
                    if stat.S_ISDIR(info.st_mode):
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        with contextlib.suppress(OSError):
                            entry.unlink()

    def log(self, lines: int = 40) -> str:
        """The last lines of Snakemake's output."""
        return "\n".join(tail(self._folder / "run.log", lines, limit=1 << 20))

    # -- results ----------------------------------------------------------------------------

    @property
    def config(self) -> dict:
        """The run's config: the workflow's config files, then the overrides, validated
        (defaults filled in)."""
        if self._config is None:
            from swift_rules.config import ConfigError, validate_config

            log = self._reader.update()
            if not log.config_files:
                raise NotebookError(
                    "the run's config is not known yet (Snakemake has not started): try again"
                )
            overrides = str((self._folder / OVERRIDES).resolve())
            merged: dict = {}
            for name in log.config_files:
                if name == overrides:
                    continue
                path = self.directory / name
                try:
                    merged = _merge(merged, yaml.safe_load(path.read_text()) or {})
                except (OSError, yaml.YAMLError) as err:
                    raise NotebookError(f"cannot read the run's config {path}: {err}") from None
            merged = _merge(merged, self.record.get("config") or {})
            try:
                self._config = validate_config(merged)
            except ConfigError as err:
                raise NotebookError(str(err)) from None
        return self._config

    @property
    def results(self) -> Path:
        """The results folder (config key ``results``)."""
        return self.directory / self.config["results"]

    def _stage(self, stage: str | None) -> str:
        stages = list(self.config.get("stages") or {})
        if stage is None:
            stage = (self.config.get("analysis") or {}).get("stage")
            if stage is None and len(stages) == 1:
                stage = stages[0]
            if stage is None:
                raise NotebookError(f"name the stage: one of {', '.join(stages)}")
        if stage not in stages:
            raise NotebookError(f"no stage {stage!r} in this workflow; its stages: {stages}")
        return stage

    def _need(self, path: Path, what: str) -> Path:
        if not path.exists():
            s = self.status()
            why = "it is still running" if s.is_running else f"it {s.state}"
            raise NotebookError(f"no {what} yet: {path} does not exist ({why})")
        return path

    def histograms(self, stage: str | None = None) -> dict:
        """The stage's histograms as ``hist`` objects, normalised as exported:
        ``{histogram: {group: hist.Hist}}`` (``results/NS/STAGE/histograms.root``)."""
        from swift_rules.export import ExportError, read_export
        from swift_rules.workflow import stage_dir

        stage = self._stage(stage)
        path = self._need(self.results / stage_dir(stage) / "histograms.root", "histograms")
        try:
            return read_export(path)[0]
        except (ExportError, OSError, ValueError) as err:
            raise NotebookError(f"cannot read {path}: {err}") from None

    def merged(self, stage: str | None = None):
        """The stage's merged output (the processor's, before normalisation), from
        ``merged.pkl``: unpickled only if it is your own file, closed to others."""
        from swift_rules.results import ResultError, load_result
        from swift_rules.workflow import stage_dir

        stage = self._stage(stage)
        path = self._need(self.results / stage_dir(stage) / "merged.pkl", "merged result")
        try:
            return load_result(path)[0]
        except ResultError as err:
            raise NotebookError(str(err)) from None

    def fit_results(self, path: str = "fit/fit_results.json") -> FitResults:
        """A fit's results, the JSON at ``path`` under the results folder (``poi`` and
        ``parameters``, each with ``bestfit`` and ``uncertainty``), shown as a table."""
        path = self._need(self.results / path, "fit results")
        return FitResults(json.loads(path.read_text()))

    def plots(self, pattern: str = "*", show: bool = True) -> list[Path]:
        """The PNG plots under the results folder whose path (relative to it) or name,
        with or without ``.png``, matches ``pattern``; shown inline in Jupyter when
        ``show``. A pattern that matches nothing is an error (it names the plots there)."""
        root = self.results
        found = sorted(
            p
            for p in root.rglob("*.png")
            if "logs" not in p.relative_to(root).parts
            and not any(part.startswith(".tmp-") for part in p.parts)
            and any(
                fnmatch.fnmatch(name, pattern)
                for rel in [p.relative_to(root)]
                for name in (str(rel), str(rel.with_suffix("")), p.name, p.stem)
            )
        )
        if not found:
            names = sorted(str(p.relative_to(root)) for p in root.rglob("*.png"))
            if not names:
                self._need(root / "plots", "plots")
            raise NotebookError(
                f"no plot matches {pattern!r} under {root}; there are: {', '.join(names[:20])}"
                + (" ..." if len(names) > 20 else "")
            )
        if show:
            from swift_rules.notebook.display import show_images

            show_images(found, root)
        return found

    def info(self, path: str | os.PathLike | None = None):
        """The record of a result file (``swift-rules info``; nothing is unpickled), or,
        without a path, ``{path: record}`` of every stage's merged result."""
        from swift_rules.results import ResultError, load_meta
        from swift_rules.workflow import stage_dir

        if path is None:
            out = {}
            for stage in self.config.get("stages") or {}:
                p = self.results / stage_dir(stage) / "merged.pkl"
                if p.exists():
                    out[str(p.relative_to(self.directory))] = load_meta(p)
            return out
        p = Path(path)
        p = p if p.is_absolute() or p.exists() else self.directory / p
        try:
            return load_meta(p)
        except ResultError as err:
            raise NotebookError(str(err)) from None


class WorkflowFailed(NotebookError):
    """The workflow failed: the message says which jobs, with their logs' last lines."""


def _failure_text(s: Status) -> str:
    lines = []
    for f in s.failures:
        where = f" (log: {', '.join(f.logs)})" if f.logs else ""
        lines.append(f"failed: {f.rule} {f.wildcards}{where}".rstrip())
        lines.extend(f"  | {x}" for x in f.tail)
    if s.error:
        lines.append(s.error)
    return "\n".join(lines)


class FitResults(dict):
    """A fit's results (the JSON, as a dict) with a table as its display."""

    @property
    def poi(self) -> tuple[str, float, float]:
        """(name, best-fit value, uncertainty) of the parameter of interest."""
        poi = self.get("poi") or {}
        return poi.get("name", "POI"), poi.get("bestfit"), poi.get("uncertainty")

    @property
    def parameters(self) -> dict[str, tuple[float, float]]:
        """Parameter -> (best-fit value, uncertainty), in the fit's order."""
        return {
            p.get("label"): (p.get("bestfit"), p.get("uncertainty"))
            for p in self.get("parameters") or []
            if isinstance(p, Mapping)
        }

    def _repr_html_(self) -> str:
        import html

        name, value, error = self.poi
        rows = "".join(
            f"<tr><td><code>{html.escape(str(k))}</code></td><td>{_num(v)}</td>"
            f"<td>&plusmn; {_num(u)}</td></tr>"
            for k, (v, u) in self.parameters.items()
        )
        head = (
            f"<p><b>{html.escape(str(name))}</b> = {_num(value)} &plusmn; {_num(error)}"
            f" &middot; converged: {self.get('converged')}</p>"
        )
        return (
            f'<div class="swift-rules-fit">{head}<details><summary>all parameters</summary>'
            f"<table>{rows}</table></details></div>"
        )

    def __str__(self) -> str:
        name, value, error = self.poi
        lines = [f"{name} = {_num(value)} ± {_num(error)}, converged: {self.get('converged')}"]
        lines += [f"  {k:<40} {_num(v)} ± {_num(u)}" for k, (v, u) in self.parameters.items()]
        return "\n".join(lines)


def _num(x) -> str:
    try:
        return f"{float(x):.4g}"
    except (TypeError, ValueError):
        return str(x)
