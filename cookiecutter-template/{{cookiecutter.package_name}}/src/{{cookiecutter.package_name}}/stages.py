"""The example stage `{{ cookiecutter.namespace }}::{{ cookiecutter.stage_name }}`.

A stage is a coffea processor. swift-rules runs it over every sample (one job per group
of files) and merges the outputs: see stages.yaml and workflow/Snakefile.
"""

import awkward as ak
import hist
import numpy as np
from coffea import processor


def njets_histogram() -> hist.Hist:
    return hist.Hist.new.Integer(0, 15, name="njets", label="Number of jets").Weight()


def jets_above(pt, offsets, min_pt: float, xp=np):
    """Per event, the number of jets with pt > min_pt.

    `pt` is the flat array of every jet's pT and `offsets` the event boundaries in it
    (event i owns pt[offsets[i]:offsets[i + 1]]). Written against an array namespace
    `xp` (NumPy here, CuPy in a GPU variant) so that every variant runs this same code.
    """
    passed = xp.cumsum(pt > min_pt)  # passing jets up to and including each jet
    passed = xp.concatenate([xp.zeros(1, dtype=passed.dtype), passed])
    return passed[offsets[1:]] - passed[offsets[:-1]]


class JetMultiplicity(processor.ProcessorABC):
    """Counts events and fills the multiplicity of jets above `min_pt` (GeV)."""

    def __init__(self, min_pt: float = 25.0):  # keyword arguments: stages.<name>.options
        self.min_pt = min_pt

    def required_branches(self) -> list[str]:
        # Checked in every input file before processing starts.
        return ["nJet", "Jet_pt"]

    def array_namespace(self):
        """The array library that counts the jets: NumPy (a GPU variant returns CuPy)."""
        return np

    def to_host(self, array) -> np.ndarray:
        """The result as a NumPy array, for the histogram (a GPU variant copies it back)."""
        return array

    def count_jets(self, events) -> np.ndarray:
        # Files are read and unpacked on the CPU: flat jet pT plus event offsets.
        jet_pt = events.Jet.pt
        pt = ak.to_numpy(ak.flatten(jet_pt)).astype(np.float64)
        offsets = np.concatenate([[0], np.cumsum(ak.to_numpy(ak.num(jet_pt)))])
        xp = self.array_namespace()
        return self.to_host(jets_above(xp.asarray(pt), xp.asarray(offsets), self.min_pt, xp))

    def process(self, events):
        sample = events.metadata["dataset"]  # PROCESS__VARIATION
        h = njets_histogram()
        h.fill(njets=self.count_jets(events))
        return {"events": {sample: len(events)}, "njets": {sample: h}}

    def postprocess(self, accumulator):
        return accumulator
