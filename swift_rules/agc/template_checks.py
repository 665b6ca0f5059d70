"""Checks of the AGC's fit templates before the fit: noise-only shapes, negative yields.

Why these checks. With few simulated events (the generated 'tiny' set: W+jets
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
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np

from swift_rules.agc.templates import EMPTY_BIN_GUARD

# Template checks: the shapes of these variations (the jet kinematics re-evaluated on
# the nominal events: for a sample of few simulated events, bin-to-bin migrations of
# single events) are kept only if they differ from nominal with a chi2 p-value below
# SHAPE_P_VALUE, given the templates' MC statistical uncertainties.
SHAPE_PRUNING_SYSTEMATICS = ("Jet energy scale", "Jet energy resolution")
SHAPE_P_VALUE = 0.05


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


def template_check_settings() -> dict[str, Any]:
    """The settings of the checks, as ``template_checks.json`` records them."""
    return {
        "shape_p_value": SHAPE_P_VALUE,
        "shape_pruning_systematics": list(SHAPE_PRUNING_SYSTEMATICS),
        "empty_bin_guard": EMPTY_BIN_GUARD,
    }
