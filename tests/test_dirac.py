"""DIRAC, against a real DiracX 0.7.0 server on loopback (tests/fakes/dirac_server.py), with
a harness playing the grid site and its pilots (tests/fakes/dirac_site.py).

- The reference workflow (tiny preset, three samples; the generated input files taken
  from the local run) through profiles/dirac (tests/batch/dirac.py): every job a DIRAC
  job, inputs and outputs in sandboxes. On a first run the site kills a stage job
  (Stalled, then Failed): its Snakemake job fails naming the DIRAC job and the reason;
  the rerun completes (and its results equal a local run's, bit for bit:
  assert_profile_run_equals_local_run).
- A rule that fails (its stderr and exit code in the error), a job that never starts
  (killed after --dirac-start-timeout), a job left Stalled (killed after
  --dirac-stalled-timeout), an expired or refused token and an unreachable server (a
  clear error before any submission), Ctrl-C (the jobs are killed), the GPU tag.
- A stage on Dask workers that are DIRAC jobs (DIRACCluster) started by the site, with
  an open scheduler port and through the connection broker; no worker in time.

The server runs from .venv-diracx (environment/envs.py builds it from PyPI on first
use): where it cannot be built these tests skip, and fail in CI.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from batch.dirac import job_ids, snakemake
from helpers import (
    REPO,
    assert_profile_run_equals_local_run,
    assert_same_result,
    broker_serving,
    ctrl_c_as_at_a_terminal,
    run_cli,
    snakemake_exe,
    stage_args,
)

pytestmark = pytest.mark.slow

TINY_SNAKEFILE = """
rule ok:
    input: "input.txt"
    output: "ok.txt"
    resources: gpu=1
    shell: "cat {input} > {output}; echo fine >> {output}"

rule bad:
    output: "bad.txt"
    shell: "echo boom-from-the-rule >&2; exit 3"

rule slow:
    output: "slow.txt"
    shell: "sleep 600; touch {output}"
