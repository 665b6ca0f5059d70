"""Sizes of the generated AGC datasets (events per file, files per sample).

Kept apart from the generator so that planning a workflow needs no numpy/uproot.
"""

from __future__ import annotations

from swift_rules.agc.samples import SAMPLE_SETS, sample_name


def _preset(ttbar_nominal, ttbar_var, single_top, wjets):
    events, files = {}, {}
    for process, variation in SAMPLE_SETS:
        if process == "ttbar":
            n, f = ttbar_nominal if variation == "nominal" else ttbar_var
        elif process == "wjets":
            n, f = wjets
        else:
            n, f = single_top
        name = sample_name(process, variation)
        events[name], files[name] = n, f
    return events, files


# ttbar nominal has more events than its variations, as in the real fileset;
# W+jets gets more events than single top because so few of them pass.
DEFAULT_SIZES: dict[str, tuple[dict[str, int], dict[str, int]]] = {
    # ~33k events: CI smoke tests.
    "tiny": _preset((5_000, 2), (2_500, 1), (2_000, 1), (7_000, 1)),
    # ~420k events: the README's default run; several files per set.
    "small": _preset((40_000, 4), (15_000, 2), (10_000, 2), (40_000, 2)),
    # ~5.75M events in files of 250k-500k.
    "benchmark": _preset((500_000, 4), (250_000, 2), (250_000, 1), (500_000, 2)),
}


def preset_total(name: str) -> int:
    """Total number of events of a preset."""
    events, files = DEFAULT_SIZES[name]
    return sum(events[k] * files[k] for k in events)
