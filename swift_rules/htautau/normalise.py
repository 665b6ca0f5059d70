"""Normalised histograms of ``htautau::histograms``, in the layout of ``swift-rules export``.

The generic layer normalises every stage's histograms (xsec x luminosity / N for each
simulated dataset, N the events processed from its input files; data unscaled), splits
them by their category axes (``m_vis_os``, ``m_vis_ss``) and groups them by ``process``;
it writes ``{name}_{region}/{group}`` into a ROOT file. This module does the same for this
analysis alone (the tests, a run from Python) and reads such files back, so that the QCD
estimate and the plots (:mod:`~swift_rules.htautau.qcd`, :mod:`~swift_rules.htautau.plots`)
work on either.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from swift_rules.htautau.variables import REGIONS


def scale_factor(metadata: Mapping, events: int, luminosity: float) -> float:
    """xsec x luminosity / events for simulation, 1 for data."""
    if metadata.get("is_data"):
        return 1.0
    if events <= 0:
        raise ValueError(f"dataset {metadata.get('dataset')!r}: no events processed")
    return float(metadata["xsec"]) * float(luminosity) / float(events)


def normalised_histograms(outputs: Mapping, luminosity: float) -> dict[str, dict]:
    """``{f"{variable}_{region}": {group: hist.Hist}}`` from per-dataset stage outputs.

    ``outputs``: dataset -> (``{variable: Hist}`` of ``htautau::histograms``, the dataset's
    metadata, the events processed from its input files). Datasets are added in name order.
    """
    out: dict[str, dict] = {}
    for dataset in sorted(outputs):
        hists, metadata, events = outputs[dataset]
        scale = scale_factor(metadata, events, luminosity)
        for variable, h in hists.items():
            for region in REGIONS:
                for group in h.axes["process"]:
                    sliced = h[{"region": region, "process": group}]
                    sliced = sliced * scale if scale != 1.0 else sliced.copy()
                    target = out.setdefault(f"{variable}_{region}", {})
                    target[group] = target[group] + sliced if group in target else sliced
    return out


def write_normalised(path: str | os.PathLike, hists: Mapping[str, Mapping]) -> None:
    """Write ``{name}/{group}`` histograms to a ROOT file, atomically."""
    import uproot

    from swift_rules.atomic import atomic_path

    with atomic_path(path) as tmp, uproot.recreate(tmp) as f:
        for name, groups in sorted(hists.items()):
            for group, h in sorted(groups.items()):
                f[f"{name}/{group}"] = h


_KEY = re.compile(r"^(?P<name>[^/;]+)/(?P<group>[^/;]+)(;\d+)?$")


def read_normalised(path: str | os.PathLike) -> dict[str, dict]:
    """``{name: {group: hist.Hist}}`` of every ``{name}/{group}`` 1D histogram in a ROOT file."""
    import uproot

    out: dict[str, dict] = {}
    with uproot.open(path) as f:
        for key, classname in f.classnames(recursive=True).items():
            match = _KEY.match(key)
            if match and classname.startswith("TH1"):
                out.setdefault(match["name"], {})[match["group"]] = f[key].to_hist()
    return out
