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


# --- the test processes (make test runs pytest-xdist with --dist loadgroup) ------------------
# Tests that share a session fixture of a batch system or the browser run in one process,
# so each is set up once; so do the tests of one file (its module fixtures), and the files
# that create local users or network namespaces (useradd takes a lock; one at a time).
BACKEND_FIXTURES = {"htcondor": "htcondor", "slurm": "slurm", "dirac": "dirac"}
SHARED_HOST = {"test_broker", "test_remote", "test_results_security", "test_runner",
               "test_warmstart"}  # fmt: skip


def _group(item) -> str:
    params = getattr(getattr(item, "callspec", None), "params", {})
    names = [*item.fixturenames, *(str(v) for v in params.values())]
    for backend, group in BACKEND_FIXTURES.items():
        if any(name == backend or name.startswith(backend + "_") for name in names):
            return group
    module = item.module.__name__.rpartition(".")[2]
    return "users-and-hosts" if module in SHARED_HOST else module


def pytest_itemcollected(item):  # (before xdist reads the groups, at the end of collection)
    if item.get_closest_marker("xdist_group") is None:  # a test may name its own
        item.add_marker(pytest.mark.xdist_group(_group(item)))
