"""Sizes of the generated H -> tautau datasets, and what they stand for.

Light on purpose (no numpy): the generator's registration and planning import it.
"""

from __future__ import annotations

from swift_rules.htautau.samples import LUMINOSITY_PB, RUN_LUMINOSITY_PB, SAMPLE_NAMES, SAMPLES

# The toy's data stands for the original's 11.467 /fb: DATA_EVENTS events (both runs, split
# by run luminosity), of which DATA_COMPOSITION[process] come from each toy process (QCD
# multijet only in data). A simulated sample's effective cross section follows: its share of
# the data divided by the luminosity, so that xsec x 11467 /pb / N matches the data.
DATA_EVENTS = {"tiny": 10_000, "small": 100_000, "benchmark": 500_000}
DATA_COMPOSITION = {
    "GluGluToHToTauTau": 0.0064,
    "VBF_HToTauTau": 0.0007,
    "DYJetsToLL": 0.284,
    "TTbar": 0.096,
    "W1JetsToLNu": 0.267,
    "W2JetsToLNu": 0.135,
    "W3JetsToLNu": 0.058,
    "QCD": 0.1529,
}

# Simulated events per preset: (events per file, files) of each simulated dataset.
_SIM = {
    "tiny": {
        "GluGluToHToTauTau": (2_000, 1),
        "VBF_HToTauTau": (2_000, 1),
        "DYJetsToLL": (6_000, 1),
        "TTbar": (3_000, 1),
        "W1JetsToLNu": (3_000, 1),
        "W2JetsToLNu": (3_000, 1),
        "W3JetsToLNu": (3_000, 1),
    },
    "small": {
        "GluGluToHToTauTau": (20_000, 1),
        "VBF_HToTauTau": (20_000, 1),
        "DYJetsToLL": (50_000, 2),
        "TTbar": (20_000, 1),
        "W1JetsToLNu": (40_000, 2),
        "W2JetsToLNu": (30_000, 1),
        "W3JetsToLNu": (30_000, 1),
    },
    "benchmark": {
        "GluGluToHToTauTau": (250_000, 1),
        "VBF_HToTauTau": (250_000, 1),
        "DYJetsToLL": (500_000, 4),
        "TTbar": (500_000, 1),
        "W1JetsToLNu": (500_000, 2),
        "W2JetsToLNu": (500_000, 1),
        "W3JetsToLNu": (500_000, 1),
    },
}
_DATA_FILES = {"tiny": 1, "small": 1, "benchmark": 2}
PRESETS = list(_SIM)


def data_events(dataset: str, preset: str) -> int:
    """Events of one data run, all its files together."""
    share = RUN_LUMINOSITY_PB[dataset] / sum(RUN_LUMINOSITY_PB.values())
    return round(DATA_EVENTS[preset] * share)


def effective_xsec(dataset: str, preset: str) -> float:
    """The generated sample's cross section (pb): the original's times the fraction of its
    phase space the toy stands for, so that xsec x 11467 /pb / N matches the data."""
    return DATA_COMPOSITION[dataset] * DATA_EVENTS[preset] / LUMINOSITY_PB


def metadata(dataset: str, preset: str) -> dict:
    """The metadata of a generated dataset: the real sample's, with the effective ``xsec``
    (and the original one as ``xsec_original``, their ratio as ``filter_efficiency``)."""
    sample = SAMPLES[dataset]
    meta = {"is_data": bool(sample.get("is_data", False)), "process": sample["process"]}
    if not meta["is_data"]:
        meta["xsec"] = effective_xsec(dataset, preset)
        meta["xsec_original"] = sample["xsec"]
        meta["filter_efficiency"] = meta["xsec"] / sample["xsec"]
    return meta


def datasets(preset: str) -> dict[str, dict]:
    """``{dataset: {"files", "events" (per file), "metadata"}}`` of a preset."""
    if preset not in _SIM:
        raise KeyError(f"unknown preset {preset!r}; known: {sorted(_SIM)}")
    out = {}
    for name in SAMPLE_NAMES:
        if SAMPLES[name].get("is_data"):
            files = _DATA_FILES[preset]
            total = data_events(name, preset)
            if total % files:
                raise ValueError(f"{total} data events of {name} do not split into {files}")
            events = total // files
        else:
            events, files = _SIM[preset][name]
        out[name] = {"files": files, "events": events, "metadata": metadata(name, preset)}
    return out
