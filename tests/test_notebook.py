"""The notebook API (swift_rules.notebook) outside Jupyter: Snakemake's log read as
progress, the private state folder, a run that outlives its starter, stop, errors as
one message, Dask dashboard links. The notebooks themselves, in JupyterLab and a real
browser: tests/test_notebook_examples.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import REPO, snakemake_exe

import swift_rules.notebook as sn
from swift_rules.notebook import state as st
from swift_rules.notebook.progress import LogReader

# What Snakemake 9.27 prints for a run with -k where one job fails (trimmed).
LOG = """\
Config file config/config.yaml is extended by additional config specified via the command line.
  Config file(s): [PosixPath('/w/.swift-rules/notebook/config.yaml'), 'config/config.yaml']
Building DAG of jobs...
Job stats:
job      count
-----  -------
a            1
c            3
all          1
total        5

Select jobs to execute...
Execute 2 jobs...

[Wed Dec  2 00:37:00 2026]
localrule a:
    output: a.txt
    log: logs/a.log
    jobid: 1
    reason: Missing output files: a.txt
    resources: tmpdir=/tmp
[Wed Dec  2 00:37:00 2026]
localrule c:
    output: c0.txt
    jobid: 3
    wildcards: i=0
RuleException:
CalledProcessError in file "/tmp/smx/Snakefile", line 6:
Command 'exit 3' returned non-zero exit status 3.
[Wed Dec  2 00:37:00 2026]
Error in rule a:
    message: None
    jobid: 1
    output: a.txt
    log: logs/a.log (check log file(s) for error details)
    shell:
        exit 3
        (command exited with non-zero exit code)
[Wed Dec  2 00:37:01 2026]
Finished jobid: 3 (Rule: c)
1 of 5 steps (20%) done
[Wed Dec  2 00:37:02 2026]
localrule c:
    output: c1.txt
    jobid: 4
    wildcards: i=1
"""


def test_snakemake_log_read_as_progress():
    state = LogReader("/nonexistent").feed(LOG)
    assert state.totals == {"a": 1, "c": 3, "all": 1}
    assert state.steps == (1, 5)
    assert [(j.rule, j.jobid) for j in state.finished] == [("c", "3")]
    assert [(j.rule, j.wildcards) for j in state.running.values()] == [("c", "i=1")]
    assert state.running["4"].outputs == ["c1.txt"]
    (failed,) = state.failed
    assert (failed.rule, failed.jobid, failed.logs) == ("a", "1", ["logs/a.log"])
    assert failed.outputs == ["a.txt"]
    assert state.config_files == ["/w/.swift-rules/notebook/config.yaml", "config/config.yaml"]
    # Snakemake 7's "Finished job N." names the job only by its id.
    state7 = LogReader("/nonexistent").feed(LOG + "Finished job 4.\n2 of 5 steps (40%) done\n")
    assert [j.rule for j in state7.finished] == ["c", "c"] and not state7.running


def test_log_read_as_it_grows(tmp_path):
    log = tmp_path / "run.log"
    reader = LogReader(log)
    assert reader.update().totals == {}  # no log yet
    half = len(LOG) // 2
    log.write_text(LOG[:half])
    reader.update()
    with open(log, "a") as fh:
        fh.write(LOG[half:])
    state = reader.update()
    assert state.steps == (1, 5) and len(state.failed) == 1


TOY = """\
rule all:
    input: "a.txt", expand("c{i}.txt", i=range(2))

rule a:
    output: "a.txt"
    log: "logs/a.log"
    shell: "echo 'reading events' > {log}; echo 'the cut is wrong' >> {log}; exit 3"

rule c:
    output: "c{i}.txt"
    log: "logs/c{i}.log"
    params: line="[swift-rules] Dask dashboard: http://127.0.0.1:8787/status"
    shell: "echo {params.line:q} > {log}; sleep SLEEP; touch {output}"