"""


def tiny(tmp_path) -> Path:
    (tmp_path / "Snakefile").write_text(TINY_SNAKEFILE)
    (tmp_path / "input.txt").write_text("from the sandbox\n")
    return tmp_path


def test_job_runs_on_the_site_with_the_gpu_tag(dirac, tmp_path):
    path = tiny(tmp_path)
    proc = snakemake(dirac, path, "ok.txt")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert (path / "ok.txt").read_text() == "from the sandbox\nfine\n"
    jdl = dirac["site"].ran[job_ids(dirac, "ok-")[-1]]["jdl"]
    assert jdl["Tags"] == ["GPU"] and jdl["Executable"] == "swift-job.sh", jdl


def test_failed_job_reports_the_dirac_job_and_its_stderr(dirac, tmp_path):
    path = tiny(tmp_path)
    proc = snakemake(dirac, path, "bad.txt", "--retries", "0")
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    job = job_ids(dirac, "bad-")[-1]
    assert f"DIRAC job {job} Failed (Application Finished With Errors" in text, text[-4000:]
    assert "Command exited with status 1" in text and "boom-from-the-rule" in text
    assert not (path / "bad.txt").exists()


def test_job_that_never_starts_is_killed_after_the_start_timeout(dirac, tmp_path):
    path = tiny(tmp_path)
    dirac["site"].hold.append(lambda name: name.startswith("ok-"))
    try:
        started = time.monotonic()
        proc = snakemake(dirac, path, "ok.txt", "--retries", "0", "--dirac-start-timeout", "4")
        elapsed = time.monotonic() - started
    finally:
        dirac["site"].hold.clear()
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "did not start within 4 s (--dirac-start-timeout)" in text, text[-3000:]
    assert "last state Waiting" in text and "the job was killed" in text
    job = text.split("did not start within")[0].rsplit("DIRAC job ", 1)[1].strip()
    assert dirac["server"].states([job])[job] == "Killed"
    assert elapsed < 120


def test_job_stalled_too_long_is_killed_after_the_stalled_timeout(dirac, tmp_path):
    path = tiny(tmp_path)
    site = dirac["site"]
    site.kill.append(lambda name: name.startswith("ok-"))
    site.stall_s = 60  # stalled until the executor gives up on it
    try:
        proc = snakemake(dirac, path, "ok.txt", "--retries", "0", "--dirac-stalled-timeout", "1")
    finally:
        site.kill.clear()
        site.stall_s = 2.0
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "stayed Stalled for 1 s (--dirac-stalled-timeout)" in text, text[-3000:]
    assert "last state Stalled (Job stalled: pilot not running)" in text
    job = text.split(" stayed Stalled")[0].rsplit("DIRAC job ", 1)[1].strip()
    assert dirac["server"].states([job])[job] == "Killed"


def test_expired_and_refused_tokens_fail_before_any_submission(dirac, tmp_path):
    path = tiny(tmp_path)
    server = dirac["server"]
    expired = server.credentials("expired", lifetime=-60)
    refused = tmp_path / "refused.json"  # a well-formed token signed by another key
    refused.write_text(
        expired.read_text().replace(
            json.loads(expired.read_text())["access_token"].rsplit(".", 1)[1], "A" * 86
        )
    )
    refused_data = json.loads(refused.read_text())
    refused_data["expires_on"] = int(time.time()) + 3600
    refused.write_text(json.dumps(refused_data))
    before = len(server.states())
    for creds, why in ((expired, "expired at"), (refused, "HTTP 401")):
        started = time.monotonic()
        proc = snakemake(dirac, path, "ok.txt", credentials=creds)
        text = proc.stdout + proc.stderr
        assert proc.returncode != 0
        assert "DIRAC executor:" in text and why in text and "dirac login" in text, text[-3000:]
        assert text.count("DIRAC executor:") == 1  # one clear error, no retries
        assert time.monotonic() - started < 60
    assert len(server.states()) == before, "a job was submitted with a bad token"


def test_unreachable_server_is_a_clear_error(dirac, tmp_path):
    from fakes import dirac_server

    url = f"http://127.0.0.1:{dirac_server.free_port()}"
    started = time.monotonic()
    proc = snakemake(dirac, tiny(tmp_path), "ok.txt", url=url)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"DIRAC executor: cannot reach DiracX at {url}" in text, text[-3000:]
    assert time.monotonic() - started < 60


def test_ctrl_c_kills_the_dirac_jobs(dirac, tmp_path):
    path = tiny(tmp_path)
    server = dirac["server"]
    before = set(server.states())
    log = tmp_path / "snakemake.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [snakemake_exe(), "--profile", str(REPO / "profiles" / "dirac"), "--dirac-url",
             server.url, "--dirac-credentials", str(dirac["user"]),
             "--seconds-between-status-checks", "1", "slow.txt"],
            cwd=path, stdout=out, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONFAULTHANDLER": "1"},  # SIGABRT: every thread's stack
            preexec_fn=ctrl_c_as_at_a_terminal,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        running = []
        while not running:  # wait until the site runs the job
            assert time.monotonic() < deadline, "the slow job never ran"
            states = server.states()
            running = [i for i, s in states.items() if i not in before and s == "Running"]
            time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        # Cancelling waits for the status check in flight and the kill request: each is
        # one request of up to 30 s, retried once, to a server that may be busy.
        try:
            proc.wait(timeout=150)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # where it hangs, for the failure's message
            proc.wait(timeout=30)
            pytest.fail(f"Snakemake still ran 150 s after Ctrl-C:\n{_hang(log)}")
    finally:
        if proc.poll() is None:
            proc.kill()
    out = log.read_text()
    assert f"Killed DIRAC jobs {running[0]}" in out, out[-3000:]
    assert server.states(running)[running[0]] == "Killed"
    # The site stopped the job's process, as a pilot would.
    deadline = time.monotonic() + 30
    while dirac["site"].ran[running[0]].get("rc") is None:
        assert time.monotonic() < deadline, "the killed job's process still runs"
        time.sleep(0.3)


def _hang(log: Path) -> str:
    """Snakemake's output before the stack dump, then the dump of every thread."""
    text = log.read_text()
    head, _, dump = text.partition("Fatal Python error")
    return f"{head[-4000:]}\n--- the threads at SIGABRT ---\n{dump[-6000:]}"


