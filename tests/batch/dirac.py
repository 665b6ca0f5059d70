"""The DiracX server and the simulated grid site of the DIRAC tests (tests/fakes/), the
profile run that drives them, and the reference workflow run through profiles/dirac (the
site killing a stage job on the way) beside a local run, which tests/test_dirac.py
compares and checks. A pytest plugin (conftest's
``pytest_plugins``): the server, the site and the runs are made once a session.

The server runs from .venv-diracx (environment/envs.py builds it from PyPI on first
use): where it cannot be built the tests that need it skip, and fail in CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import PROFILE_CONFIG, REPO, merge, snakemake_exe, unavailable


@pytest.fixture(scope="session")
def dirac(tmp_path_factory):
    """The server and the site (slots for 4 jobs at once)."""
    from fakes import dirac_server
    from fakes.dirac_site import Site

    root = tmp_path_factory.mktemp("diracx")
    try:
        server = dirac_server.start(root / "server")
    except Exception as err:
        unavailable(f"cannot start the DiracX test server: {err}")
    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "HOME": str(root), "LANG": "C.UTF-8"}  # fmt: skip
    if os.environ.get("PYTHONPATH"):  # the worker nodes run the swift-rules under test
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    site = Site(server.url, server.credentials("site", "JobAdministrator,NormalUser"),
                server.jobdb, root / "site", env).start()  # fmt: skip
    user = server.credentials("user")
    yield {"server": server, "site": site, "user": user, "root": root}
    site.stop()
    server.stop()


def snakemake(dirac, path: Path, *args, credentials=None, url=None, timeout=300, **kw):
    cmd = [snakemake_exe(), "--profile", str(REPO / "profiles" / "dirac"),
           "--dirac-url", url or dirac["server"].url,
           "--dirac-credentials", str(credentials or dirac["user"]),
           "--seconds-between-status-checks", "1", *args]  # fmt: skip
    return subprocess.run(cmd, cwd=path, capture_output=True, text=True, timeout=timeout, **kw)


def job_ids(dirac, name_prefix: str) -> list[str]:
    return [i for i, r in dirac["site"].ran.items() if r["name"].startswith(name_prefix)]


# --- the reference workflow through profiles/dirac ---------------------------------------

# Three of the nine samples: every rule still runs, in half the DIRAC jobs.
CONFIG = merge(
    PROFILE_CONFIG,
    {"data": {"samples": ["ttbar__nominal", "wjets__nominal", "single_top_tW__nominal"]}},
)


def workflow_dir(root: Path, name: str) -> Path:
    path = root / name
    (path / "config").mkdir(parents=True)
    (path / "config" / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    return path


@pytest.fixture(scope="session")
def dirac_local_run(dirac):
    path = workflow_dir(dirac["root"], "local")
    proc = subprocess.run(
        [snakemake_exe(), "--profile", str(REPO / "profiles" / "local"), "--snakefile",
         str(REPO / "workflow" / "Snakefile"), "--cores", "2"],
        cwd=path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return path


@pytest.fixture(scope="session")
def dirac_profile_run(dirac, dirac_local_run):
    """A first run in which the site kills a stage job, then a rerun that completes."""
    path = workflow_dir(dirac["root"], "dirac")
    # The generated input files, as grid data would be: they travel in the sandboxes of
    # the jobs that read them. (Generating them as DIRAC jobs too would double the run.)
    shutil.copytree(dirac_local_run / "data", path / "data", copy_function=shutil.copy2,
                    ignore=shutil.ignore_patterns("fileset.json"))  # fmt: skip
    site = dirac["site"]
    killed = []

    def kill_first_stage_job(name: str) -> bool:
        if name.startswith("swift_process-") and not killed:
            killed.append(name)
            return True
        return False

    site.kill.append(kill_first_stage_job)
    args = ["--snakefile", str(REPO / "workflow" / "Snakefile"), "--retries", "0"]
    try:
        first = snakemake(dirac, path, *args)
    finally:
        site.kill.clear()
    second = snakemake(dirac, path, *args)
    return {
        "path": path,
        "local": dirac_local_run,
        "first": first,
        "second": second,
        "killed": killed,
    }
