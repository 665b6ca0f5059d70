"""Helpers shared by the tests (imported as ``helpers``; fixtures stay in conftest)."""

from __future__ import annotations

import copy

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
    import subprocess
    import sys
    import tarfile
    from pathlib import Path

    import pytest

    repo = Path(__file__).resolve().parents[1]
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