def _tar(*members: tuple) -> bytes:
    """A tar file of ``(name, bytes)`` files, or ``(name, TarInfo type, link target)``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, *rest in members:
            info = tarfile.TarInfo(name)
            if len(rest) == 1:
                info.size = len(rest[0])
                tar.addfile(info, io.BytesIO(rest[0]))
            else:
                info.type, info.linkname = rest[0], rest[1]
                tar.addfile(info)
    return buf.getvalue()


def test_a_hostile_worker_node_cannot_rewrite_the_workflow(dirac, tmp_path):
    """The site's worker node adds the Snakefile and the config to the job's outputs: the
    job succeeds with its own output, and nothing else of the working directory changes."""
    path = tiny(tmp_path)
    (path / "config").mkdir()
    (path / "config" / "config.yaml").write_text("mine: true\n")
    mine = {p: p.read_bytes() for p in (path / "Snakefile", path / "config" / "config.yaml")}

    def hostile(name: str, folder: Path) -> None:
        if name.startswith("ok-"):
            evil = b'rule all:\n    shell: "echo pwned"\n'
            with tarfile.open(folder / "swift-outputs.tar", "a") as tar:
                for arcname in ("Snakefile", "config/config.yaml", "workflow/Snakefile"):
                    info = tarfile.TarInfo(arcname)
                    info.size = len(evil)
                    tar.addfile(info, io.BytesIO(evil))

    dirac["site"].tamper.append(hostile)
    try:
        proc = snakemake(dirac, path, "ok.txt")
    finally:
        dirac["site"].tamper.clear()
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-4000:]
    assert (path / "ok.txt").read_text() == "from the sandbox\nfine\n"
    assert {p: p.read_bytes() for p in mine} == mine, "the worker node rewrote the workflow"
    assert not (path / "workflow").exists()
    assert "left out: Snakefile, config/config.yaml, workflow/Snakefile" in text, text[-3000:]


# --- the reference workflow through profiles/dirac ---------------------------------------


def test_job_killed_by_the_site_fails_with_the_reason(dirac_profile_run, dirac):
    first = dirac_profile_run["first"]
    text = first.stdout + first.stderr
    assert dirac_profile_run["killed"], "no swift_process job reached the site"
    assert first.returncode != 0
    job = job_ids(dirac, dirac_profile_run["killed"][0])[0]
    assert f"DIRAC job {job} Failed (Stalled: pilot killed by the batch system" in text, text[
        -4000:
    ]
    assert "Error in rule swift_process" in text


def test_rerun_after_a_failure_completes_and_equals_a_local_run_bit_for_bit(dirac_profile_run):
    assert_profile_run_equals_local_run(dirac_profile_run)


def test_every_workflow_job_was_a_dirac_job_with_the_stage_cpu_time(dirac_profile_run, dirac):
    ran = [r for r in dirac["site"].ran.values() if r.get("jdl")]
    rules = {r["name"].rsplit("-", 1)[0] for r in ran}
    assert {"swift_fileset", "swift_process", "swift_merge_sample", "swift_merge",
            "agc_histograms", "agc_provenance"} <= rules, rules  # fmt: skip
    stage = [r["jdl"] for r in ran if r["name"].startswith("swift_process-")]
    # stages.agc::ttbar: runtime 7 minutes, 1 thread; no GPU tag.
    assert all(j["CPUTime"] == 420 and "Tags" not in j for j in stage), stage


# --- Dask workers as DIRAC jobs (DIRACCluster) -------------------------------------------


def dask_on_dirac(dirac) -> dict:
    return {
        "type": "dirac", "maximum_workers": 2, "worker_timeout": 120,
        # An open scheduler port on loopback (no broker here); the site's Python.
        "dirac": {"url": dirac["server"].url, "credentials": str(dirac["user"]),
                  "memory": "1GB", "scheduler_options": {"host": "127.0.0.1"},
                  "worker_extra_args": ["--host", "127.0.0.1"]},
    }  # fmt: skip


def run_stage(path: Path, out: str, executor: dict, workers: int = 2):
    return run_cli(*stage_args(path, out, executor, workers), cwd=path, check=False)


def test_stage_on_dask_workers_that_are_dirac_jobs_equals_local_dask(dirac, dirac_local_run):
    from swift_rules.results import load_result

    path, server = dirac_local_run, dirac["server"]
    before = set(server.states())
    proc = run_stage(path, "dask-dirac.pkl", dask_on_dirac(dirac))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "DIRAC Dask cluster: tcp://127.0.0.1:" in proc.stderr
    assert run_stage(path, "dask-local.pkl", {"type": "local"}).returncode == 0
    assert_same_result(path / "dask-dirac.pkl", path / "dask-local.pkl")
    # The result does not say where it ran (its bytes must not depend on it): the log does.
    assert load_result(path / "dask-dirac.pkl")[1]["stage"] == "agc::ttbar"
    # The workers were DIRAC jobs run by the site, and closing the cluster killed them.
    workers = [i for i in server.states() if i not in before]
    assert workers, "no worker job was submitted"
    jdls = [dirac["site"].ran[i]["jdl"] for i in workers if "jdl" in dirac["site"].ran.get(i, {})]
    assert jdls and all(j["Executable"] == "dask-worker.sh" for j in jdls), jdls
    # None is left running (a worker that saw its scheduler go first ends by itself:
    # Failed, not Killed).
    deadline = time.monotonic() + 30
    while not set(server.states(workers).values()) <= {"Killed", "Failed", "Done"}:
        assert time.monotonic() < deadline, server.states(workers)
        time.sleep(0.5)


def test_stage_on_dirac_workers_through_the_broker(dirac, dirac_local_run, tmp_path):
    """Workers that could not be reached: scheduler and workers meet at the broker. The
    input sandboxes, which stay on the grid's storage, carry a run token, not the
    broker's token: it opens this run's endpoints only, and expires."""
    import re

    token = tmp_path / "broker.token"
    token.write_text("swift-rules-dirac-test-token-0123456789\n")
    token.chmod(0o600)
    log = tmp_path / "broker.log"
    with broker_serving(token, log) as address:
        executor = dask_on_dirac(dirac)
        del executor["dirac"]["scheduler_options"], executor["dirac"]["worker_extra_args"]
        executor["broker"] = {"address": address, "token_file": str(token)}
        before = set(dirac["site"].ran)
        proc = run_stage(dirac_local_run, "dask-broker.pkl", executor)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "DIRAC Dask cluster: broker://127.0.0.1:" in proc.stderr
    if not (dirac_local_run / "dask-local.pkl").exists():
        assert run_stage(dirac_local_run, "dask-local.pkl", {"type": "local"}).returncode == 0
    assert_same_result(dirac_local_run / "dask-broker.pkl", dirac_local_run / "dask-local.pkl")
    jobs = [r for i, r in dirac["site"].ran.items() if i not in before and "dir" in r]
    assert jobs and all((r["dir"] / "dask-broker.token").exists() for r in jobs), jobs
    shipped = {(r["dir"] / "dask-broker.token").read_text() for r in jobs}
    assert len(shipped) == 1, shipped  # one run, one token
    from swift_rules.broker import protocol

    (text,) = shipped
    assert token.read_text().strip() not in text  # not the broker's own token
    run = protocol.credential(text.encode())
    assert run.run and run.expires > time.time(), run
    # Every endpoint of the run (scheduler, nannies, workers) registered as the run's.
    ids = re.findall(r"endpoint (\S+) registered from", log.read_text())
    assert len(ids) >= 3 and all(i.startswith(f"{run.run}.") for i in ids), ids


def test_dirac_that_never_gives_workers_fails_after_worker_timeout(dirac, dirac_local_run):
    dirac["site"].hold.append(lambda name: name.startswith("DIRACCluster"))
    executor = dask_on_dirac(dirac)
    executor["worker_timeout"] = 6
    executor["dirac"]["gpus"] = 1
    before = set(dirac["server"].states())
    try:
        started = time.monotonic()
        proc = run_stage(dirac_local_run, "never.pkl", executor)
        elapsed = time.monotonic() - started
    finally:
        dirac["site"].hold.clear()
    assert proc.returncode != 0
    assert "DIRAC gave no Dask worker within 6 s (executor.worker_timeout)" in proc.stderr, (
        proc.stderr[-3000:]
    )
    assert "Waiting" in proc.stderr
    assert not (dirac_local_run / "never.pkl").exists()
    assert elapsed < 90
    # The waiting worker jobs (asking for the GPU tag) were killed when the job gave up.
    jobs = [i for i in dirac["server"].states() if i not in before]
    assert jobs and set(dirac["server"].states(jobs).values()) == {"Killed"}
    assert all(dirac["site"].jdl(i)["Tags"] == ["GPU"] for i in jobs)


# --- without a server ----------------------------------------------------------------------


def test_jdl_round_trip():
    from swift_rules.dirac.jdl import format_jdl, job_fields, parse_jdl

    fields = job_fields(
        name="swift_process-3", executable="swift-job.sh", arguments='-c "a b" \\x',
        output_sandbox=["swift-outputs.tar"], sites=["LCG.RAL.uk", "LCG.CERN.cern"],
        cpu_time=420, tags=["GPU"], group="swift_user", cores=4,
    )  # fmt: skip
    assert parse_jdl(format_jdl(fields)) == {k: v for k, v in fields.items() if v is not None}
    assert fields["OutputSandbox"] == ["std.out", "std.err", "swift-outputs.tar"]
    assert fields["NumberOfProcessors"] == 4 and "BannedSites" not in format_jdl(fields)


def test_dirac_executor_settings_errors_are_clear(tmp_path):
    from swift_rules.backends import ClusterError, dask_client
    from swift_rules.backends import dirac as backend
    from swift_rules.backends.base import schema_settings
    from swift_rules.dirac.transport import DiracAuthError, DiracXTransport

    with pytest.raises(ClusterError, match=r"executor.dirac: Additional properties.*'site'"):
        schema_settings({"dirac": {"site": "LCG.RAL.uk"}}, "dirac")
    missing = tmp_path / "none.json"
    with (
        pytest.raises(ClusterError, match=f"no DiracX credentials file at {missing}"),
        dask_client({"type": "dirac", "dirac": {"url": "http://127.0.0.1:9",
                                                "credentials": str(missing)}}, 2),
    ):  # fmt: skip
        pass
    with pytest.raises(DiracAuthError, match="dirac login"):
        DiracXTransport("http://127.0.0.1:9", missing).check()
    kwargs = backend.cluster_kwargs({"dirac": {"gpus": 1, "tags": ["8Processors"]}})
    assert kwargs["jdl"]["tags"] == ["8Processors", "GPU"]
    # The scheduler's HTTP pages (worker logs...) on loopback, unless a dashboard is asked for.
    assert kwargs["scheduler_options"]["dashboard_address"] == "127.0.0.1:0"
    asked = backend.cluster_kwargs({"dirac": {"scheduler_options": {"dashboard_address": ":8787"}}})
    assert asked["scheduler_options"]["dashboard_address"] == ":8787"


def test_only_declared_outputs_leave_the_output_sandbox(tmp_path):
    """Undeclared files are left out; links, special files, absolute names and '..'
    refuse the whole tar, and nothing of it reaches the working directory."""
    from swift_rules.dirac.outputs import OutputError, take_outputs

    work, scratch = tmp_path / "work", tmp_path / "scratch"
    (work / "workflow").mkdir(parents=True)
    (work / "workflow" / "Snakefile").write_text("mine\n")
    mine = (work / "workflow" / "Snakefile").read_bytes()
    declared = ["results/a.pkl", "logs/a"]
    extra = take_outputs(
        _tar(("results/a.pkl", b"out"), ("logs/a/job.log", b"log"),
             ("workflow/Snakefile", b"pwned"), ("config/config.yaml", b"pwned")),
        work, declared, scratch,
    )  # fmt: skip
    assert (work / "results/a.pkl").read_bytes() == b"out"
    assert (work / "logs/a/job.log").read_bytes() == b"log"  # a declared folder, whole
    assert (work / "workflow" / "Snakefile").read_bytes() == mine
    assert not (work / "config").exists()
    assert extra == ["config/config.yaml", "workflow/Snakefile"]
    hostile = {
        "a link": ("results/a.pkl", tarfile.SYMTYPE, "../workflow/Snakefile"),
        "a link,": ("results/a.pkl", tarfile.LNKTYPE, "workflow/Snakefile"),
        "a special file": ("results/a.pkl", tarfile.CHRTYPE, ""),
        "outside the working directory": ("../escaped", b"x"),
        "outside the working directory,": ("/tmp/escaped-abs", b"x"),
    }
    for why, member in hostile.items():
        with pytest.raises(OutputError, match=why.rstrip(",")):
            take_outputs(_tar(("logs/a/job.log", b"new log"), member), work, declared, scratch)
        assert (work / "logs/a/job.log").read_bytes() == b"log", why
    assert (work / "workflow" / "Snakefile").read_bytes() == mine
    assert (work / "results/a.pkl").read_bytes() == b"out" and not (tmp_path / "escaped").exists()
    assert list(scratch.iterdir()) == []  # the unpacked copies are gone


def test_profile_with_an_unknown_transport_is_a_clear_error(tmp_path):
    tiny(tmp_path)
    proc = subprocess.run(
        [snakemake_exe(), "--profile", str(REPO / "profiles" / "dirac"), "--dirac-url",
         "http://127.0.0.1:9", "--dirac-transport", "grpc", "ok.txt"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "--dirac-transport: 'grpc' is not diracx or classic" in proc.stdout + proc.stderr


# --- the executor plugin's own logic, without a server -----------------------------------


def plugin_settings(**given):
    from snakemake_executor_plugin_dirac import ExecutorSettings

    return ExecutorSettings(**given)


def test_the_job_script_runs_the_rule_with_the_workers_python_and_packs_the_outputs(tmp_path):
    from snakemake_executor_plugin_dirac.job_script import job_script

    (tmp_path / "config").mkdir()
    config = tmp_path / "config" / "config.yaml"
    cmd = (f"python -m snakemake --snakefile '{tmp_path}/workflow/Snakefile' "
           f"--configfiles {config} --target-jobs 'swift_process:sample=a'")  # fmt: skip
    script = job_script(cmd, rule="swift_process", jobid=7, python="/cvmfs/py/bin/python",
                        outputs=["results/a.pkl", "logs/a it's.log"], workdir=tmp_path,
                        configfiles=[config])  # fmt: skip
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash" and "rule swift_process, Snakemake job 7" in lines[1]
    assert lines[2] == 'PYTHON="${SWIFT_DIRAC_PYTHON:-/cvmfs/py/bin/python}"'
    # The sandbox's copies, by their names under the working directory.
    assert lines[3] == (
        '"$PYTHON" -m snakemake --snakefile workflow/Snakefile '
        "--configfiles config/config.yaml --target-jobs 'swift_process:sample=a'"
    )
    assert "for f in results/a.pkl 'logs/a it'\"'\"'s.log'; do" in script
    assert script.endswith("tar -cf swift-outputs.tar -T swift-outputs.txt\nexit $rc\n")
    # A Snakefile outside the working directory: the same path on the worker.
    elsewhere = job_script("python -m snakemake --snakefile /opt/sw/Snakefile", rule="r",
                           jobid=1, python="python3", outputs=[], workdir=tmp_path)  # fmt: skip
    assert "--snakefile /opt/sw/Snakefile" in elsewhere


def test_the_sandbox_holds_what_lies_under_the_working_directory(tmp_path):
    from snakemake_executor_plugin_dirac.job_script import JOB_SCRIPT, relative, sandbox

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.root").write_bytes(b"x")
    (tmp_path / "config.yaml").write_text("a: 1\n")
    script = tmp_path / ".snakemake" / "job.sh"
    files, outside = sandbox(
        tmp_path, script, [tmp_path / "config.yaml", "missing.smk"],
        ["data/in.root", "/cvmfs/data/other.root"],
    )  # fmt: skip
    assert files == {JOB_SCRIPT: script, "config.yaml": tmp_path / "config.yaml",
                     "data/in.root": tmp_path / "data" / "in.root"}  # fmt: skip
    assert outside == ["/cvmfs/data/other.root"]
    assert relative("/elsewhere/x", tmp_path) is None
    assert relative(tmp_path / "a" / ".." / "b", tmp_path) == "b"


def test_a_jobs_jdl_carries_its_cpu_time_cores_and_gpu_tag():
    from snakemake_executor_plugin_dirac.job_script import fields

    s = plugin_settings(sites="LCG.RAL.uk, LCG.CERN.cern", tags="8Processors", group="g")
    jdl = fields("swift_process-3", {"runtime": 7, "gpu": 1}, 2, s)
    assert jdl["CPUTime"] == 7 * 60 * 2 and jdl["NumberOfProcessors"] == 2
    assert jdl["Tags"] == ["8Processors", "GPU"] and jdl["Site"] == ["LCG.RAL.uk", "LCG.CERN.cern"]
    assert jdl["OutputSandbox"] == ["std.out", "std.err", "swift-outputs.tar"]
    plain = fields("merge-4", {}, 1, plugin_settings(cpu_time=600))
    assert plain["CPUTime"] == 600 and not plain.get("Tags") and not plain.get("NumberOfProcessors")


def test_which_states_end_a_job():
    from snakemake_executor_plugin_dirac.states import NOT_STARTED, outcome

    assert [outcome(s) for s in ("Done", "Completed", "Failed", "Killed", "Deleted")] == [
        "success", "success", "failure", "failure", "failure"]  # fmt: skip
    assert {outcome(s) for s in (*NOT_STARTED, "Running", "Stalled", "Completing")} == {None}


def test_a_job_is_given_up_when_it_never_starts_or_stays_stalled():
    from snakemake_executor_plugin_dirac.states import Clock, overdue

    clock = Clock(submitted=100.0)
    assert overdue("Waiting", clock, 159.0, start_timeout=60, stalled_timeout=30) is None
    assert overdue("Waiting", clock, 160.0, 60, 30) == (
        "did not start within 60 s (--dirac-start-timeout)")  # fmt: skip
    # Rescheduled: queued again, so the start clock restarts.
    assert overdue("Rescheduled", clock, 170.0, 60, 30) is None and clock.submitted == 170.0
    assert overdue("Matched", clock, 229.0, 60, 30) is None
    # A running job is never late; a stalled one for stalled_timeout seconds in a row.
    assert overdue("Running", clock, 10_000.0, 60, 30) is None
    assert overdue("Stalled", clock, 10_000.0, 60, 30) is None and clock.stalled == 10_000.0
    assert overdue("Stalled", clock, 10_029.0, 60, 30) is None
    assert overdue("Running", clock, 10_030.0, 60, 30) is None and clock.stalled is None
    assert overdue("Stalled", clock, 10_040.0, 60, 30) is None
    assert overdue("Stalled", clock, 10_070.0, 60, 30) == (
        "stayed Stalled for 30 s (--dirac-stalled-timeout)")  # fmt: skip


def test_the_transport_is_chosen_by_name(tmp_path, monkeypatch):
    from snakemake_interface_common.exceptions import WorkflowError

    from snakemake_executor_plugin_dirac.transport import make_transport
    from swift_rules.dirac.transport import ClassicTransport, DiracXTransport

    monkeypatch.delenv("DIRACX_URL", raising=False)
    assert isinstance(make_transport(plugin_settings(transport="classic"), tmp_path),
                      ClassicTransport)  # fmt: skip
    assert isinstance(make_transport(plugin_settings(url="http://127.0.0.1:9"), tmp_path),
                      DiracXTransport)  # fmt: skip
    with pytest.raises(WorkflowError, match="no server URL: set --dirac-url or DIRACX_URL"):
        make_transport(plugin_settings(), tmp_path)
    with pytest.raises(WorkflowError, match="'grpc' is not diracx or classic"):
        make_transport(plugin_settings(transport="grpc"), tmp_path)


def test_ctrl_c_during_a_status_check_still_kills_the_jobs():
    """Snakemake takes the jobs off its active list while a status check runs: a Ctrl-C
    then passes no job to cancel, and the executor kills the jobs it knows are unended."""
    import logging
    import threading
    from types import SimpleNamespace

    from snakemake_executor_plugin_dirac import Executor

    killed: list[str] = []
    executor = object.__new__(Executor)  # (its __post_init__ would log in to a server)
    executor._unended, executor._unended_lock = {"7", "12"}, threading.Lock()
    executor.transport = SimpleNamespace(kill=killed.extend)
    executor.logger = logging.getLogger("test")
    executor._ended(SimpleNamespace(external_jobid="12"))  # ended: not killed
    executor.cancel_jobs([])
    assert killed == ["7"]
