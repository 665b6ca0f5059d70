"""Statistical inference of the AGC: a cabinetry/pyhf profile-likelihood fit of ttbar_norm.

As in the AGC v2 reference:

* both regions' histograms are cut to 110-550 GeV and merged two bins into one
  (``h[110j::hist.rebin(2)]``: 11 bins of 40 GeV), with 1e-6 added to every bin
  (the AGC's guard against empty bins); these fit templates go to
  ``fit_templates.root`` in the fit directory (:mod:`swift_rules.agc.templates`);
* the model is built by cabinetry from ``cabinetry_config.yml`` (samples ttbar,
  W+jets and the single tops, pseudodata as data, POI ``ttbar_norm``, the AGC's
  systematic uncertainties; :mod:`swift_rules.agc.workspace`), its templates checked
  for noise-only shapes and negative yields (:mod:`swift_rules.agc.template_checks`),
  and fitted with pyhf's numpy backend (HistFactory interpolation codes: normsys
  code4, histosys code4p, as cabinetry sets them) and Minuit, with fixed minimiser
  settings so that a rerun gives the same numbers to the last digit
  (:mod:`swift_rules.agc.fit`).

This module runs those steps in a row (:func:`fit`, and :func:`fit_pseudodata` for
closure tests) and keeps the names of the steps importable from here. The settings
re-exported here (``MAXITER``, ``MINIMIZER``, ``SHAPE_P_VALUE``...) are read in the
modules that define them: to change one at run time, set it there
(``swift_rules.agc.fit.MAXITER``), not on this module.

Outputs of a fit directory: ``fit_templates.root``, ``templates/*.npz`` (cabinetry's
template cache), ``cabinetry_config.yml``, ``workspace.json`` (the model fitted,
after the template checks), ``template_checks.json``, ``fit_results.json``.
"""

from __future__ import annotations

import os
from pathlib import Path

import hist

from swift_rules.agc.fit import (
    FIT_RESULTS_NAME,
    INTERPOLATION,
    MAXITER,
    MINIMIZER,
    POSITIVITY_SCAN_STEP,
    FitNotConvergedError,
    fit_results_from_json,
    minimize,
    positivity_bounds,
    run_fit,
)
from swift_rules.agc.histograms import write_histograms_root
from swift_rules.agc.template_checks import (
    SHAPE_P_VALUE,
    SHAPE_PRUNING_SYSTEMATICS,
    check_templates,
    positive_histosys,
    shape_test,
)
from swift_rules.agc.templates import (
    EMPTY_BIN_GUARD,
    FIT_LOW,
    FIT_REBIN,
    rebin_for_fit,
    write_fit_templates,
)
from swift_rules.agc.workspace import (
    CONFIG_NAME,
    FIT_TEMPLATES_NAME,
    TEMPLATE_CHECKS_NAME,
    TEMPLATE_FOLDER,
    WORKSPACE_NAME,
    build_workspace,
    load_config_template,
    make_config,
    required_keys,
)

__all__ = [
    "CONFIG_NAME",
    "EMPTY_BIN_GUARD",
    "FIT_LOW",
    "FIT_REBIN",
    "FIT_RESULTS_NAME",
    "FIT_TEMPLATES_NAME",
    "INTERPOLATION",
    "MAXITER",
    "MINIMIZER",
    "POSITIVITY_SCAN_STEP",
    "SHAPE_PRUNING_SYSTEMATICS",
    "SHAPE_P_VALUE",
    "TEMPLATE_CHECKS_NAME",
    "TEMPLATE_FOLDER",
    "WORKSPACE_NAME",
    "FitNotConvergedError",
    "build_workspace",
    "check_templates",
    "fit",
    "fit_pseudodata",
    "fit_results_from_json",
    "load_config_template",
    "make_config",
    "minimize",
    "positive_histosys",
    "positivity_bounds",
    "rebin_for_fit",
    "required_keys",
    "run_fit",
    "shape_test",
    "write_fit_templates",
]


def fit(histograms_root: str | os.PathLike, outdir: str | os.PathLike) -> dict:
    """Build the workspace of ``histograms_root`` in ``outdir`` and fit it."""
    return run_fit(build_workspace(histograms_root, outdir), outdir)


def fit_pseudodata(
    h: hist.Hist,
    ttbar_scale: float,
    outdir: str | os.PathLike,
    processed: set[tuple[str, str]] | None = None,
) -> dict:
    """Closure fit: data = ``ttbar_scale`` x ttbar nominal + every other nominal process.

    Writes ``outdir/histograms.root`` with that pseudodata, then fits it as
    :func:`fit` does; the fitted ``ttbar_norm`` should come back as ``ttbar_scale``.
    ``processed``: the samples the stage ran on (see ``histograms.available``).
    """
    outdir = Path(outdir)
    histograms_root = outdir / "histograms.root"
    write_histograms_root(h, histograms_root, ttbar_scale=ttbar_scale, processed=processed)
    return fit(histograms_root, outdir)
