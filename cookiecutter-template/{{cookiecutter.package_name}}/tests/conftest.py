"""A small generated NanoAOD-format file, and a way to run a stage on it."""

import pytest
from coffea import processor
from coffea.nanoevents import NanoAODSchema
from swift_rules.agc.generate import generate_file

EVENTS = 300


@pytest.fixture(scope="session")
def nanoaod(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "ttbar__nominal_0000.root"
    generate_file(path, "ttbar", "nominal", EVENTS, seed=1)
    return path


@pytest.fixture(scope="session")
def run_stage(nanoaod):
    """run_stage(processor) -> its output on the file, as swift-rules' jobs run it."""
    NanoAODSchema.warn_missing_crossrefs = False
    runner = processor.Runner(processor.IterativeExecutor(), schema=NanoAODSchema)
    fileset = {"ttbar__nominal": {"files": {str(nanoaod): "Events"}}}
    return lambda stage: runner(fileset, stage, treename="Events")
