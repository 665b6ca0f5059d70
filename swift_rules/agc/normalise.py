"""Cross-section normalisation of the merged ttbar-stage output."""

from __future__ import annotations

from collections.abc import Mapping

import hist

from swift_rules.agc.samples import LUMINOSITY_PB, event_weight, split_sample_name
from swift_rules.errors import SwiftError
from swift_rules.export import scale_factor


class EmptySampleError(SwiftError, ValueError):
    pass


def _process(sample: str, metadata: Mapping | None) -> str:
    meta = (metadata or {}).get(sample) or {}
    return meta.get("process") or split_sample_name(sample)[0]


def processed_sets(record: Mapping) -> set[tuple[str, str]]:
    """(process, variation) of every dataset a merged record counts events for."""
    datasets = record.get("datasets") or {}
    out = set()
    for sample in record["events"]:
        meta = datasets.get(sample) or {}
        if "process" in meta and "variation" in meta:
            out.add((meta["process"], meta["variation"]))
        else:
            out.add(split_sample_name(sample))
    return out


def normalised_histogram(
    output: Mapping, events: Mapping[str, int], metadata: Mapping | None = None
) -> hist.Hist:
    """Sum the per-sample histograms, each scaled by xsec x lumi / events processed.

    ``events`` are the events actually processed per sample (files skipped as
    unreadable are not counted), from the merged result's record; ``metadata`` the
    datasets' metadata from that record: their ``xsec`` where given, else the AGC's.
    """
    hists = output.get("hists", {}) if output else {}
    empty = sorted(s for s, n in events.items() if n == 0)
    if empty:
        raise EmptySampleError(
            f"sample(s) {', '.join(empty)}: the input files hold no events, so they cannot "
            "be normalised; check the fileset or leave these samples out (data.samples)"
        )
    total = None
    for sample in sorted(hists):
        if sample not in events:
            raise KeyError(f"no count of processed events for sample {sample!r}")
        meta = (metadata or {}).get(sample) or {}
        if "xsec" in meta:
            weight = scale_factor(sample, meta, {"events": events}, LUMINOSITY_PB, "events")
        else:
            weight = event_weight(_process(sample, metadata), events[sample])
        scaled = hists[sample] * weight
        total = scaled if total is None else total + scaled
    if total is None:
        raise EmptySampleError("no sample produced any histogram: nothing to normalise")
    return total
