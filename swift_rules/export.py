"""A stage's histograms, normalised and grouped, in a ROOT file that needs no unpickling.

Works for any stage. The histograms are the ``hist.Hist`` objects anywhere in a
dataset's merged output; a key equal to the dataset's name is dropped from their
name (``{"mass": {dataset: h}}`` and ``{dataset: {"mass": h}}`` both give ``mass``).

- **Normalisation**: each simulated dataset is scaled by xsec x luminosity / N, N the
  events processed from its files (for a chained stage, the source events behind its
  skims) or their sum of generator weights; data is never scaled.
- **Groups** (the stacks of the plots): the categories of a ``StrCategory`` axis named
  ``process`` when the histogram has one (a stage may split a dataset, e.g. the
  Z->ll decays of one Drell-Yan sample by lepton flavour), else each dataset's
  ``process`` metadata, else its name. A group is data when all its datasets are.
- **Slices**: every other category axis splits a histogram into one per category,
  ``{name}_{value}`` (``m_vis_os``, ``hists_4j1b_nominal``); in a histogram of only
  category axes (a cutflow) the last stays its axis.

The file holds ``{name}/{group}`` for every slice and group, and ``swift_rules``: a
string with the JSON description (groups, datasets, scale factors, luminosity).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from pathlib import Path

from swift_rules.errors import SwiftError

__all__ = [
    "ExportError",
    "export",
    "find_histograms",
    "normalised_groups",
    "read_export",
    "scale_factor",
]

INFO_KEY = "swift_rules"
GROUP_AXIS = "process"


class ExportError(SwiftError):
    pass


def find_histograms(output, dataset: str) -> dict[str, object]:
    """``name -> Hist`` of every histogram in one dataset's output."""
    import hist

    found: dict[str, object] = {}

    def walk(node, path):
        if isinstance(node, hist.Hist):
            name = "/".join(p for p in path if p != dataset) or "histogram"
            found[name] = node
        elif isinstance(node, Mapping):
            for key in sorted(node, key=str):
                walk(node[key], (*path, str(key)))

    walk(output, ())
    return found


def scale_factor(dataset: str, metadata: Mapping, record: Mapping, luminosity, normalise_by):
    """xsec x luminosity / N for a simulated dataset; 1 for data or without luminosity."""
    if metadata.get("is_data") or luminosity is None:
        return 1.0
    if "xsec" not in metadata:
        raise ExportError(f"dataset {dataset!r} is simulation without 'xsec' in its metadata")
    if normalise_by == "sum_weights":
        n = (record.get("sum_weights") or {}).get(dataset)
        if n is None:
            raise ExportError(f"dataset {dataset!r}: its result records no sum of weights")
    else:
        n = (record.get("source_events") or record.get("events") or {}).get(dataset, 0)
    if not n:
        raise ExportError(
            f"dataset {dataset!r}: no events were processed from its files, so it cannot be "
            "normalised; check the fileset or leave it out (data.samples)"
        )
    return metadata["xsec"] * luminosity / n


def _category_axes(h):
    import hist

    return [ax for ax in h.axes if isinstance(ax, (hist.axis.StrCategory, hist.axis.IntCategory))]


def slices(h, default_group: str):
    """``(slice name suffix, group, histogram)`` for every category combination."""
    categories = _category_axes(h)
    split = [ax for ax in categories if ax.name != GROUP_AXIS]
    grouped = next((ax for ax in categories if ax.name == GROUP_AXIS), None)
    if len(categories) == len(h.axes) and split:
        split = split[:-1]  # only categories (a cutflow): the last one is the histogram's
    for values in itertools.product(*(list(ax) for ax in split)):
        where = {ax.name: _loc(ax, v) for ax, v in zip(split, values, strict=True)}
        selected = h[where] if where else h
        suffix = "".join(f"_{v}" for v in values)
        if grouped is None:
            yield suffix, default_group, selected
            continue
        for group in grouped:
            yield suffix, str(group), selected[{GROUP_AXIS: _loc(grouped, group)}]


def _loc(axis, value):
    import hist

    return value if isinstance(axis, hist.axis.StrCategory) else hist.loc(value)


def normalised_groups(results: Mapping, datasets: Mapping, luminosity, normalise_by):
    """Sum every histogram slice of every dataset, scaled, into its group.

    ``results``: result path -> (output, record); ``datasets``: result path -> the
    dataset's metadata with its ``name``. Datasets are added in name order (the same
    bits every time). Returns ``({slice name: {group: Hist}}, description)``.
    """
    out: dict[str, dict[str, object]] = {}
    groups: dict[str, dict] = {}
    scales = {}
    for path in sorted(results, key=lambda p: datasets[p]["name"]):
        meta = datasets[path]
        name = meta["name"]
        output, record = results[path]
        scale = scale_factor(name, meta, record, luminosity, normalise_by)
        scales[name] = scale
        for hname, h in find_histograms(output, name).items():
            for suffix, group, sliced in slices(h, str(meta.get("process", name))):
                info = groups.setdefault(
                    group, {"datasets": [], "is_data": bool(meta.get("is_data"))}
                )
                if name not in info["datasets"]:
                    info["datasets"].append(name)
                if info["is_data"] != bool(meta.get("is_data")):
                    raise ExportError(
                        f"group {group!r} mixes data and simulation: datasets "
                        f"{', '.join(info['datasets'])}; give them different 'process' labels"
                    )
                scaled = sliced * scale if scale != 1.0 else sliced.copy()
                target = out.setdefault(hname + suffix, {})
                target[group] = target[group] + scaled if group in target else scaled
    description = {
        "luminosity": luminosity,
        "normalise_by": normalise_by,
        "scales": scales,
        "groups": dict(sorted(groups.items())),
        "histograms": {name: sorted(g) for name, g in sorted(out.items())},
    }
    return out, description


def export(results_paths, datasets: Mapping, out: str | Path, *, stage: str,
           luminosity=None, normalise_by: str = "events") -> dict:  # fmt: skip
    """Normalise the per-dataset results of ``stage`` and write ``out``; returns the
    description stored in the file."""
    from swift_rules.results import load_result

    missing = [p for p in results_paths if p not in datasets]
    if missing:
        raise ExportError(f"no dataset metadata for result(s) {', '.join(missing)}")
    results = {p: load_result(p) for p in results_paths}
    hists, description = normalised_groups(results, datasets, luminosity, normalise_by)
    description["stage"] = stage
    write_root(out, hists, description)
    return description


def write_root(out: str | Path, hists: Mapping, description: Mapping) -> None:
    from swift_rules.rootfile import recreate

    with recreate(out) as f:
        f[INFO_KEY] = json.dumps(description, sort_keys=True)
        for name, groups in sorted(hists.items()):
            for group, h in sorted(groups.items()):
                if h.ndim > 3:
                    raise ExportError(f"histogram {name!r} has {h.ndim} axes; ROOT holds 3")
                f[f"{name}/{group}"] = h


def read_export(path: str | Path):
    """``({name: {group: hist.Hist}}, description)`` of an exported file."""
    import uproot

    try:
        f = uproot.open(path)
    except Exception as err:  # a missing file, or not ROOT at all
        why = " ".join(str(err).split())
        raise ExportError(f"cannot read {path} as a ROOT file: {why}") from None
    with f:
        if INFO_KEY not in f:
            raise ExportError(f"{path} was not written by `swift-rules export`")
        description = json.loads(str(f[INFO_KEY]))
        hists = {
            name: {group: f[f"{name}/{group}"].to_hist() for group in groups}
            for name, groups in description["histograms"].items()
        }
    return hists, description
