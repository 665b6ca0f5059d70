"""Shared fixtures: a small generated AGC dataset; as plugins, the fakes of other users
and hosts (tests/fakes/) and the batch systems (tests/batch/). Helpers that tests import
are in helpers.py."""

from __future__ import annotations

import pytest
from helpers import tiny_events

pytest_plugins = [
    # Throwaway local users and another host (a network namespace), for the attack tests.
    "fakes.users",
    "fakes.netns",
    # The batch systems of the backend tests, and their profile runs (tests/batch/).
    "batch.htcondor",
    "batch.slurm",
    "batch.dirac",
]


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
