"""The AGC CMS ttbar samples: processes, variations, cross sections and luminosity."""

from __future__ import annotations

# Integrated luminosity of the AGC's 2015 CMS Open Data, in /pb.
LUMINOSITY_PB = 3378.0

# Cross sections in pb, written as the AGC writes them (utils/file_input.py of
# iris-hep/analysis-grand-challenge), so that the floats are the AGC's to the last bit:
# rounded values made single top t-channel histograms 1.55e-5 and W+jets 2.6e-7 off.
CROSS_SECTIONS_PB = {
    "ttbar": 396.87 + 332.97,  # non-all-hadronic + all-hadronic
    "single_top_s_chan": 2.0268 + 1.2676,
    "single_top_t_chan": (36.993 + 22.175) / 0.252,  # from the lepton filter to inclusive
    "single_top_tW": 37.936 + 37.906,
    "wjets": 61457 * 0.252,  # e/mu + nu final states
}

# The nine (process, variation) sample sets of the AGC fileset.
SAMPLE_SETS = [
    ("ttbar", "nominal"),
    ("ttbar", "scaledown"),
    ("ttbar", "scaleup"),
    ("ttbar", "ME_var"),
    ("ttbar", "PS_var"),
    ("single_top_s_chan", "nominal"),
    ("single_top_t_chan", "nominal"),
    ("single_top_tW", "nominal"),
    ("wjets", "nominal"),
]

PROCESSES = list(CROSS_SECTIONS_PB)
REGIONS = ["4j1b", "4j2b"]

# Histogram binning of the observables (HT in 4j1b, m_bjj in 4j2b), GeV.
BINS, LOW, HIGH = 25, 50.0, 550.0


def sample_name(process: str, variation: str) -> str:
    """The name of one sample set, as used in file and rule names: ``ttbar__nominal``."""
    return f"{process}__{variation}"


def split_sample_name(name: str) -> tuple[str, str]:
    process, sep, variation = name.partition("__")
    if not sep or not variation:
        raise ValueError(f"sample name {name!r} is not of the form PROCESS__VARIATION")
    return process, variation


def event_weight(process: str, nevts: int) -> float:
    """Normalisation of one event: cross section x luminosity / events processed."""
    if process not in CROSS_SECTIONS_PB:
        raise KeyError(f"no cross section for process {process!r}; known: {PROCESSES}")
    if nevts <= 0:
        raise ValueError(
            f"sample of process {process!r} has {nevts} events processed: "
            "cannot normalise a sample with no events"
        )
    return CROSS_SECTIONS_PB[process] * LUMINOSITY_PB / nevts
