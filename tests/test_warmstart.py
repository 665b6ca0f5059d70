"""Warm start: swift-rules commands forked from a server with the libraries imported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import uproot

from swift_rules import warmstart

SLOW_STAGE = """
import os, time
from pathlib import Path
from coffea import processor


class SlowProcessor(processor.ProcessorABC):
    def process(self, events):
        Path(os.environ["SLOW_PID_FILE"]).write_text(str(os.getpid()))
        time.sleep(120)
        return {}

    def postprocess(self, accumulator):
        return accumulator
"""


@pytest.fixture
def owner():
    """A stand-in for the Snakemake process that a warm server serves."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def warm_env(owner, tmp_path):
    value = warmstart.address(owner.pid)
    yield {**os.environ, warmstart.ENV: value}
    owner.kill()
    owner.wait()
    socket_path = Path(value.split(":", 2)[2])
    wait_for(lambda: not socket_path.exists(), "the server to exit after its owner")


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def socket_of(env) -> Path:
    return Path(env[warmstart.ENV].split(":", 2)[2])


def swift(*args: str, env, cwd, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "swift_rules", *args],
        env=env, cwd=cwd, capture_output=True, text=True, **kwargs,
    )  # fmt: skip


def served_jobs(env) -> list[str]:
    log = Path(f"{socket_of(env)}.log")
    return [line for line in log.read_text().splitlines() if ": swift-rules " in line]


def test_commands_run_in_warm_children_with_cwd_env_streams_and_status(warm_env, tmp_path):
    (tmp_path / "config.yaml").write_text("stages: {agc::ttbar: {}}\n")
    ok = swift("validate", "config.yaml", env=warm_env, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "config.yaml" in ok.stdout + ok.stderr
    # The job's environment reaches the child: the device override is read from it.
    forced = swift(
        "stages", env={**warm_env, "SWIFT_RULES_DEVICE": "gpu"}, cwd=tmp_path, timeout=120
    )
    assert "agc::ttbar" in forced.stdout
    assert "would run: nothing" in forced.stdout  # no GPU variant of it is usable here
    bad = swift("validate", "missing.yaml", env=warm_env, cwd=tmp_path)
    assert bad.returncode != 0
    assert "missing.yaml" in bad.stderr
    assert len(served_jobs(warm_env)) == 3


def test_results_equal_a_cold_run(warm_env, tiny_dataset, tmp_path):
    files = tiny_dataset["ttbar__nominal"][:1]
    args = ["run", "agc::ttbar", "--sample", "ttbar__nominal", "--files", *files, "--workers", "1"]
    cold_env = {k: v for k, v in warm_env.items() if k != warmstart.ENV}
    for name, env in (("cold", cold_env), ("warm", warm_env)):
        proc = swift(*args, "--out", str(tmp_path / f"{name}.pkl"), env=env, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    assert any("agc::ttbar" in line for line in served_jobs(warm_env))
    from swift_rules.results import load_result

    cold, cold_meta = load_result(tmp_path / "cold.pkl")
    warm, warm_meta = load_result(tmp_path / "warm.pkl")
    assert cold_meta["events"] == warm_meta["events"] == cold["nevts"] == warm["nevts"]
    for key, histogram in cold["hists"].items():
        assert np.array_equal(histogram.view(flow=True), warm["hists"][key].view(flow=True))


def test_cancelling_a_job_kills_its_child(warm_env, tmp_path):
    (tmp_path / "slow_stage.py").write_text(SLOW_STAGE)
    data = tmp_path / "one.root"
    with uproot.recreate(data) as f:
        ids = {"run": np.uint32, "luminosityBlock": np.uint32, "event": np.uint64}
        f.mktree("Events", ids)
        f["Events"].extend({name: np.arange(5, dtype=t) for name, t in ids.items()})
    pid_file = tmp_path / "child.pid"
    register = json.dumps({"slow::stage": {"cpu": "slow_stage:SlowProcessor"}})
    client = subprocess.Popen(
        [sys.executable, "-m", "swift_rules", "run", "slow::stage", "--sample", "s__n",
         "--files", str(data), "--out", str(tmp_path / "out.pkl"), "--register", register],
        env={**warm_env, "SLOW_PID_FILE": str(pid_file)}, cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: pid_file.exists() or client.poll() is not None, "the stage to start")
        assert client.poll() is None, f"the job ended early ({client.returncode})"
        child = int(pid_file.read_text())
        assert child != client.pid  # it runs in the server's child, not in the client
        client.send_signal(signal.SIGTERM)  # what Snakemake does to a cancelled job
        client.wait(timeout=30)
        wait_for(lambda: not _alive(child), "the child to be killed", timeout=30)
    finally:
        client.kill()
    assert not (tmp_path / "out.pkl").exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie waiting for the server to reap it is as good as gone.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ", 1)[1][0] != "Z"


def test_no_warm_start_on_another_host_or_when_preload_fails(owner, tmp_path):
    (tmp_path / "config.yaml").write_text("stages: {}\n")
    elsewhere = {**os.environ, warmstart.ENV: f"not-{os.uname().nodename}:{owner.pid}:/nowhere"}
    proc = swift("validate", "config.yaml", env=elsewhere, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not Path("/nowhere").exists()

    env = {**os.environ, warmstart.ENV: warmstart.address(owner.pid),
           warmstart.PRELOAD_ENV: "no_such_module_here"}  # fmt: skip
    proc = swift("validate", "config.yaml", env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr  # ran in the client instead
    failed = Path(f"{socket_of(env)}.failed")
    assert "no_such_module_here" in failed.read_text()
    assert "no_such_module_here" in Path(f"{socket_of(env)}.log").read_text()
    for leftover in (failed, Path(f"{socket_of(env)}.log")):
        leftover.unlink()


def test_offered_only_to_local_jobs_of_the_main_snakemake_process(monkeypatch):
    class Workflow:
        is_main_process = True
        local_exec = True
        dryrun = True  # a real run would start the server at once

    monkeypatch.delenv(warmstart.ENV, raising=False)
    warmstart.offer(Workflow, enabled=True)
    host, pid, path = os.environ[warmstart.ENV].split(":", 2)
    assert (host, int(pid)) == (os.uname().nodename, os.getpid())
    Workflow.local_exec = False  # a cluster executor: jobs run elsewhere
    warmstart.offer(Workflow, enabled=True)
    assert warmstart.ENV not in os.environ
    monkeypatch.setenv(warmstart.ENV, "inherited")
    warmstart.offer(object(), enabled=True)  # Snakemake 7, or a job's own Snakemake
    assert warmstart.ENV not in os.environ
    Workflow.local_exec = True
    warmstart.offer(Workflow, enabled=False)
    assert warmstart.ENV not in os.environ
