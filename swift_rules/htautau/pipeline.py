"""The whole analysis in one process, with coffea's ``processor.Runner``: for tests and quick
looks from Python. The workflow runs the same stages through the generic layer instead.

1. :func:`run_skim`: ``HttSkim`` over each dataset's ROOT files (``NanoAODSchema``), the
   chunks' skims joined in file and entry order and written with ``ak.to_parquet``;
2. :func:`run_histograms`: ``HttHistograms`` over each skim (``format="parquet"``,
   ``BaseSchema``, the same dataset metadata);
3. :func:`run`: both, the contract's normalisation (xsec x luminosity / N, N the skim's
   input events), the QCD estimate; ``normalised.root`` and ``qcd.root`` in ``outdir``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from coffea import processor

from swift_rules.atomic import atomic_path
from swift_rules.htautau.samples import LUMINOSITY_PB


class _Collect(processor.ProcessorABC):
    """Keeps each chunk's skim apart (keyed by file and first entry): coffea would add the
    arrays of two chunks element-wise."""

    def __init__(self, proc, files):
        self.proc = proc
        self.position = {f: i for i, f in enumerate(files)}

    def process(self, events):
        out = dict(self.proc.process(events))
        meta = events.metadata
        out["parts"] = {(self.position[meta["filename"]], int(meta["entrystart"])): out["skim"]}
        del out["skim"]
        return out

    def postprocess(self, accumulator):
        return accumulator


def with_nevents(spec: Mapping) -> dict:
    """A dataset of a fileset with ``nevents`` in its metadata, as the generic layer adds it:
    the files' ``num_entries``, or their trees' entries."""
    spec = dict(spec)
    metadata = dict(spec.get("metadata") or {})
    if metadata.get("nevents") is None:
        import uproot

        total = 0
        for path, entry in spec["files"].items():
            if isinstance(entry, Mapping) and entry.get("num_entries") is not None:
                total += int(entry["num_entries"])
            else:
                tree = entry.get("object_path", "Events") if isinstance(entry, Mapping) else entry
                with uproot.open(path) as f:
                    total += f[tree or "Events"].num_entries
        metadata["nevents"] = total
    spec["metadata"] = metadata
    return spec


def _runner(chunksize: int, **kwargs):
    return processor.Runner(processor.IterativeExecutor(), chunksize=chunksize, **kwargs)


def run_skim(
    fileset: Mapping,
    outdir: str | os.PathLike,
    *,
    chunksize: int = 100_000,
    options: Mapping | None = None,
) -> dict[str, dict]:
    """Skim every dataset of a coffea fileset; ``{dataset: {"path", "rows", "cutflow"}}``.
    Datasets without ``nevents`` in their metadata get it (:func:`with_nevents`)."""
    import awkward as ak
    from coffea.nanoevents import NanoAODSchema

    from swift_rules.htautau.skim import HttSkim

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    stage = HttSkim(**(options or {}))
    out = {}
    for dataset, spec in fileset.items():
        spec = with_nevents(spec)
        proc = _Collect(stage, list(spec["files"]))
        result = _runner(chunksize, schema=NanoAODSchema)(
            {dataset: dict(spec)}, proc, treename="Events"
        )
        parts = result.get("parts", {})
        skim = ak.concatenate([parts[k] for k in sorted(parts)])
        path = outdir / f"{dataset}.parquet"
        with atomic_path(path) as tmp:
            ak.to_parquet(skim, tmp)
        out[dataset] = {"path": str(path), "rows": len(skim), "cutflow": dict(result["cutflow"])}
    return out


def run_histograms(
    skims: Mapping, fileset: Mapping, *, chunksize: int = 100_000, options: Mapping | None = None
) -> dict[str, dict]:
    """``{dataset: {variable: Hist}}`` of ``HttHistograms`` over each dataset's skim."""
    from coffea.nanoevents import BaseSchema

    from swift_rules.htautau.histograms import HttHistograms, new_histogram

    stage = HttHistograms(**(options or {}))
    out = {}
    for dataset, skim in skims.items():
        metadata = dict(fileset[dataset].get("metadata", {}))
        if not skim["rows"]:  # nothing to read: the stage's empty histograms
            processes = stage.processes(metadata)
            out[dataset] = {v: new_histogram(v, processes) for v in stage.variables}
            continue
        spec = {"files": {skim["path"]: None}, "metadata": metadata}
        out[dataset] = dict(
            _runner(chunksize, schema=BaseSchema, format="parquet")({dataset: spec}, stage)
        )
    return out


def run(
    fileset: Mapping,
    outdir: str | os.PathLike,
    *,
    luminosity: float = LUMINOSITY_PB,
    chunksize: int = 100_000,
) -> dict:
    """The analysis from a fileset to ``outdir/normalised.root`` and ``outdir/qcd.root``."""
    from swift_rules.htautau.normalise import normalised_histograms, write_normalised
    from swift_rules.htautau.qcd import qcd_estimate, write_qcd

    outdir = Path(outdir)
    skims = run_skim(fileset, outdir / "skims", chunksize=chunksize)
    hists = run_histograms(skims, fileset, chunksize=chunksize)
    outputs = {
        ds: (hists[ds], fileset[ds].get("metadata", {}), skims[ds]["cutflow"]["all"])
        for ds in fileset
    }
    normalised = normalised_histograms(outputs, luminosity)
    write_normalised(outdir / "normalised.root", normalised)
    estimate = qcd_estimate(normalised)
    write_qcd(outdir / "qcd.root", estimate)
    return {"skims": skims, "histograms": hists, "normalised": normalised, "qcd": estimate}