"""


def toy(path: Path, sleep: float = 0.1) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "Snakefile").write_text(TOY.replace("SLEEP", str(sleep)))
    return path


@pytest.fixture(autouse=True)
def _snakemake_here():
    snakemake_exe()  # skips where Snakemake is not installed


def test_failed_job_shown_with_its_log_and_raised_as_one_message(tmp_path):
    work = toy(tmp_path / "w")
    wf = sn.run(work, cores=2, args=["--keep-going"])
    with pytest.raises(sn.WorkflowFailed) as err:
        wf.wait(timeout=120)
    s = wf.status()
    assert s.state == "failed" and s.returncode != 0
    assert {r.rule: (r.done, r.total, r.failed) for r in s.rules} == {
        "a": (0, 1, 1),
        "c": (2, 2, 0),
        "all": (0, 1, 0),
    }
    (failure,) = s.failures
    assert failure.logs == ["logs/a.log"] and failure.tail == ["reading events", "the cut is wrong"]
    assert "the cut is wrong" in str(s) and "the cut is wrong" in s._repr_html_()
    assert 'data-state="failed"' in s._repr_html_()
    # IPython and Jupyter show a swift-rules error as its message, not a traceback.
    assert err.value._render_traceback_()[0].startswith("WorkflowFailed: the workflow failed")
    assert "the cut is wrong" in str(err.value)
    # Any later process attaches and reads the same.
    again = sn.attach(work).status()
    assert (again.state, again.done, again.total) == (s.state, s.done, s.total)


def test_run_outlives_its_starter_and_is_stopped(tmp_path):
    """A run started by a process that then exits (a kernel restarted) goes on; attach
    finds it, its Dask dashboard link goes through the Jupyter server where
    jupyter-server-proxy is installed, and stop() ends it and its jobs."""
    work = toy(tmp_path / "w", sleep=60)
    starter = textwrap.dedent(f"""
        import swift_rules.notebook as sn
        sn.run({str(work)!r}, cores=2, targets=["c0.txt", "c1.txt"])
    """)
    subprocess.run([sys.executable, "-c", starter], check=True, timeout=60)
    wf = sn.attach(work)
    deadline = time.monotonic() + 90
    while len(wf.status().running) < 2:
        assert wf.status().is_running, wf.log()
        assert time.monotonic() < deadline, wf.log()
        time.sleep(0.3)
    s = wf.status()
    assert s.state == "running" and {j.rule for j in s.running} == {"c"}
    pytest.importorskip("jupyter_server_proxy")
    assert wf.dashboards() == ["/proxy/8787/status"]
    assert 'href="/proxy/8787/status"' in s._repr_html_()
    with pytest.raises(sn.NotebookError, match="still running"):
        sn.run(work, cores=1)
    t0 = time.monotonic()
    s = wf.stop(grace=30)
    assert time.monotonic() - t0 < 30
    assert s.state == "stopped" and "cancelled" in s.message
    assert not st.is_our_run(wf.record, st.state_dir(work))
    assert not list(work.glob("c*.txt"))  # Snakemake removed the cancelled jobs' outputs
    assert not _processes_in(work)
    # The next run starts cleanly.
    toy(work, sleep=0.1)
    assert sn.run(work, cores=2, targets=["c0.txt"], config={"x": 1}).wait(60).state == "finished"


def _processes_in(folder: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if Path(os.readlink(proc / "cwd")) == folder:
                    found.append(int(proc.name))
            except OSError:
                pass
    return found


def test_nothing_to_do_and_config_overrides(tmp_path):
    work = toy(tmp_path / "w")
    (work / "Snakefile").write_text(
        'configfile: "config.yaml"\n'
        'rule all:\n    output: "n.txt"\n'
        '    params: n=config["n"]["value"]\n'
        '    shell: "echo {params.n} > {output}"\n'
    )
    (work / "config.yaml").write_text("n: {value: 1, other: 2}\n")
    assert sn.run(work, cores=1, config={"n": {"value": 7}}).wait(60).state == "finished"
    assert (work / "n.txt").read_text() == "7\n"  # a number stays a number, merged in depth
    s = sn.run(work, cores=1, config={"n": {"value": 7}}).wait(60)
    assert s.state == "finished" and s.nothing_to_do and "nothing to be done" in s.message


def test_config_error_reads_as_on_the_command_line(tmp_path):
    work = tmp_path / "agc"
    for name in ("workflow", "config", "profiles"):
        shutil.copytree(REPO / name, work / name)
    wf = sn.run(work, profile="profiles/local", cores=1,
                config={"data": {"generated": {"preset": "huge"}}})  # fmt: skip
    with pytest.raises(sn.WorkflowFailed) as err:
        wf.wait(timeout=120)
    text = str(err.value)
    assert "ConfigError" in text and "'huge' is not a preset" in text
    assert "Traceback" not in text and 'File "' not in text
    assert "'huge' is not a preset" in wf.status().message


def test_user_errors_are_one_line(tmp_path):
    with pytest.raises(sn.NotebookError, match="no such Snakefile or project directory"):
        sn.run(tmp_path / "nowhere")
    with pytest.raises(sn.NotebookError, match="has no Snakefile"):
        sn.run(tmp_path)
    with pytest.raises(sn.NotebookError, match="no workflow was started from a notebook"):
        sn.attach(tmp_path)
    err = sn.NotebookError("something is wrong")
    assert err._render_traceback_() == ["NotebookError: something is wrong"]


def test_state_folder_must_be_private_and_ours(tmp_path):
    work = toy(tmp_path / "w")
    folder = st.state_dir(work, create=True)
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    assert oct(folder.parent.stat().st_mode & 0o777) == "0o700"
    folder.chmod(0o750)
    with pytest.raises(sn.NotebookError, match="open to others"):
        sn.attach(work)
    folder.chmod(0o700)
    if os.geteuid() == 0:  # another user's folder (only root can make one here)
        os.chown(folder, 12345, 12345)
        with pytest.raises(sn.NotebookError, match="not to you"):
            sn.run(work)
        os.chown(folder, 0, 0)
    shutil.rmtree(folder)
    folder.symlink_to(tmp_path)
    with pytest.raises(sn.NotebookError, match="not a folder"):
        sn.run(work)


def test_a_reused_pid_is_never_signalled(tmp_path):
    """A record naming a live process that is not the run's supervisor (the pid was
    reused, or the file was planted) is a run that ended: nothing is signalled."""
    work = toy(tmp_path / "w")
    folder = st.state_dir(work, create=True)
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        record = {"pid": sleeper.pid, "start_ticks": st.start_ticks(sleeper.pid), "started": 0}
        st.write_json(folder / "run.json", record)
        wf = sn.attach(work)
        assert wf.status().state == "lost"
        wf.stop(grace=1)
        assert sleeper.poll() is None  # still alive: never signalled
    finally:
        sleeper.kill()
        sleeper.wait()


def test_dashboard_links(monkeypatch):
    pytest.importorskip("jupyter_server_proxy")
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    assert sn.dashboard_link("http://127.0.0.1:8787/status") == "/proxy/8787/status"
    assert sn.dashboard_link("http://10.1.2.3:8787/status") == "/proxy/10.1.2.3:8787/status"
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/alice/")
    assert sn.dashboard_link("http://localhost:40123/status") == "/user/alice/proxy/40123/status"
    # Already a link (Dask's distributed.dashboard.link template): kept.
    assert sn.dashboard_link("/user/alice/proxy/8787/status") == "/user/alice/proxy/8787/status"
