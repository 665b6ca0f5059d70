"""Helpers shared by the tests (imported as ``helpers``; fixtures stay in conftest, the
fakes of other machines and services in ``fakes/``). Test files import from here, never
from conftest or from each other."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
NANOAOD = SHARED / "data" / "nanoaod"

# Small enough for CI, large enough that every region and sample is populated.
TINY_EVENTS = {"ttbar__nominal": 4000, "wjets__nominal": 4000}
TINY_DEFAULT_EVENTS = 1500


def tiny_events(sample: str) -> int:
    return TINY_EVENTS.get(sample, TINY_DEFAULT_EVENTS)


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


# What a config needs to plan the AGC on generated data (the workflow's own config has
# the same: config/config.yaml).
AGC_BASE = {
    "registries": ["swift_rules.agc"],
    "data": {"source": "generated", "generated": {"generator": "agc::nanoaod"}},
    "outputs": {"luminosity": 3378.0},
}


def merge(base: dict, extra: dict) -> dict:
    """``base`` with ``extra`` merged in, mapping by mapping."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def agc_config(**sections) -> dict:
    """A config for the AGC on generated data, with ``sections`` merged in."""
    return merge(AGC_BASE, sections)


def coffea_sample(name: str):
    """A real NanoAOD test file from coffea's source distribution on PyPI (the locked
    version), downloaded once into .cache/coffea-samples/. Skips when PyPI is out of
    reach."""
    import tarfile

    repo = REPO
    version = next(
        line.split("==")[1].strip()
        for line in (repo / "environment/requirements.lock").read_text().splitlines()
        if line.startswith("coffea==")
    )
    cache = repo / ".cache" / "coffea-samples" / version
    target = cache / name
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / f"coffea-{version}.tar.gz"
    if not sdist.exists():
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             f"coffea=={version}", "-d", str(cache), "-q"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if proc.returncode != 0 or not sdist.exists():
            pytest.skip(
                f"cannot download coffea {version}'s sources from PyPI: {proc.stderr[-300:]}"
            )
    with tarfile.open(sdist) as tar:
        member = tar.getmember(f"coffea-{version}/tests/samples/{name}")
        data = tar.extractfile(member).read()
    tmp = target.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target
