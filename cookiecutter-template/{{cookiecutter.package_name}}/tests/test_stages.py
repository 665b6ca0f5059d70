"""Unit tests of the example stage on a small generated NanoAOD-format file."""

import numpy as np
import pytest
import uproot
from conftest import EVENTS

from {{ cookiecutter.package_name }}.stages import JetMultiplicity, jets_above


def test_required_branches_are_in_the_file(nanoaod):
    with uproot.open(nanoaod) as f:
        assert set(JetMultiplicity().required_branches()) <= set(f["Events"].keys())


def test_counts_every_event(run_stage):
    out = run_stage(JetMultiplicity())
    assert out["events"]["ttbar__nominal"] == EVENTS
    h = out["njets"]["ttbar__nominal"]
    assert h.sum(flow=True).value == EVENTS
    assert h.values()[4:].sum() > 0  # ttbar events have jets


def test_higher_threshold_fewer_jets(run_stage):
    mean = {}
    for min_pt in (25.0, 60.0):
        h = run_stage(JetMultiplicity(min_pt=min_pt))["njets"]["ttbar__nominal"]
        counts = h.values(flow=True)
        mean[min_pt] = sum(i * c for i, c in enumerate(counts[1:-1])) / counts.sum()
    assert mean[60.0] < mean[25.0]


@pytest.mark.parametrize(
    "events",
    [
        [[30.0, 20.0, 50.0], [], [10.0], [26.0, 25.0], []],  # events without jets
        [[], []],  # no jets at all
        [],  # an empty chunk
    ],
)
def test_jets_above_counts_per_event(events):
    flat = np.array([pt for jets in events for pt in jets], dtype=np.float64)
    offsets = np.cumsum([0] + [len(jets) for jets in events])
    expected = [sum(pt > 25.0 for pt in jets) for jets in events]
    assert jets_above(flat, offsets, 25.0).tolist() == expected
