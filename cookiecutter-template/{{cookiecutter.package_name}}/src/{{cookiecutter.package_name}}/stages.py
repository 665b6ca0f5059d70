"""The example stage `{{ cookiecutter.namespace }}::{{ cookiecutter.stage_name }}`.

A stage is a coffea processor. swift-rules runs it over every sample (one job per group
of files) and merges the outputs: see stages.yaml and workflow/Snakefile.
"""

import awkward as ak
import hist
from coffea import processor


def njets_histogram() -> hist.Hist:
    return hist.Hist.new.Integer(0, 15, name="njets", label="Number of jets").Weight()


class JetMultiplicity(processor.ProcessorABC):
    """Counts events and fills the multiplicity of jets above `min_pt` (GeV)."""

    def __init__(self, min_pt: float = 25.0):  # keyword arguments: stages.<name>.options
        self.min_pt = min_pt

    def required_branches(self) -> list[str]:
        # Checked in every input file before processing starts.
        return ["nJet", "Jet_pt"]

    def count_jets(self, events):
        return ak.to_numpy(ak.sum(events.Jet.pt > self.min_pt, axis=1))

    def process(self, events):
        sample = events.metadata["dataset"]  # PROCESS__VARIATION
        h = njets_histogram()
        h.fill(njets=self.count_jets(events))
        return {"events": {sample: len(events)}, "njets": {sample: h}}

    def postprocess(self, accumulator):
        return accumulator
