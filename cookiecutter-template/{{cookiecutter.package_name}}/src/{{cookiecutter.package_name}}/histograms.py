"""Step 3: the histogram stage `{{ cookiecutter.namespace }}::histograms`, run over the skims.

It reads the skimmed events as NanoAOD (config `schema: nanoaod`: events.Muon,
events.Jet) and fills unweighted histograms with a `process` axis, filled from the
dataset's `process` metadata. swift-rules then normalises them (xsec x luminosity /
events, data unscaled), writes results/{{ cookiecutter.namespace }}/histograms/histograms.root and draws
one figure per 1D histogram, its `process` categories stacked (data overlaid). To split
a dataset into several groups (e.g. by a generator-level flag), fill `process` per event.

The numbers are computed by `dimuon_mass` and `jets_above`, written against an array
namespace `xp` (NumPy here) from flat columns unpacked on the CPU, so that a GPU variant
can run the same code with CuPy (`array_namespace`, `to_host`).
"""

import awkward as ak
import hist
import numpy as np
from coffea import processor


def dimuon_mass(pt1, eta1, phi1, m1, pt2, eta2, phi2, m2, xp=np):
    """Invariant mass of two particles given by (pT, eta, phi, mass), element-wise."""
    px1, py1, pz1 = pt1 * xp.cos(phi1), pt1 * xp.sin(phi1), pt1 * xp.sinh(eta1)
    px2, py2, pz2 = pt2 * xp.cos(phi2), pt2 * xp.sin(phi2), pt2 * xp.sinh(eta2)
    e1 = xp.sqrt(px1**2 + py1**2 + pz1**2 + m1**2)
    e2 = xp.sqrt(px2**2 + py2**2 + pz2**2 + m2**2)
    m2_sum = (e1 + e2) ** 2 - (px1 + px2) ** 2 - (py1 + py2) ** 2 - (pz1 + pz2) ** 2
    return xp.sqrt(xp.maximum(m2_sum, 0.0))


def jets_above(pt, offsets, min_pt: float, xp=np):
    """Per event, the number of jets with pt > min_pt.

    `pt` is the flat array of every jet's pT and `offsets` the event boundaries in it
    (event i owns pt[offsets[i]:offsets[i + 1]]).
    """
    passed = xp.cumsum(pt > min_pt)  # passing jets up to and including each jet
    passed = xp.concatenate([xp.zeros(1, dtype=passed.dtype), passed])
    return passed[offsets[1:]] - passed[offsets[:-1]]


def process_axis():
    # Grows with what is filled: a dataset's histograms hold only its own groups.
    return hist.axis.StrCategory([], name="process", label="process", growth=True)


class Histograms(processor.ProcessorABC):
    """The dimuon mass, the leading muon's pT and the jet multiplicity."""

    # Keyword arguments: config/config.yaml, stages.{{ cookiecutter.namespace }}::histograms.options.
    def __init__(self, mass_bins=35, mass_range=(20.0, 160.0), min_jet_pt=30.0):
        self.mass_bins = mass_bins
        self.mass_range = tuple(mass_range)
        self.min_jet_pt = min_jet_pt

    def required_branches(self) -> list[str]:
        # The skims' columns, checked in every input file before processing starts.
        return ["nMuon", "Muon_pt", "Muon_eta", "Muon_phi", "Muon_mass", "nJet", "Jet_pt"]

    def array_namespace(self):
        """The array library that computes: NumPy (a GPU variant returns CuPy)."""
        return np

    def to_host(self, array) -> np.ndarray:
        """A result as a NumPy array, for the histograms (a GPU variant copies it back)."""
        return array

    def columns(self, events) -> dict[str, np.ndarray]:
        """The flat float64 columns the computations need, unpacked on the CPU."""
        out = {}
        for i in (0, 1):  # the leading two muons (the skim keeps two or more)
            for f in ("pt", "eta", "phi", "mass"):
                out[f"{f}{i + 1}"] = ak.to_numpy(events.Muon[f][:, i]).astype(np.float64)
        out["jet_pt"] = ak.to_numpy(ak.flatten(events.Jet.pt)).astype(np.float64)
        out["jet_offsets"] = np.concatenate([[0], np.cumsum(ak.to_numpy(ak.num(events.Jet)))])
        return out

    def compute(self, columns: dict) -> dict[str, np.ndarray]:
        """Per event: the dimuon mass, the leading muon's pT and the number of jets."""
        xp = self.array_namespace()
        c = {k: xp.asarray(v) for k, v in columns.items()}
        mass = dimuon_mass(*(c[f"{f}{i}"] for i in (1, 2) for f in ("pt", "eta", "phi", "mass")),
                           xp=xp)  # fmt: skip
        njets = jets_above(c["jet_pt"], c["jet_offsets"], self.min_jet_pt, xp)
        return {"mass": self.to_host(mass), "lead_pt": columns["pt1"],
                "njets": self.to_host(njets)}  # fmt: skip

    def histograms(self) -> dict[str, hist.Hist]:
        # Unweighted fills into Weight storage: the variances stay right once swift-rules
        # scales the simulation by xsec x luminosity / events.
        axes = {
            "mass": hist.axis.Regular(self.mass_bins, *self.mass_range, name="mass",
                                      label=r"$m_{\mu\mu}$ [GeV]"),
            "lead_pt": hist.axis.Regular(30, 0.0, 150.0, name="lead_pt",
                                         label=r"leading muon $p_T$ [GeV]"),
            "njets": hist.axis.Integer(0, 8, name="njets", label="number of jets"),
        }  # fmt: skip
        return {name: hist.Hist(process_axis(), axis, storage=hist.storage.Weight())
                for name, axis in axes.items()}  # fmt: skip

    def process(self, events):
        meta = events.metadata
        process = meta.get("process", meta["dataset"])  # the dataset's group in the plots
        values = self.compute(self.columns(events))
        out = self.histograms()
        for name, h in out.items():
            h.fill(process=process, **{name: values[name]})
        return out

    def postprocess(self, accumulator):
        return accumulator
