"""Step 2: the skim `{{ cookiecutter.namespace }}::skim`, run over every dataset's files.

It selects events with two good muons of opposite charge and keeps what the next steps
need of them: their identity (run, luminosityBlock, event), the good muons and jets.
swift-rules writes the selected events of each job as a Parquet file (config `skim:
true`): results/{{ cookiecutter.namespace }}/skim/skims/DATASET/groupNNNN.parquet, which the
histogram stage reads (config `input:`). Lists of records (`Muon`, `Jet`) are written
NanoAOD-style (nMuon, Muon_pt, ...), so the next stage reads them as events.Muon.

Its other output, the cutflow, is exported and drawn like any histogram.
"""

import awkward as ak
import hist
import numpy as np
from coffea import processor

CUTS = ["all", "2 good muons", "opposite charge"]
MUON_FIELDS = ["pt", "eta", "phi", "mass", "charge"]
JET_FIELDS = ["pt", "eta", "phi", "mass", "btagDeepFlavB"]


class Skim(processor.ProcessorABC):
    """Events with two good muons (pT, |eta|, tight ID, isolation) of opposite charge."""

    # Keyword arguments: config/config.yaml, stages.{{ cookiecutter.namespace }}::skim.options.
    def __init__(self, min_muon_pt=20.0, max_muon_eta=2.4, max_muon_isolation=0.15,
                 min_jet_pt=30.0, max_jet_eta=2.5):  # fmt: skip
        self.min_muon_pt = min_muon_pt
        self.max_muon_eta = max_muon_eta
        self.max_muon_isolation = max_muon_isolation
        self.min_jet_pt = min_jet_pt
        self.max_jet_eta = max_jet_eta

    def required_branches(self) -> list[str]:
        """Checked in every input file before processing starts (a clear error if absent)."""
        return [
            "run", "luminosityBlock", "event", "Muon_tightId", "Muon_pfRelIso04_all",
            *(f"Muon_{f}" for f in MUON_FIELDS), *(f"Jet_{f}" for f in JET_FIELDS),
        ]  # fmt: skip

    def good_muons(self, muons):
        return muons[
            (muons.pt > self.min_muon_pt)
            & (abs(muons.eta) < self.max_muon_eta)
            & muons.tightId
            & (muons.pfRelIso04_all < self.max_muon_isolation)
        ]

    def good_jets(self, jets):
        return jets[(jets.pt > self.min_jet_pt) & (abs(jets.eta) < self.max_jet_eta)]

    def process(self, events):
        muons = self.good_muons(events.Muon)
        two = ak.num(muons) >= 2
        charges = ak.pad_none(muons.charge, 2, clip=True)
        opposite = two & ak.fill_none(charges[:, 0] * charges[:, 1] < 0, False)

        passed = [len(events), int(ak.sum(two)), int(ak.sum(opposite))]
        cutflow = hist.Hist.new.StrCat(CUTS, name="cut", label="selection").Weight()
        cutflow.fill(cut=np.repeat(CUTS, passed))  # one entry per event and cut passed

        selected = events[opposite]
        jets = self.good_jets(selected.Jet)
        skim = ak.zip(
            {
                "run": selected.run,
                "luminosityBlock": selected.luminosityBlock,
                "event": selected.event,
                "Muon": ak.zip({f: muons[opposite][f] for f in MUON_FIELDS}),
                "Jet": ak.zip({f: jets[f] for f in JET_FIELDS}),
            },
            depth_limit=1,
        )
        return {"skim": skim, "cutflow": cutflow}

    def postprocess(self, accumulator):
        return accumulator
