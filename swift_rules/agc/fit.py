"""The AGC's profile-likelihood fit of ``ttbar_norm``: minimisation and results.

The model of a workspace (:mod:`swift_rules.agc.workspace`) is fitted with pyhf's
numpy backend (HistFactory interpolation codes: normsys code4, histosys code4p, as
cabinetry sets them) and Minuit, with fixed minimiser settings so that a rerun gives
the same numbers to the last digit.

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

Outputs: ``fit_results.json`` in the fit directory; :func:`fit_results_from_json`
reads it back as cabinetry's ``FitResults`` (for the plots).
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from swift_rules.agc.workspace import dump_json, template_checks_for
from swift_rules.atomic import write_text
from swift_rules.errors import SwiftError

log = logging.getLogger(__name__)


class FitNotConvergedError(SwiftError):
    """The minimisation reached no valid minimum with a positive-definite Hessian."""


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

# Step of the scan of a shape nuisance parameter for the range where every expected
# bin yield stays positive (its bounds are narrowed to that range).
POSITIVITY_SCAN_STEP = 0.1

FIT_RESULTS_NAME = "fit_results.json"


def _finite(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


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
        "template_checks": template_checks_for(workspace, outdir),
        "versions": _versions(),
        "n_bins": {ch: int(model.config.channel_nbins[ch]) for ch in model.config.channels},
    }
    path = outdir / FIT_RESULTS_NAME
    write_text(path, dump_json(results))

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
