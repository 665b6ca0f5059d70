"""Statistical inference of the AGC: a cabinetry/pyhf profile-likelihood fit of ttbar_norm.

As in the AGC v2 reference:

* both regions' histograms are cut to 110-550 GeV and merged two bins into one
  (``h[110j::hist.rebin(2)]``: 11 bins of 40 GeV), with 1e-6 added to every bin
  (the AGC's guard against empty bins); these fit templates go to
  ``fit_templates.root`` in the fit directory;
* the model is built by cabinetry from ``cabinetry_config.yml`` (samples ttbar,
  W+jets and the single tops, pseudodata as data, POI ``ttbar_norm``, the AGC's
  systematic uncertainties) and fitted with pyhf's numpy backend (HistFactory
  interpolation codes: normsys code4, histosys code4p, as cabinetry sets them) and
  Minuit, with fixed minimiser settings so that a rerun gives the same numbers to the
  last digit.

Why the template checks. With few simulated events (the generated 'tiny' set: W+jets
is 2-3 events of weight ~7500 per region in the fit range, single top s-channel a few)
the jet-energy scale and resolution templates of a small sample differ from nominal by
single events moving one bin: pure MC noise. Symmetrised (down = 2 nominal - up) they
have bins of -7500, and pyhf's histosys code4p is additive with linear extrapolation
(it does not keep yields positive): the expected yield of a bin goes negative for much
of the nuisance-parameter range, the Poisson likelihood is NaN there, and Minuit
wanders (tens of thousands of "FCN result is NaN", strategy-2 Simplex fallbacks,
forced positive-definite covariances). :func:`check_templates`, per region, sample and
NormPlusShape systematic:

* computes the shape significance of each variation template (:func:`shape_test`:
  chi2 of variation normalised to the nominal yield vs nominal, MC stat. uncertainties
  of both added in quadrature) and records it;
* prunes the shape (histosys) of a :data:`SHAPE_PRUNING_SYSTEMATICS` variation (JES,
  JER: migrations of the nominal events) whose p-value is not below
  :data:`SHAPE_P_VALUE`; its normalisation effect (normsys) stays. Not pruned: the
  variations that reweight the nominal events (b-tag, W+jets scale: their shape is the
  variation's, not noise) and the ttbar alternative samples (ME, PS, scale: a two-point
  modelling uncertainty is its templates; the AGC pseudodata is built from the ME and
  PS samples themselves, so pruning them biases ttbar_norm);
* in a bin where a remaining histosys would still give the sample a negative yield
  for some |alpha| <= 1 (a symmetrised template with up > 2 nominal; an empty nominal
  bin that a variation fills), sets the template on that side to 0 if negative and
  raises it just enough (:func:`positive_histosys`: setting negative bins to 0 is not
  enough, code4p's polynomial still dips below 0), and sets a normsys factor <= 0
  (symmetrised 2 - up, with up >= 2) to the reciprocal of the other side.

The decisions go to ``template_checks.json`` and into ``fit_results.json``; the
workspace written is the checked one (the plots read the model that was fitted).

The fit (:func:`minimize`): the bounds of every nuisance parameter with a histosys are
narrowed to the range in which every expected bin yield stays positive (scanned one
parameter at a time, :data:`POSITIVITY_SCAN_STEP`; within pyhf's +-5); Migrad at
strategy 1, again at strategy 2 only if that gave no valid minimum (or no
positive-definite Hessian); the covariance
from the Hessian of -2 ln L by central differences (Minuit's Hesse is not accurate
enough on this ill-conditioned likelihood). Minuit prints nothing; ``fit_results.json``
records whether the fit converged (Minuit's ``valid`` and EDM, the Hessian's status,
parameters at a bound, narrowed bounds, non-finite likelihood values met) and
:func:`run_fit` raises :class:`FitNotConvergedError` (after writing it) when it did not.

Outputs of a fit directory: ``fit_templates.root``, ``templates/*.npz`` (cabinetry's
template cache), ``cabinetry_config.yml``, ``workspace.json`` (the model fitted,
after the template checks), ``template_checks.json``, ``fit_results.json``.
"""

from __future__ import annotations

import copy
import hashlib
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
from swift_rules.errors import SwiftError

log = logging.getLogger(__name__)


class FitNotConvergedError(SwiftError):
    """The minimisation reached no valid minimum with a positive-definite Hessian."""


