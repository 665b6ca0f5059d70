"""Unit tests of the example stage on a small generated NanoAOD-format file."""

import pytest
import uproot
from coffea import processor
from coffea.nanoevents import NanoAODSchema
from swift_rules.agc.generate import generate_file

from {{ cookiecutter.package_name }}.stages import JetMultiplicity

EVENTS = 300


@pytest.fixture(scope="module")
def nanoaod(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "ttbar__nominal_0000.root"
    generate_file(path, "ttbar", "nominal", EVENTS, seed=1)
    return path


def run(stage, path):
    NanoAODSchema.warn_missing_crossrefs = False
    runner = processor.Runner(processor.IterativeExecutor(), schema=NanoAODSchema)
    fileset = {"ttbar__nominal": {"files": {str(path): "Events"}}}
    return runner(fileset, stage, treename="Events")


def test_required_branches_are_in_the_file(nanoaod):
    with uproot.open(nanoaod) as f:
        assert set(JetMultiplicity().required_branches()) <= set(f["Events"].keys())


def test_counts_every_event(nanoaod):
    out = run(JetMultiplicity(), nanoaod)
    assert out["events"]["ttbar__nominal"] == EVENTS
    h = out["njets"]["ttbar__nominal"]
    assert h.sum(flow=True).value == EVENTS
    assert h.values()[4:].sum() > 0  # ttbar events have jets


def test_higher_threshold_fewer_jets(nanoaod):
    mean = {}
    for min_pt in (25.0, 60.0):
        h = run(JetMultiplicity(min_pt=min_pt), nanoaod)["njets"]["ttbar__nominal"]
        counts = h.values(flow=True)
        mean[min_pt] = sum(i * c for i, c in enumerate(counts[1:-1])) / counts.sum()
    assert mean[60.0] < mean[25.0]
