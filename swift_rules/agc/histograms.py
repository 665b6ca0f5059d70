"""``histograms.root``: the AGC's histogram file, from the merged ttbar-stage ``hist.Hist``.

The input histogram has the axes ``observable`` (25 regular bins, 50-550 GeV),
``region`` ("4j1b", "4j2b"), ``process`` and ``variation`` (string categories) and
``Weight`` storage. The output follows the AGC's key naming:

* ``{region}_{process}`` for the nominal variation,
* ``{region}_{process}_{variation}`` otherwise (``4j1b_ttbar_ME_var``,
  ``4j2b_wjets_scale_var_up``, ``4j1b_ttbar_btag_var_0_up``, ...),
* ``{region}_pseudodata``: (ttbar ME_var + ttbar PS_var) / 2 + wjets nominal.

Histograms keep the full binning, flow bins and the sum of squared weights.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import hist
import numpy as np
import uproot

from swift_rules.agc.samples import PROCESSES, REGIONS
from swift_rules.rootfile import recreate

log = logging.getLogger(__name__)

NOMINAL = "nominal"
PSEUDODATA = "pseudodata"

# Variations every process's nominal samples provide (event weights and jet kinematics).
COMMON_VARIATIONS = [
    *(f"btag_var_{i}_{direction}" for i in range(4) for direction in ("up", "down")),
    "pt_scale_up",
    "pt_res_up",
]
# Variations only some processes have (alternative samples or process-specific weights).
PROCESS_VARIATIONS = {
    "ttbar": ["ME_var", "PS_var", "scaledown", "scaleup"],
    "wjets": ["scale_var_down", "scale_var_up"],
}


class MissingHistogramError(LookupError):
    """A histogram the requested step needs is absent from its input."""

    def __init__(self, missing: Iterable[str], where: str = "", hint: str = ""):
        self.missing = sorted(set(missing))
        msg = f"{len(self.missing)} missing histogram(s): {', '.join(self.missing)}"
        if where:
            msg += f" in {where}"
        if hint:
            msg += f": {hint}"
        super().__init__(msg)

    def __str__(self) -> str:  # LookupError would otherwise print the repr of the args
        return self.args[0]


def histogram_key(region: str, process: str, variation: str = NOMINAL) -> str:
    """The AGC key of one histogram: ``4j1b_ttbar`` or ``4j1b_ttbar_ME_var``."""
    if variation == NOMINAL:
        return f"{region}_{process}"
    return f"{region}_{process}_{variation}"


def variations_for(process: str) -> list[str]:
    """The variations the AGC writes for ``process``, nominal first."""
    return [NOMINAL, *COMMON_VARIATIONS, *PROCESS_VARIATIONS.get(process, [])]


def expected_keys(
    regions: Sequence[str] = REGIONS, processes: Sequence[str] = PROCESSES
) -> list[str]:
    """Every key of a complete AGC ``histograms.root`` (pseudodata included)."""
    keys = []
    for region in regions:
        keys.append(f"{region}_{PSEUDODATA}")
        for process in processes:
            keys.extend(histogram_key(region, process, v) for v in variations_for(process))
    return keys


def _categories(h: hist.Hist, axis: str) -> list[str]:
    try:
        return list(h.axes[axis])
    except KeyError as err:
        raise ValueError(
            f"histogram has no {axis!r} axis; expected axes observable, region, process, "
            f"variation, got {[ax.name for ax in h.axes]}"
        ) from err


def _ordered(present: list[str], preferred: Sequence[str]) -> list[str]:
    """``present`` in the order of ``preferred``, unknown entries after, in axis order."""
    return [p for p in preferred if p in present] + [p for p in present if p not in preferred]


# Variations that are samples of their own; every other variation of a process is
# derived from its nominal sample (event weights, varied jet pT).
SAMPLE_VARIATIONS = {NOMINAL, *PROCESS_VARIATIONS["ttbar"]}


def source_sample(process: str, variation: str) -> tuple[str, str]:
    """The (process, variation) sample a histogram is made from."""
    return (process, variation if variation in SAMPLE_VARIATIONS else NOMINAL)


def available(
    h: hist.Hist,
    process: str,
    variation: str = NOMINAL,
    processed: set[tuple[str, str]] | None = None,
) -> bool:
    """Whether ``(process, variation)`` exists in ``h``.

    ``processed``: the (process, variation) samples the stage ran on. A histogram of a
    processed sample exists even when no event was selected (it is all zeros). Without
    it, growing category axes hold every (process, variation) combination once the
    categories exist, so an unfilled combination reads as all zeros: that counts as
    absent.
    """
    if process not in _categories(h, "process") or variation not in _categories(h, "variation"):
        return False
    if processed is not None:
        return source_sample(process, variation) in processed
    view = h[:, :, process, variation].view(flow=True)
    if h.storage_type is hist.storage.Weight:
        return bool(np.any(view["value"] != 0) or np.any(view["variance"] != 0))
    return bool(np.any(np.asarray(view) != 0))


def select(h: hist.Hist, region: str, process: str, variation: str = NOMINAL) -> hist.Hist:
    """The 1D observable histogram of one (region, process, variation)."""
    if region not in _categories(h, "region"):
        raise MissingHistogramError(
            [histogram_key(region, process, variation)],
            hint=f"region {region!r} not in the histogram (has {_categories(h, 'region')})",
        )
    if not available(h, process, variation):
        raise MissingHistogramError(
            [histogram_key(region, process, variation)],
            hint=f"process {process!r} with variation {variation!r} was not filled",
        )
    return h[:, region, process, variation]


def pseudodata(
    h: hist.Hist,
    region: str,
    ttbar_scale: float | None = None,
    processed: set[tuple[str, str]] | None = None,
) -> hist.Hist:
    """The pseudodata of one region, as a 1D observable histogram.

    ``ttbar_scale=None``: the AGC's pseudodata, (ttbar ME_var + ttbar PS_var) / 2 + wjets
    nominal. A number: an Asimov-like closure data set, ``ttbar_scale`` x ttbar nominal
    plus every other process's nominal (all processes of the histogram must be filled).
    """
    if ttbar_scale is None:
        needed = [("ttbar", "ME_var"), ("ttbar", "PS_var"), ("wjets", NOMINAL)]
    else:
        needed = [(p, NOMINAL) for p in _ordered(_categories(h, "process"), PROCESSES)]
        if "ttbar" not in dict(needed):
            needed.insert(0, ("ttbar", NOMINAL))
    if region not in _categories(h, "region"):
        missing = [histogram_key(region, p, v) for p, v in needed]
    else:
        missing = [
            histogram_key(region, p, v) for p, v in needed if not available(h, p, v, processed)
        ]
    if missing:
        raise MissingHistogramError(missing, hint=f"needed for the {region} pseudodata")
    if ttbar_scale is None:
        return (h[:, region, "ttbar", "ME_var"] + h[:, region, "ttbar", "PS_var"]) / 2 + h[
            :, region, "wjets", NOMINAL
        ]
    total = h[:, region, "ttbar", NOMINAL] * float(ttbar_scale)
    for process, variation in needed:
        if process != "ttbar":
            total = total + h[:, region, process, variation]
    return total


def histograms_to_write(
    h: hist.Hist,
    ttbar_scale: float | None = None,
    processed: set[tuple[str, str]] | None = None,
) -> dict[str, hist.Hist]:
    """Every histogram of ``histograms.root``, by key, in the AGC's order.

    (process, variation) combinations that were not filled are left out (with a log
    message); so is a region's pseudodata whose inputs are missing. The fit step
    reports them by name when it needs them.
    """
    regions = _ordered(_categories(h, "region"), REGIONS)
    processes = _ordered(_categories(h, "process"), PROCESSES)
    out: dict[str, hist.Hist] = {}
    skipped: list[str] = []
    for region in regions:
        try:
            out[f"{region}_{PSEUDODATA}"] = pseudodata(h, region, ttbar_scale, processed)
        except MissingHistogramError as err:
            log.warning("not writing %s_%s: %s", region, PSEUDODATA, err)
        for process in processes:
            for variation in variations_for(process):
                key = histogram_key(region, process, variation)
                if available(h, process, variation, processed):
                    out[key] = h[:, region, process, variation]
                else:
                    skipped.append(key)
    if skipped:
        log.warning("not filled, not written: %s", ", ".join(skipped))
    return out


def write_histograms_root(
    h: hist.Hist,
    path: str | os.PathLike,
    ttbar_scale: float | None = None,
    processed: set[tuple[str, str]] | None = None,
) -> list[str]:
    """Write the AGC ``histograms.root`` (atomically); return the keys written.

    ``ttbar_scale``: see :func:`pseudodata` (None: the AGC's pseudodata).
    ``processed``: the (process, variation) samples the stage ran on; see :func:`available`.
    """
    hists = histograms_to_write(h, ttbar_scale, processed)
    if not hists:
        raise ValueError(f"nothing to write to {path}: the histogram has no filled entries")
    with recreate(path) as f:
        for key, h1 in hists.items():
            f[key] = h1
    return list(hists)


def read_histograms_root(
    path: str | os.PathLike, flow: bool = False
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """All 1D histograms of a ROOT file: ``{key: (values, variances, edges)}``."""
    out = {}
    with uproot.open(path) as f:
        for key in f.keys(cycle=False, filter_classname="TH1*"):
            th1 = f[key]
            out[key] = (
                np.asarray(th1.values(flow=flow), dtype=float),
                np.asarray(th1.variances(flow=flow), dtype=float),
                np.asarray(th1.axis().edges(), dtype=float),
            )
    return out


def load_hists(path: str | os.PathLike, keys: Iterable[str] | None = None) -> dict[str, hist.Hist]:
    """Histograms of a ROOT file as ``hist.Hist`` (all of them, or ``keys``).

    Raises :class:`MissingHistogramError` naming every requested key that is absent.
    """
    path = Path(path)
    with uproot.open(path) as f:
        present = set(f.keys(cycle=False, filter_classname="TH1*"))
        wanted = sorted(present) if keys is None else list(keys)
        missing = [k for k in wanted if k not in present]
        if missing:
            raise MissingHistogramError(missing, where=str(path))
        return {k: f[k].to_hist() for k in wanted}
