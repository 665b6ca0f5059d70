"""Cross-section normalisation of the merged ttbar-stage output."""

from __future__ import annotations

from collections.abc import Mapping

import hist

from swift_rules.agc.samples import event_weight, split_sample_name
from swift_rules.errors import SwiftError


class EmptySampleError(SwiftError, ValueError):
    pass


def normalised_histogram(output: Mapping, events: Mapping[str, int]) -> hist.Hist:
    """Sum the per-sample histograms, each scaled by xsec x lumi / events processed.

    ``events`` are the events actually processed per sample (files skipped as
    unreadable are not counted), from the merged result's record.
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
        process, _ = split_sample_name(sample)
        scaled = hists[sample] * event_weight(process, events[sample])
        total = scaled if total is None else total + scaled
    if total is None:
        raise EmptySampleError("no sample produced any histogram: nothing to normalise")
    return total
