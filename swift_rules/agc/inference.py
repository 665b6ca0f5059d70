"""Statistical inference of the AGC: a cabinetry/pyhf profile-likelihood fit of ttbar_norm.

As in the AGC v2 reference:

* both regions' histograms are cut to 110-550 GeV and merged two bins into one
  (``h[110j::hist.rebin(2)]``: 11 bins of 40 GeV), with 1e-6 added to every bin
  (the AGC's guard against empty bins); these fit templates go to
  ``fit_templates.root`` in the fit directory;
* the model is built by cabinetry from ``cabinetry_config.yml`` (samples ttbar,
  W+jets and the single tops, pseudodata as data, POI ``ttbar_norm``, the AGC's
  systematic uncertainties) and fitted with pyhf's numpy backend and Minuit, with
  fixed minimiser settings so that a rerun gives the same numbers to the last digit.

Outputs of a fit directory: ``fit_templates.root``, ``templates/*.npz`` (cabinetry's
template cache), ``cabinetry_config.yml``, ``workspace.json``, ``fit_results.json``.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import hist
import numpy as np
import uproot
import yaml

from swift_rules.agc.histograms import (
    PSEUDODATA,
    MissingHistogramError,
    load_hists,
    write_histograms_root,
)
from swift_rules.atomic import atomic_path, write_text

log = logging.getLogger(__name__)

# Fit binning: lower edge of the fit range and the number of bins merged into one.
FIT_LOW = 110.0
FIT_REBIN = 2
# Added to every bin of every fit template, as the AGC does.
EMPTY_BIN_GUARD = 1e-6

# Fixed minimiser settings (reproducible results).
MINIMIZER = {"backend": "numpy", "optimizer": "minuit", "strategy": 2, "tolerance": 0.01}
MAXITER = 100_000

CONFIG_NAME = "cabinetry_config.yml"
WORKSPACE_NAME = "workspace.json"
FIT_RESULTS_NAME = "fit_results.json"
FIT_TEMPLATES_NAME = "fit_templates.root"
TEMPLATE_FOLDER = "templates"


def load_config_template() -> dict[str, Any]:
    """The AGC cabinetry configuration shipped with the package (paths not filled in)."""
    text = resources.files("swift_rules.agc").joinpath(CONFIG_NAME).read_text()
    return yaml.safe_load(text)


def make_config(fit_dir: str | os.PathLike) -> dict[str, Any]:
    """The cabinetry configuration of a fit directory (templates read from it)."""
    import cabinetry

    fit_dir = Path(fit_dir)
    config = load_config_template()
    general = config["General"]
    # InputPath is "FILE:{RegionPath}_{SamplePath}{VariationPath}": point FILE at the run's.
    _, _, histo_pattern = general["InputPath"].partition(":")
    general["InputPath"] = f"{fit_dir / FIT_TEMPLATES_NAME}:{histo_pattern}"
    general["HistogramFolder"] = str(fit_dir / TEMPLATE_FOLDER)
    cabinetry.configuration.validate(config)
    return config


def required_keys(config: dict[str, Any]) -> list[str]:
    """The histogram keys the fit of ``config`` reads (data, nominal and variations)."""
    import cabinetry
    from cabinetry.templates.collector import _histo_path

    general = config["General"]
    keys: list[str] = []

    def collect(region, sample, systematic, template):
        path = _histo_path(
            general["InputPath"],
            general.get("VariationPath", ""),
            region,
            sample,
            systematic,
            template,
        )
        key = path.rpartition(":")[2]
        if key not in keys:
            keys.append(key)

    cabinetry.route.apply_to_all_templates(config, collect)
    return keys


def rebin_for_fit(h: hist.Hist) -> hist.Hist:
    """One histogram of ``histograms.root`` as a fit template: 110-550 GeV, 40 GeV bins."""
    return h[complex(0, FIT_LOW) :: hist.rebin(FIT_REBIN)] + EMPTY_BIN_GUARD


def write_fit_templates(
    histograms_root: str | os.PathLike, path: str | os.PathLike, keys: list[str] | None = None
) -> list[str]:
    """Write the rebinned fit templates of ``histograms_root`` to ``path``; return the keys.

    ``keys``: the histograms the fit needs; every one missing is named in the
    :class:`MissingHistogramError` raised.
    """
    try:
        hists = load_hists(histograms_root, keys)
    except MissingHistogramError as err:
        hint = "the fit needs them"
        if any(k.endswith(f"_{PSEUDODATA}") for k in err.missing):
            hint += (
                f"; {{region}}_{PSEUDODATA} is written only when ttbar ME_var, ttbar PS_var "
                "and wjets nominal were all filled"
            )
        hint += " (was the ttbar stage run on every sample?)"
        raise MissingHistogramError(err.missing, where=str(histograms_root), hint=hint) from None
    with atomic_path(path) as tmp, uproot.recreate(tmp) as f:
        for key, h in hists.items():
            f[key] = rebin_for_fit(h)
    return list(hists)


def _dump_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"


def build_workspace(histograms_root: str | os.PathLike, outdir: str | os.PathLike) -> dict:
    """Build the AGC's pyhf workspace from ``histograms_root``; return it.

    Writes ``outdir/fit_templates.root`` (the rebinned templates),
    ``outdir/templates/*.npz`` (cabinetry's template cache),
    ``outdir/cabinetry_config.yml`` (the configuration used) and
    ``outdir/workspace.json``.
    """
    import cabinetry

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    config = make_config(outdir)
    write_fit_templates(histograms_root, outdir / FIT_TEMPLATES_NAME, required_keys(config))

    # cabinetry writes its template cache non-atomically: collect into a temporary
    # folder, then move each file into place.
    template_dir = outdir / TEMPLATE_FOLDER
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".tmp-{TEMPLATE_FOLDER}-", dir=outdir))
    try:
        tmp_config = copy.deepcopy(config)
        tmp_config["General"]["HistogramFolder"] = str(tmp_dir)
        cabinetry.templates.collect(tmp_config, method="uproot")
        workspace = cabinetry.workspace.build(tmp_config)
        template_dir.mkdir(exist_ok=True)
        for stale in template_dir.glob("*.npz"):
            stale.unlink()
        for npz in sorted(tmp_dir.glob("*.npz")):
            os.replace(npz, template_dir / npz.name)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)

    workspace = json.loads(json.dumps(workspace))  # plain Python types only
    write_text(outdir / CONFIG_NAME, yaml.safe_dump(config, sort_keys=False))
    write_text(outdir / WORKSPACE_NAME, _dump_json(workspace))
    return workspace


def _versions() -> dict[str, str]:
    import cabinetry
    import iminuit
    import pyhf

    return {
        "cabinetry": cabinetry.__version__,
        "iminuit": iminuit.__version__,
        "numpy": np.__version__,
        "pyhf": pyhf.__version__,
    }


def _finite(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def set_minimizer() -> None:
    """pyhf's numpy backend with Minuit, at the fixed settings of :data:`MINIMIZER`."""
    import pyhf

    pyhf.set_backend(
        MINIMIZER["backend"],
        pyhf.optimize.minuit_optimizer(
            strategy=MINIMIZER["strategy"], tolerance=MINIMIZER["tolerance"]
        ),
    )


def run_fit(workspace: dict, outdir: str | os.PathLike) -> dict:
    """Fit ``workspace`` (maximum likelihood, Hesse uncertainties); return the results.

    Writes ``outdir/fit_results.json`` (deterministic: sorted keys, full precision,
    no timestamps): the POI's name, best-fit value and uncertainty, every
    parameter's label, best-fit value and uncertainty, the correlation matrix,
    -2 ln L at the minimum, the minimiser settings and the package versions.
    """
    import cabinetry
    import pyhf

    set_minimizer()
    model, data = cabinetry.model_utils.model_and_data(workspace)
    fit = cabinetry.fit.fit(
        model,
        data,
        strategy=MINIMIZER["strategy"],
        tolerance=MINIMIZER["tolerance"],
        maxiter=MAXITER,
    )
    labels = [str(label) for label in fit.labels]
    poi = model.config.poi_name
    ipoi = labels.index(poi)
    results = {
        "measurement": workspace["measurements"][0]["name"],
        "poi": {
            "name": poi,
            "bestfit": float(fit.bestfit[ipoi]),
            "uncertainty": float(fit.uncertainty[ipoi]),
        },
        "parameters": [
            {"label": label, "bestfit": float(b), "uncertainty": float(u)}
            for label, b, u in zip(labels, fit.bestfit, fit.uncertainty, strict=True)
        ],
        "labels": labels,
        "correlation_matrix": [[_finite(c) for c in row] for row in np.asarray(fit.corr_mat)],
        "best_twice_nll": float(fit.best_twice_nll),
        "minus_two_log_likelihood": float(fit.best_twice_nll),
        "minimizer": {**MINIMIZER, "maxiter": MAXITER},
        "versions": _versions(),
        "n_bins": {ch: int(model.config.channel_nbins[ch]) for ch in model.config.channels},
    }
    if pyhf.get_backend()[1].name != "minuit":  # pragma: no cover - defensive
        raise RuntimeError("the fit did not use Minuit")
    outdir = Path(outdir)
    write_text(outdir / FIT_RESULTS_NAME, _dump_json(results))
    return results


def fit_results_from_json(results: dict | str | os.PathLike):
    """A ``cabinetry.fit.FitResults`` from :func:`run_fit`'s dict or JSON file."""
    import cabinetry

    if not isinstance(results, dict):
        results = json.loads(Path(results).read_text())
    corr = np.array(
        [[np.nan if c is None else c for c in row] for row in results["correlation_matrix"]]
    )
    return cabinetry.fit.FitResults(
        np.array([p["bestfit"] for p in results["parameters"]]),
        np.array([p["uncertainty"] for p in results["parameters"]]),
        [p["label"] for p in results["parameters"]],
        corr,
        results["best_twice_nll"],
    )


def fit(histograms_root: str | os.PathLike, outdir: str | os.PathLike) -> dict:
    """Build the workspace of ``histograms_root`` in ``outdir`` and fit it."""
    return run_fit(build_workspace(histograms_root, outdir), outdir)


def fit_pseudodata(h: hist.Hist, ttbar_scale: float, outdir: str | os.PathLike) -> dict:
    """Closure fit: data = ``ttbar_scale`` x ttbar nominal + every other nominal process.

    Writes ``outdir/histograms.root`` with that pseudodata, then fits it as
    :func:`fit` does; the fitted ``ttbar_norm`` should come back as ``ttbar_scale``.
    """
    outdir = Path(outdir)
    histograms_root = outdir / "histograms.root"
    write_histograms_root(h, histograms_root, ttbar_scale=ttbar_scale)
    return fit(histograms_root, outdir)
