"""The samples of the H -> tautau outreach analysis, as its ``skim.cxx`` and
``histograms.py`` have them: names, cross sections, event counts, luminosity, labels.

Light on purpose (no numpy): planning a workflow imports it.
"""

from __future__ import annotations

# skim.cxx: const float integratedLuminosity = 11.467 * 1000.0; // Run2012B+C, in /pb.
LUMINOSITY_PB = 11467.0
# The per-run values of its comments (Run2012B only: 4.412 /fb, Run2012C only: 7.055 /fb).
RUN_LUMINOSITY_PB = {"Run2012B_TauPlusX": 4412.0, "Run2012C_TauPlusX": 7055.0}

# Where the original reads its inputs (one reduced NanoAOD file per sample).
EOS_BASE = "root://eospublic.cern.ch//eos/opendata/cms/derived-data/AOD2NanoAODOutreachTool/"

# skim.cxx's sampleNames, in its order, with eventWeights' cross section (pb) and number
# of simulated events (the events of each real file), histograms.py's labels and the
# plot group (``process``) of each: the three W+jets samples are one group, "W", as in
# plot.py; Drell-Yan is split by the histogram stage into ZTT and ZLL (gen_match).
SAMPLES: dict[str, dict] = {
    "GluGluToHToTauTau": {"xsec": 19.6, "nevents": 476963, "process": "ggH", "labels": ["ggH"]},
    "VBF_HToTauTau": {"xsec": 1.55, "nevents": 491653, "process": "qqH", "labels": ["qqH"]},
    "DYJetsToLL": {"xsec": 3503.7, "nevents": 30458871, "process": "DY", "labels": ["ZLL", "ZTT"]},
    "TTbar": {"xsec": 225.2, "nevents": 6423106, "process": "TT", "labels": ["TT"]},
    "W1JetsToLNu": {"xsec": 6381.2, "nevents": 29784800, "process": "W", "labels": ["W1J"]},
    "W2JetsToLNu": {"xsec": 2039.8, "nevents": 30693853, "process": "W", "labels": ["W2J"]},
    "W3JetsToLNu": {"xsec": 612.5, "nevents": 15241144, "process": "W", "labels": ["W3J"]},
    "Run2012B_TauPlusX": {"is_data": True, "process": "data", "labels": ["dataRunB"]},
    "Run2012C_TauPlusX": {"is_data": True, "process": "data", "labels": ["dataRunC"]},
}
SAMPLE_NAMES = list(SAMPLES)
DATA_SAMPLES = [name for name, s in SAMPLES.items() if s.get("is_data")]
MC_SAMPLES = [name for name in SAMPLES if name not in DATA_SAMPLES]

# The Drell-Yan split of histograms.py (filterGenMatch): gen_match true -> ZTT, false -> ZLL.
DY_PROCESS = "DY"
GENUINE_TAUS, FAKE_TAUS = "ZTT", "ZLL"
DATA = "data"

# plot.py: the QCD multijet estimate is the same-sign data minus these simulated groups
# (W1J + W2J + W3J, TT, ZLL, ZTT; not the signals), negative bins set to zero, times 0.80.
QCD = "QCD"
QCD_SUBTRACTED = ("W", "TT", "ZLL", "ZTT")
QCD_SCALE_FACTOR = 0.80
# plot.py draws the signals scaled: ggH x 10, qqH x 100.
SIGNAL_SCALES = {"ggH": 10.0, "qqH": 100.0}
# Every plot group, in plot.py's stacking order (bottom to top), then signals and data.
STACK = ["QCD", "TT", "W", "ZLL", "ZTT"]
SIGNALS = ["ggH", "qqH"]
GROUPS = [*STACK, *SIGNALS, DATA]


def metadata(name: str) -> dict:
    """The dataset metadata of one real sample, as the stages read it: ``is_data``,
    ``process`` and, for simulation, ``xsec`` (pb)."""
    sample = SAMPLES[name]
    out = {"is_data": bool(sample.get("is_data", False)), "process": sample["process"]}
    if not out["is_data"]:
        out["xsec"] = sample["xsec"]
    return out