# Fit binning: lower edge of the fit range and the number of bins merged into one.
FIT_LOW = 110.0
FIT_REBIN = 2
# Added to every bin of every fit template, as the AGC does.
EMPTY_BIN_GUARD = 1e-6

# Fixed minimiser settings (reproducible results): Migrad at ``strategy``, again at
# ``fallback_strategy`` only if that did not converge; EDM goal 0.002 * tolerance; the
# covariance from the Hessian of -2 ln L by central differences of ``hessian_step``.
MINIMIZER = {
    "backend": "numpy",
    "optimizer": "minuit",
    "strategy": 1,
    "fallback_strategy": 2,
    "tolerance": 0.01,
    "hessian_step": 1e-3,
}
MAXITER = 100_000
# pyhf interpolation codes (cabinetry.model_utils.model_and_data sets these).
INTERPOLATION = {"normsys": "code4", "histosys": "code4p"}

# Template checks: the shapes of these variations (the jet kinematics re-evaluated on
# the nominal events: for a sample of few simulated events, bin-to-bin migrations of
# single events) are kept only if they differ from nominal with a chi2 p-value below
# SHAPE_P_VALUE, given the templates' MC statistical uncertainties.
SHAPE_PRUNING_SYSTEMATICS = ("Jet energy scale", "Jet energy resolution")
SHAPE_P_VALUE = 0.05
# Step of the scan of a shape nuisance parameter for the range where every expected
# bin yield stays positive (its bounds are narrowed to that range).
POSITIVITY_SCAN_STEP = 0.1

CONFIG_NAME = "cabinetry_config.yml"
WORKSPACE_NAME = "workspace.json"
FIT_RESULTS_NAME = "fit_results.json"
TEMPLATE_CHECKS_NAME = "template_checks.json"
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


def _workspace_digest(workspace: dict) -> str:
    return hashlib.sha256(_dump_json(workspace).encode()).hexdigest()


