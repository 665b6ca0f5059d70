"""A profile run equals a local run, bit for bit: the reference workflow run through
profiles/htcondor, profiles/slurm and profiles/dirac, each on its batch system
(tests/batch/), gives the histograms, the merged stage output and the event counts of
the same workflow run on this machine. One test over every backend, as distributed's
comm tests are; what is each backend's own (held, cancelled or killed jobs, the jobs'
resources) is checked in tests/test_<backend>.py. Kubernetes has no cluster here: its
profile is checked by a dry run (tests/test_kubernetes.py)."""

from __future__ import annotations

import json

import pytest
from helpers import assert_bitwise_equal, assert_same_result, histograms

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("backend", ["htcondor", "slurm", "dirac"])
def test_a_profile_run_equals_a_local_run_bit_for_bit(backend, request):
    run = request.getfixturevalue(f"{backend}_profile_run")
    path, local = run["path"], run["local"]
    second = run["second"]
    assert second.returncode == 0, (second.stdout + second.stderr)[-5000:]
    assert_bitwise_equal(
        histograms(path / "results/histograms.root"),
        histograms(local / "results/histograms.root"),
    )
    merged = "results/agc/ttbar/merged.pkl"
    assert_same_result(path / merged, local / merged)
    events = [json.loads((p / "results/provenance.json").read_text())["events"]
              for p in (path, local)]  # fmt: skip
    assert events[0] == events[1]
