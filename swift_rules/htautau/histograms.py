"""``htautau::histograms``: the histogramming step of the analysis (``histograms.py``).

Reads the skim's columns (``events.pt_1``: the Parquet skims with ``BaseSchema``), applies
the baseline selection ``mt_1 < 30`` and ``iso_1 < 0.1`` (in double, as ROOT compares
them), and fills every variable of ``histograms.py`` with its binning in the signal
region (``os``: ``q_1 * q_2 < 0``) and the QCD control region (``ss``: ``q_1 * q_2 > 0``).

Histograms are filled unweighted (weight 1, ``Weight`` storage): the generic layer scales
each simulated dataset by xsec x luminosity / N after merging. Their ``process`` axis
holds the dataset's plot group (``events.metadata["process"]``), except Drell-Yan
(``process: DY``), whose events go to ``ZTT`` (``gen_match``) or ``ZLL`` (not), as
``filterGenMatch`` does. Values go into the bins ``TH1::Fill`` would choose
(:func:`swift_rules.htautau.kernels.root_bin`), under- and overflow included.
"""

from __future__ import annotations

import awkward as ak
import hist
import numpy as np
from coffea import processor

from swift_rules.htautau.kernels import bin_values
from swift_rules.htautau.samples import DY_PROCESS, FAKE_TAUS, GENUINE_TAUS
from swift_rules.htautau.variables import LABELS, RANGES, REGIONS

BASELINE_COLUMNS = ("mt_1", "iso_1", "q_1", "q_2")


def new_histogram(variable: str, processes: list[str]) -> hist.Hist:
    """An empty histogram of ``variable`` with the original's binning and the given groups."""
    nbins, low, high = RANGES[variable]
    return hist.Hist(
        hist.axis.Regular(nbins, low, high, name=variable, label=LABELS[variable]),
        hist.axis.StrCategory(REGIONS, name="region"),
        hist.axis.StrCategory(processes, name="process", growth=True),
        storage=hist.storage.Weight(),
    )


class HttHistograms(processor.ProcessorABC):
    """Histograms of every variable of ``histograms.py``: ``{variable: hist.Hist}``.

    Options: ``mt_1_max`` (GeV) and ``iso_1_max``, the baseline cuts (defaults: the
    original's 30 and 0.1); ``dy_process``, the ``process`` whose events are split into
    ZTT and ZLL by ``gen_match``; ``variables``, a subset (default: all 34).
    """

    def __init__(
        self,
        mt_1_max: float = 30.0,
        iso_1_max: float = 0.1,
        dy_process: str = DY_PROCESS,
        variables: list[str] | None = None,
    ):
        self.mt_1_max = float(mt_1_max)
        self.iso_1_max = float(iso_1_max)
        self.dy_process = dy_process
        unknown = sorted(set(variables or []) - set(RANGES))
        if unknown:
            raise ValueError(f"unknown variable(s) {unknown}; known: {list(RANGES)}")
        self.variables = list(variables) if variables else list(RANGES)

    def required_branches(self) -> list[str]:
        return sorted({*BASELINE_COLUMNS, "gen_match", *self.variables})

    def processes(self, metadata) -> list[str]:
        """The ``process`` categories of a dataset's histograms."""
        process = str(metadata.get("process", metadata.get("dataset")))
        return [GENUINE_TAUS, FAKE_TAUS] if process == self.dy_process else [process]

    def _groups(self, events) -> list[tuple[str, np.ndarray | None]]:
        """(process, mask or None for all) of the events of this dataset."""
        processes = self.processes(events.metadata)
        if len(processes) == 1:
            return [(processes[0], None)]
        genuine = ak.to_numpy(events.gen_match).astype(bool)
        return [(GENUINE_TAUS, genuine), (FAKE_TAUS, ~genuine)]

    def process(self, events):
        column = {c: ak.to_numpy(events[c]) for c in BASELINE_COLUMNS}
        baseline = (column["mt_1"].astype(np.float64) < self.mt_1_max) & (
            column["iso_1"].astype(np.float64) < self.iso_1_max
        )
        charge = column["q_1"].astype(np.int64) * column["q_2"].astype(np.int64)
        regions = {"os": baseline & (charge < 0), "ss": baseline & (charge > 0)}
        groups = self._groups(events)
        selections = [
            (region, process, in_region if mask is None else in_region & mask)
            for region, in_region in regions.items()
            for process, mask in groups
        ]
        out = {}
        for variable in self.variables:
            h = new_histogram(variable, [p for p, _ in groups])
            values = bin_values(ak.to_numpy(events[variable]), *RANGES[variable])
            for region, process, selected in selections:
                h.fill(values[selected], region=region, process=process)
            out[variable] = h
        return out

    def postprocess(self, accumulator):
        return accumulator