def _finite(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def shape_test(
    nominal: np.ndarray,
    nominal_stdev: np.ndarray,
    variation: np.ndarray,
    variation_stdev: np.ndarray,
) -> dict[str, Any]:
    """How significant the shape of ``variation`` is against nominal, given MC statistics.

    The variation is normalised to the nominal yield; chi2 = sum over the bins with
    content (beyond the empty-bin guard) of (variation - nominal)^2 / (sigma_nominal^2
    + sigma_variation^2), ndf = those bins - 1. Returns ``chi2``, ``ndf`` and the
    ``p_value`` (1 where ndf < 1: no shape information). For a variation of the same
    events the two uncertainties are correlated, and adding them in quadrature
    understates the significance: conservative towards pruning.
    """
    nominal = np.asarray(nominal, dtype=float)
    variation = np.asarray(variation, dtype=float)
    total = float(variation.sum())
    k = float(nominal.sum()) / total if total > 0 else 1.0
    diff = k * variation - nominal
    var = np.asarray(nominal_stdev, dtype=float) ** 2 + (k * np.asarray(variation_stdev)) ** 2
    filled = (np.abs(nominal) > 2 * EMPTY_BIN_GUARD) | (np.abs(variation) > 2 * EMPTY_BIN_GUARD)
    filled &= var > 0
    ndf = int(filled.sum()) - 1
    chi2 = float(np.sum(diff[filled] ** 2 / var[filled]))
    if ndf < 1:
        return {"chi2": chi2, "ndf": max(ndf, 0), "p_value": 1.0}
    from scipy.stats import chi2 as chi2_dist

    return {"chi2": chi2, "ndf": ndf, "p_value": float(chi2_dist.sf(chi2, ndf))}


def _code4p_yields(nominal: float, hi: float, lo: float, alpha: np.ndarray) -> np.ndarray:
    """pyhf's histosys code4p for one bin: the yield at ``alpha`` (|alpha| <= 1)."""
    up, down = hi - nominal, nominal - lo
    a2 = alpha**2
    return (
        nominal
        + alpha * 0.5 * (up + down)
        + a2 * (15.0 + a2 * (3.0 * a2 - 10.0)) * 0.0625 * (up - down)
    )


def _code4p_min(nominal: float, hi: float, lo: float, side: float = 0.0) -> float:
    """The smallest code4p yield of one bin for alpha in [-1, 1] (``side`` -1: [-1, 0],
    +1: [0, 1]): at an end or where the derivative of the polynomial vanishes."""
    up, down = hi - nominal, nominal - lo
    s, a = 0.5 * (up + down), 0.0625 * (up - down)
    start, stop = (-1.0 if side <= 0 else 0.0), (1.0 if side >= 0 else 0.0)
    candidates = [start, stop]
    if a != 0.0:  # d/dalpha: s + a (30 alpha - 40 alpha^3 + 18 alpha^5)
        roots = np.roots([18.0 * a, 0.0, -40.0 * a, 0.0, 30.0 * a, s])
        candidates += [r.real for r in roots if abs(r.imag) < 1e-9 and start < r.real < stop]
    return float(np.min(_code4p_yields(nominal, hi, lo, np.asarray(candidates))))


def _raise_to_positive(nominal: float, fixed: float, moved: float, side: float) -> float:
    """The smallest value >= ``moved`` of one template (the other is ``fixed``) for which
    the code4p yield is >= 0 on the ``side`` (-1: alpha < 0, +1: alpha > 0) of [-1, 1].

    ``moved = fixed`` always works (yield >= min(nominal, fixed) >= 0), and the
    working values form an interval (the yield is linear in ``moved``): bisection,
    ending on a working value.
    """

    def ok(value: float) -> bool:
        hi, lo = (fixed, value) if side < 0 else (value, fixed)
        return _code4p_min(nominal, hi, lo, side) >= 0

    low, high = moved, max(fixed, moved)
    if ok(low):
        return low
    for _ in range(60):
        mid = 0.5 * (low + high)
        low, high = (low, mid) if ok(mid) else (mid, high)
    return high


def positive_histosys(
    nominal: list[float], hi: list[float], lo: list[float]
) -> tuple[list[float], list[float], int]:
    """A histosys's templates with every bin's yield >= 0 for -1 <= alpha <= 1 (code4p).

    pyhf's code4p adds to the nominal n, for |alpha| < 1, alpha S + alpha^2 (15 +
    alpha^2 (3 alpha^2 - 10)) A, S = (hi - lo) / 2, A = (hi + lo - 2 n) / 16, and
    extrapolates linearly beyond. A symmetrised template with hi > 2 n has lo < 0, and
    even with lo set to 0 the polynomial dips below 0 when n is small (n = 0, an empty
    nominal bin that the variation fills: negative for every alpha in (-1, 0)). In such
    a bin the template on the side of the dip (lo for alpha < 0) is set to 0 if
    negative, then raised just enough for the yield to stay >= 0; the other template
    (the variation that was observed) is kept. For n = 0 that makes lo = hi: either
    direction of the parameter adds the variation's events, none removes events
    that the nominal does not have. Returns hi, lo and the number of bins changed.
    Beyond |alpha| = 1 the parameter's bounds take over (:func:`positivity_bounds`).
    """
    n = np.asarray(nominal, dtype=float)
    new_hi = np.asarray(hi, dtype=float).copy()
    new_lo = np.asarray(lo, dtype=float).copy()
    changed = 0
    for b in range(len(n)):
        if n[b] < 0 or _code4p_min(n[b], new_hi[b], new_lo[b]) >= 0:
            continue
        changed += 1
        new_hi[b], new_lo[b] = max(new_hi[b], 0.0), max(new_lo[b], 0.0)
        new_lo[b] = _raise_to_positive(n[b], new_hi[b], new_lo[b], -1.0)
        new_hi[b] = _raise_to_positive(n[b], new_lo[b], new_hi[b], 1.0)
    if not changed:
        return list(hi), list(lo), 0
    return new_hi.tolist(), new_lo.tolist(), changed


def check_templates(
    workspace: dict, config: dict[str, Any], histogram_folder: str | os.PathLike
) -> tuple[dict, list[dict[str, Any]]]:
    """Prune noise-only shape variations and keep yields non-negative; see the module doc.

    ``histogram_folder``: cabinetry's template cache that ``workspace`` was built from.
    Returns the checked workspace (a new dict) and one record per NormPlusShape
    modifier (region, sample, systematic, the shape tests, the actions taken).
    """
    from cabinetry import configuration, histo

    workspace = copy.deepcopy(workspace)
    folder = Path(histogram_folder)
    channels = {ch["name"]: ch for ch in workspace["channels"]}
    records: list[dict[str, Any]] = []
    for region in config["Regions"]:
        samples = {s["name"]: s for s in channels[region["Name"]]["samples"]}
        for sample in config["Samples"]:
            if sample.get("Data", False) or not configuration.region_contains_sample(
                region, sample
            ):
                continue
            ws_sample = samples[sample["Name"]]
            nominal = histo.Histogram.from_config(folder, region, sample, {}, modified=True)
            for systematic in config.get("Systematics", []):
                if systematic["Type"] != "NormPlusShape":
                    continue
                if not (
                    configuration.region_contains_modifier(region, systematic)
                    and configuration.sample_contains_modifier(sample, systematic)
                ):
                    continue
                name = systematic.get("ModifierName", systematic["Name"])
                symmetrised = systematic.get("Down", {}).get("Symmetrize", False)
                tests = {}
                for template in ("Up",) if symmetrised else ("Up", "Down"):
                    h = histo.Histogram.from_config(
                        folder, region, sample, systematic, template=template, modified=True
                    )
                    tests[template] = shape_test(nominal.yields, nominal.stdev, h.yields, h.stdev)
                prunable = systematic["Name"] in SHAPE_PRUNING_SYSTEMATICS
                significant = min(t["p_value"] for t in tests.values()) < SHAPE_P_VALUE
                record: dict[str, Any] = {
                    "region": region["Name"],
                    "sample": sample["Name"],
                    "systematic": name,
                    "symmetrised": bool(symmetrised),
                    "shape_prunable": prunable,
                    "shape_tests": tests,
                    "actions": [],
                }
                kept = []
                for modifier in ws_sample["modifiers"]:
                    if modifier["name"] != name:
                        kept.append(modifier)
                        continue
                    data = modifier["data"]
                    if modifier["type"] == "histosys":
                        if prunable and not significant:
                            record["actions"].append("shape pruned: not significant")
                            continue
                        hi, lo, raised = positive_histosys(
                            ws_sample["data"], data["hi_data"], data["lo_data"]
                        )
                        if raised:
                            record["actions"].append(
                                f"template raised in {raised} bin(s) to keep the yield >= 0"
                            )
                            data["hi_data"], data["lo_data"] = hi, lo
                    elif modifier["type"] == "normsys":
                        for key, other in (("lo", "hi"), ("hi", "lo")):
                            if data[key] <= 0 and data[other] > 0:
                                record["actions"].append(
                                    f"normsys {key} {data[key]:.6g} <= 0 set to 1/{other}"
                                )
                                data[key] = 1.0 / data[other]
                    kept.append(modifier)
                ws_sample["modifiers"] = kept
                records.append(record)
    return workspace, records


def build_workspace(histograms_root: str | os.PathLike, outdir: str | os.PathLike) -> dict:
    """Build the AGC's pyhf workspace from ``histograms_root``; return it.

    Writes ``outdir/fit_templates.root`` (the rebinned templates),
    ``outdir/templates/*.npz`` (cabinetry's template cache),
    ``outdir/cabinetry_config.yml`` (the configuration used),
    ``outdir/template_checks.json`` (:func:`check_templates`' records, with the digest
    of the workspace they belong to) and ``outdir/workspace.json`` (after the checks).
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
        workspace = json.loads(json.dumps(workspace))  # plain Python types only
        workspace, checks = check_templates(workspace, tmp_config, tmp_dir)
        cabinetry.workspace.validate(workspace)
        template_dir.mkdir(exist_ok=True)
        for stale in template_dir.glob("*.npz"):
            stale.unlink()
        for npz in sorted(tmp_dir.glob("*.npz")):
            os.replace(npz, template_dir / npz.name)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)

    write_text(outdir / CONFIG_NAME, yaml.safe_dump(config, sort_keys=False))
    write_text(
        outdir / TEMPLATE_CHECKS_NAME,
        _dump_json(
            {
                "workspace_sha256": _workspace_digest(workspace),
                "settings": _template_check_settings(),
                "checks": checks,
            }
        ),
    )
    write_text(outdir / WORKSPACE_NAME, _dump_json(workspace))
    pruned = [c for c in checks if any(a.startswith("shape pruned") for a in c["actions"])]
    if pruned:
        log.info(
            "template checks: %d of %d shape variations pruned as MC noise (see %s)",
            len(pruned),
            len(checks),
            outdir / TEMPLATE_CHECKS_NAME,
        )
    return workspace


def _template_check_settings() -> dict[str, Any]:
    return {
        "shape_p_value": SHAPE_P_VALUE,
        "shape_pruning_systematics": list(SHAPE_PRUNING_SYSTEMATICS),
        "empty_bin_guard": EMPTY_BIN_GUARD,
    }


def _template_checks_for(workspace: dict, outdir: Path) -> dict | None:
    """The template checks of ``outdir`` if they belong to ``workspace``, else None."""
    path = outdir / TEMPLATE_CHECKS_NAME
    if not path.exists():
        return None
    checks = json.loads(path.read_text())
    if checks.get("workspace_sha256") != _workspace_digest(workspace):
        log.warning("%s belongs to another workspace: not recorded in the fit results", path)
        return None
    return checks


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


def _parameters_at_limit(m) -> list[str]:
    """Free parameters within half their uncertainty of a bound (Minuit's criterion)."""
    out = []
    for p in m.params:
        if p.is_fixed or not p.has_limits:
            continue
        lower = p.lower_limit if p.has_lower_limit else -math.inf
        upper = p.upper_limit if p.has_upper_limit else math.inf
        if min(p.value - lower, upper - p.value) < 0.5 * p.error:
            out.append(p.name)
    return out


def positivity_bounds(model) -> dict[str, list[float]]:
    """Bounds of the histosys parameters narrowed to where every expected yield is > 0.

    Each parameter with a histosys modifier is moved alone (the others at their
    initial values) from its initial value towards each bound in steps of
    :data:`POSITIVITY_SCAN_STEP`; the bound becomes the last step before an expected
    bin yield (all samples) is <= 0. Returns ``{parameter: [lower, upper]}`` for the
    parameters whose bounds changed.
    """
    init = np.asarray(model.config.suggested_init(), dtype=float)
    bounds = model.config.suggested_bounds()
    narrowed: dict[str, list[float]] = {}
    for name in sorted({name for name, kind in model.config.modifiers if kind == "histosys"}):
        i = model.config.par_slice(name).start
        for side, end in ((0, bounds[i][0]), (1, bounds[i][1])):
            direction = 1.0 if side else -1.0
            n = math.ceil(abs(end - init[i]) / POSITIVITY_SCAN_STEP - 1e-9)
            last = init[i]
            for k in range(1, n + 1):
                value = round(init[i] + direction * POSITIVITY_SCAN_STEP * k, 9)
                value = min(value, end) if side else max(value, end)
                pars = init.copy()
                pars[i] = value
                if not np.min(model.expected_actualdata(pars)) > 0:
                    if k == 1:
                        log.warning(
                            "%s: expected yields <= 0 within %g of its initial value; bound kept",
                            name,
                            POSITIVITY_SCAN_STEP,
                        )
                    else:
                        narrowed.setdefault(name, [float(b) for b in bounds[i]])[side] = last
                    break
                last = float(value)
    return narrowed


def _hessian(f, x: np.ndarray, free: list[int], step: float) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and Hessian of ``f`` at ``x`` in the ``free`` parameters (central differences).

    Second-order accurate in ``step``; 2 n^2 evaluations of ``f`` for n free parameters.
    """
    n = len(free)

    def at(*shifts: tuple[int, float]) -> float:
        y = x.copy()
        for k, s in shifts:
            y[free[k]] += s
        return f(y)

    f0 = f(x)
    up = [at((a, step)) for a in range(n)]
    down = [at((a, -step)) for a in range(n)]
    grad = (np.array(up) - np.array(down)) / (2 * step)
    hess = np.empty((n, n))
    for a in range(n):
        hess[a, a] = (up[a] - 2 * f0 + down[a]) / step**2
        for b in range(a):
            hess[a, b] = hess[b, a] = (
                at((a, step), (b, step))
                - at((a, step), (b, -step))
                - at((a, -step), (b, step))
                + at((a, -step), (b, -step))
            ) / (4 * step**2)
    return grad, hess


def minimize(model, data, bounds: dict[str, list[float]] | None = None) -> dict[str, Any]:
    """Minimise -2 ln L of ``model`` for ``data``: best fit, covariance, status.

    ``bounds``: parameter bounds that replace pyhf's suggested ones (from
    :func:`positivity_bounds`). Migrad at ``MINIMIZER["strategy"]``, again at
    ``MINIMIZER["fallback_strategy"]`` from where it stopped only if that gave no valid
    minimum or no positive-definite Hessian. The covariance is 2 H^-1, H the Hessian
    of -2 ln L at the minimum by central differences (step
    ``MINIMIZER["hessian_step"]``), parameters at a bound held fixed (uncertainty 0,
    no correlation): Minuit's Hesse, one-sided differences in its internal bounded
    coordinates, gives uncertainties that depend on Migrad's path by up to tens of
    percent on this ill-conditioned problem (condition number ~1e5: ttbar_norm, the
    b-tag normalisations and the luminosity are nearly degenerate).

    Minuit prints nothing (print level 0). Returns ``bestfit``, ``uncertainty``,
    ``correlation`` (arrays), ``twice_nll``, ``minuit`` (Minuit's status table as text)
    and ``status``: ``converged`` (a valid Migrad minimum with a positive-definite
    Hessian), Minuit's ``valid``, ``edm`` and ``edm_goal`` (valid: EDM below 10 x the
    goal), ``edm_hessian`` (the EDM with the finite-difference gradient and
    covariance), the strategy used, calls, call limit, Hessian status, parameters at a
    bound, narrowed bounds, non-finite -2 ln L values met.
    """
    import iminuit

    nonfinite = 0

    def twice_nll(pars: np.ndarray) -> float:
        nonlocal nonfinite
        value = -2.0 * float(model.logpdf(pars, data)[0])
        if not math.isfinite(value):
            nonfinite += 1
        return value

    names = [str(name) for name in model.config.par_names]
    npars = len(names)
    m = iminuit.Minuit(twice_nll, model.config.suggested_init(), name=names)
    limits = [tuple(b) for b in model.config.suggested_bounds()]
    for name, (lower, upper) in (bounds or {}).items():
        limits[model.config.par_slice(name).start] = (lower, upper)
    m.limits = limits
    m.fixed = model.config.suggested_fixed()
    m.errordef = iminuit.Minuit.LEAST_SQUARES  # -2 ln L: one unit for one sigma
    m.print_level = 0
    m.tol = MINIMIZER["tolerance"]
    hess = grad = None
    free: list[int] = []
    for strategy in (MINIMIZER["strategy"], MINIMIZER["fallback_strategy"]):
        m.strategy = strategy
        m.migrad(ncall=MAXITER)
        if not m.valid:
            continue
        at_limit = set(_parameters_at_limit(m))
        free = [i for i in range(npars) if not m.fixed[i] and names[i] not in at_limit]
        grad, hess = _hessian(twice_nll, np.asarray(m.values), free, MINIMIZER["hessian_step"])
        if np.all(np.isfinite(hess)) and np.linalg.eigvalsh(hess)[0] > 0:
            break
    fmin = m.fmin
    bestfit = np.asarray(m.values, dtype=float)
    posdef = bool(
        hess is not None and np.all(np.isfinite(hess)) and np.linalg.eigvalsh(hess)[0] > 0
    )
    if posdef:
        cov_free = 2.0 * np.linalg.inv(hess)
        cov = np.zeros((npars, npars))
        cov[np.ix_(free, free)] = cov_free
        uncertainty = np.sqrt(np.diag(cov))
        safe = np.where(uncertainty > 0, uncertainty, 1.0)
        correlation = cov / np.outer(safe, safe)
        np.fill_diagonal(correlation, 1.0)
        eigenvalues = np.linalg.eigvalsh(hess)
        condition = float(eigenvalues[-1] / eigenvalues[0])
        edm_hessian = float(0.5 * grad @ cov_free @ grad)
    else:  # no usable Hessian: Migrad's own estimates, for the record only
        uncertainty = np.where(m.fixed, 0.0, np.asarray(m.errors, dtype=float))
        correlation = np.asarray(m.covariance.correlation()) if m.covariance is not None else None
        condition = edm_hessian = math.nan
    status = {
        "converged": bool(m.valid and posdef),
        "valid": bool(fmin.is_valid),
        "edm": float(fmin.edm),
        "edm_goal": float(fmin.edm_goal),
        "edm_hessian": _finite(edm_hessian),
        "strategy": int(m.strategy.strategy),
        "nfcn": int(m.nfcn),
        "is_above_max_edm": bool(fmin.is_above_max_edm),
        "has_reached_call_limit": bool(fmin.has_reached_call_limit),
        "hessian_posdef": posdef,
        "hessian_condition_number": _finite(condition),
        "parameters_at_limit": _parameters_at_limit(m),
        "bounds_narrowed": bounds or {},
        "nonfinite_nll_evaluations": nonfinite,
    }
    return {
        "bestfit": bestfit,
        "uncertainty": uncertainty,
        "correlation": correlation,
        "twice_nll": float(m.fval),
        "minuit": str(fmin),
        "status": status,
    }


def run_fit(workspace: dict, outdir: str | os.PathLike, strict: bool = True) -> dict:
    """Fit ``workspace`` (maximum likelihood, Hessian uncertainties); return the results.

    Writes ``outdir/fit_results.json`` (deterministic: sorted keys, full precision,
    no timestamps): the POI's name, best-fit value and uncertainty, every
    parameter's label, best-fit value and uncertainty, the correlation matrix,
    -2 ln L at the minimum, ``converged`` and the minimisation's status (``fit``, see
    :func:`minimize`), the template checks of ``outdir`` (when they belong to
    ``workspace``), the minimiser settings and the package versions.

    A fit that did not converge is written with ``converged: false``, then
    :class:`FitNotConvergedError` is raised (``strict=False``: a warning is logged
    instead). A converged fit with parameters at a bound, or with non-finite -2 ln L
    values met on the way, is written and returned with a warning.
    """
    import cabinetry
    import pyhf

    pyhf.set_backend(MINIMIZER["backend"])
    outdir = Path(outdir)
    model, data = cabinetry.model_utils.model_and_data(workspace)
    fit = minimize(model, data, positivity_bounds(model))
    status = fit["status"]
    labels = [str(label) for label in model.config.par_names]
    poi = model.config.poi_name
    ipoi = labels.index(poi)
    corr = fit["correlation"]
    results = {
        "measurement": workspace["measurements"][0]["name"],
        "converged": status["converged"],
        "fit": status,
        "poi": {
            "name": poi,
            "bestfit": _finite(fit["bestfit"][ipoi]),
            "uncertainty": _finite(fit["uncertainty"][ipoi]),
        },
        "parameters": [
            {"label": label, "bestfit": _finite(b), "uncertainty": _finite(u)}
            for label, b, u in zip(labels, fit["bestfit"], fit["uncertainty"], strict=True)
        ],
        "labels": labels,
        "correlation_matrix": (
            [[_finite(c) for c in row] for row in corr] if corr is not None else None
        ),
        "best_twice_nll": _finite(fit["twice_nll"]),
        "minus_two_log_likelihood": _finite(fit["twice_nll"]),
        "minimizer": {**MINIMIZER, "maxiter": MAXITER, "interpolation": INTERPOLATION},
        "template_checks": _template_checks_for(workspace, outdir),
        "versions": _versions(),
        "n_bins": {ch: int(model.config.channel_nbins[ch]) for ch in model.config.channels},
    }
    path = outdir / FIT_RESULTS_NAME
    write_text(path, _dump_json(results))

    if status["nonfinite_nll_evaluations"]:
        log.warning(
            "-2 ln L was not finite at %d of the %d points evaluated (negative expected "
            "yields within the parameter bounds?)",
            status["nonfinite_nll_evaluations"],
            status["nfcn"],
        )
    if not status["converged"]:
        problems = []
        if not status["valid"]:
            problems.append("Migrad found no valid minimum")
        if status["is_above_max_edm"]:
            problems.append(f"EDM {status['edm']:.3g} above 10 x the goal {status['edm_goal']:.3g}")
        if status["has_reached_call_limit"]:
            problems.append(f"call limit {MAXITER} reached")
        if status["valid"] and not status["hessian_posdef"]:
            problems.append("the Hessian at the minimum is not positive definite")
        message = (
            f"the fit did not converge: {'; '.join(problems)} (strategy {status['strategy']}, "
            f"{status['nonfinite_nll_evaluations']} non-finite -2 ln L values); "
            f"{poi} = {results['poi']['bestfit']} +- {results['poi']['uncertainty']} is not a "
            f"result; written with converged=false to {path}\nMinuit: {fit['minuit']}"
        )
        if strict:
            raise FitNotConvergedError(message)
        log.warning("%s", message)
    elif status["parameters_at_limit"]:
        log.warning(
            "the fit converged with parameters at a bound, held fixed for the covariance "
            "(uncertainty 0): %s",
            ", ".join(status["parameters_at_limit"]),
        )
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
