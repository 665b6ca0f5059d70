"""Shared fixtures: a small generated AGC dataset, and helpers to run the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Throwaway local users and another host (a network namespace), for the attack tests.
pytest_plugins = ["users", "netns"]

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
NANOAOD = SHARED / "data" / "nanoaod"

# Small enough for CI, large enough that every region and sample is populated.
TINY_EVENTS = {"ttbar__nominal": 4000, "wjets__nominal": 4000}
TINY_DEFAULT_EVENTS = 1500


def tiny_events(sample: str) -> int:
    return TINY_EVENTS.get(sample, TINY_DEFAULT_EVENTS)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> dict[str, list[str]]:
    """Generated files of all nine AGC samples: {sample: [paths]} (two files for ttbar)."""
    from swift_rules.agc.generate import generate_dataset
    from swift_rules.agc.samples import SAMPLE_SETS, sample_name

    out = tmp_path_factory.mktemp("tiny")
    names = [sample_name(p, v) for p, v in SAMPLE_SETS]
    files = {n: 2 if n == "ttbar__nominal" else 1 for n in names}
    generate_dataset(
        out,
        events_per_file={n: tiny_events(n) for n in names},
        files_per_sample=files,
        seed=7,
    )
    return {n: sorted(str(p) for p in (out / n).glob("*.root")) for n in names}


def nanoaod_file(name: str) -> Path:
    path = NANOAOD / name
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared is only beside the developers' checkout)")
    return path


def run_cli(*args: str, cwd=None, check=True, env=None) -> subprocess.CompletedProcess:
    """Run ``swift-rules ARGS`` the way the rules do, in a subprocess."""
    cmd = [sys.executable, "-m", "swift_rules", *args]
    proc = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def snakemake_exe() -> str:
    exe = shutil.which("snakemake") or str(Path(sys.executable).with_name("snakemake"))
    if not Path(exe).exists():
        pytest.skip("snakemake is not installed")
    return exe
