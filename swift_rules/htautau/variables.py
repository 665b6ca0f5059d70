"""The variables of the H -> tautau analysis: the skim's columns and their types, the
histogram binning of ``histograms.py`` and the axis labels of ``plot.py``.

Light on purpose (no numpy): planning and the CLI import it.
"""

from __future__ import annotations

# skim.cxx's finalVariables, in its order, with the types its RDataFrame Snapshot writes
# (numpy dtype names): "float" columns of the input stay float32; mt_1 and mt_2 are
# double (compute_mt returns std::sqrt of a double); Sum(goodJets) and the charges and
# decay mode are int; gen_match is bool; weight is the float of the eventWeights map.
FINAL_VARIABLES = {
    "njets": "int32",
    "npv": "int32",
    "pt_1": "float32",
    "eta_1": "float32",
    "phi_1": "float32",
    "m_1": "float32",
    "iso_1": "float32",
    "q_1": "int32",
    "mt_1": "float64",
    "pt_2": "float32",
    "eta_2": "float32",
    "phi_2": "float32",
    "m_2": "float32",
    "iso_2": "float32",
    "q_2": "int32",
    "mt_2": "float64",
    "dm_2": "int32",
    "jpt_1": "float32",
    "jeta_1": "float32",
    "jphi_1": "float32",
    "jm_1": "float32",
    "jbtag_1": "float32",
    "jpt_2": "float32",
    "jeta_2": "float32",
    "jphi_2": "float32",
    "jm_2": "float32",
    "jbtag_2": "float32",
    "pt_met": "float32",
    "phi_met": "float32",
    "m_vis": "float32",
    "pt_vis": "float32",
    "mjj": "float32",
    "ptjj": "float32",
    "jdeta": "float32",
    "gen_match": "bool",
    "run": "int32",
    "weight": "float32",
}
# Added by the port (the original writes `run` only): the event's identity.
EXTRA_COLUMNS = {"luminosityBlock": "uint32", "event": "uint64"}
SKIM_COLUMNS = {**FINAL_VARIABLES, **EXTRA_COLUMNS}

# The filters of skim.cxx, in order, under the names its cut-flow report prints.
SKIM_CUTS = [
    "Passes trigger",
    "nMuon > 0",
    "nTau > 0",
    "Event has good taus",
    "Event has good muons",
    "Valid muon in selected pair",
    "Valid tau in selected pair",
]

# histograms.py's ranges: (bins, lower edge, upper edge), in its order.
DEFAULT_NBINS = 30
RANGES: dict[str, tuple[int, float, float]] = {
    "pt_1": (DEFAULT_NBINS, 17, 70),
    "pt_2": (DEFAULT_NBINS, 20, 70),
    "eta_1": (DEFAULT_NBINS, -2.1, 2.1),
    "eta_2": (DEFAULT_NBINS, -2.3, 2.3),
    "phi_1": (DEFAULT_NBINS, -3.14, 3.14),
    "phi_2": (DEFAULT_NBINS, -3.14, 3.14),
    "iso_1": (DEFAULT_NBINS, 0, 0.10),
    "iso_2": (DEFAULT_NBINS, 0, 0.10),
    "q_1": (2, -2, 2),
    "q_2": (2, -2, 2),
    "pt_met": (DEFAULT_NBINS, 0, 60),
    "phi_met": (DEFAULT_NBINS, -3.14, 3.14),
    "m_1": (DEFAULT_NBINS, 0, 0.2),
    "m_2": (DEFAULT_NBINS, 0, 2),
    "mt_1": (DEFAULT_NBINS, 0, 100),
    "mt_2": (DEFAULT_NBINS, 0, 100),
    "dm_2": (11, 0, 11),
    "m_vis": (DEFAULT_NBINS, 20, 140),
    "pt_vis": (DEFAULT_NBINS, 0, 60),
    "jpt_1": (DEFAULT_NBINS, 30, 70),
    "jpt_2": (DEFAULT_NBINS, 30, 70),
    "jeta_1": (DEFAULT_NBINS, -4.7, 4.7),
    "jeta_2": (DEFAULT_NBINS, -4.7, 4.7),
    "jphi_1": (DEFAULT_NBINS, -3.14, 3.14),
    "jphi_2": (DEFAULT_NBINS, -3.14, 3.14),
    "jm_1": (DEFAULT_NBINS, 0, 20),
    "jm_2": (DEFAULT_NBINS, 0, 20),
    "jbtag_1": (DEFAULT_NBINS, 0, 1.0),
    "jbtag_2": (DEFAULT_NBINS, 0, 1.0),
    "npv": (25, 5, 30),
    "njets": (5, 0, 5),
    "mjj": (DEFAULT_NBINS, 0, 400),
    "ptjj": (DEFAULT_NBINS, 0, 200),
    "jdeta": (DEFAULT_NBINS, -9.4, 9.4),
}

# plot.py's labels (ROOT TLatex), in its order: the order in which it draws the plots.
LABELS = {
    "pt_1": "Muon p_{T} / GeV",
    "pt_2": "Tau p_{T} / GeV",
    "eta_1": "Muon #eta",
    "eta_2": "Tau #eta",
    "phi_1": "Muon #phi",
    "phi_2": "Tau #phi",
    "pt_met": "Missing p_{T} / GeV",
    "phi_met": "Missing p_{T} (#phi)",
    "q_1": "Muon charge",
    "q_2": "Tau charge",
    "iso_1": "Muon isolation",
    "iso_2": "Tau isolation",
    "m_1": "Muon mass / GeV",
    "m_2": "Tau mass / GeV",
    "mt_1": "Muon transverse mass / GeV",
    "mt_2": "Tau transverse mass / GeV",
    "dm_2": "Tau decay mode",
    "m_vis": "Visible di-tau mass / GeV",
    "pt_vis": "Visible di-tau p_{T} / GeV",
    "mjj": "Di-jet mass / GeV",
    "ptjj": "Di-jet p_{T} / GeV",
    "jdeta": "Di-jet #Delta#eta",
    "jpt_1": "Leading jet p_{T} / GeV",
    "jpt_2": "Trailing jet p_{T} / GeV",
    "jeta_1": "Leading jet #eta",
    "jeta_2": "Trailing jet #eta",
    "jphi_1": "Leading jet #phi",
    "jphi_2": "Trailing jet #phi",
    "jm_1": "Leading jet mass / GeV",
    "jm_2": "Trailing jet mass / GeV",
    "jbtag_1": "Leading jet b-tag / GeV",
    "jbtag_2": "Trailing jet b-tag / GeV",
    "npv": "Number of primary vertices",
    "njets": "Number of jets",
}
VARIABLES = list(RANGES)
REGIONS = ["os", "ss"]  # histograms.py: signal region (q_1*q_2 < 0) and control region (> 0)
