"""The data-driven QCD multijet estimate of ``plot.py``.

For each variable: the same-sign (``ss``) data minus the same-sign simulation of W+jets
(W1J + W2J + W3J), ttbar, Z -> ll and Z -> tautau (not the signals), every bin below zero
set to zero (the under- and overflow are left as they are: ``plot.py`` loops over bins
1..N), times 0.80. As ROOT's ``TH1::Add`` and ``TH1::Scale`` do, the variances add and are
scaled by 0.80^2; the data's variance is its count.

Input: the generic export of ``htautau::histograms`` (``swift-rules export``), normalised
and grouped, ``{variable}_{region}/{group}``, read with :func:`swift_rules.export.read_export`.
Output (:func:`qcd_file`): the signal region's groups with ``QCD`` added,
``{variable}/{group}``, written by :func:`swift_rules.export.write_root` with the input's
description (groups, scales, luminosity) and how ``QCD`` was made; ``read_export`` reads it
back (the ``plot`` command, :mod:`swift_rules.htautau.plots`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import numpy as np

from swift_rules.errors import SwiftError
from swift_rules.htautau.samples import DATA, QCD, QCD_SCALE_FACTOR, QCD_SUBTRACTED
from swift_rules.htautau.variables import VARIABLES


class MissingInputError(SwiftError, LookupError):
    def __str__(self) -> str:
        return str(self.args[0])


def _get(hists: Mapping, name: str, group: str, where: str):
    if name not in hists or group not in hists[name]:
        have = sorted(hists.get(name, {}))
        raise MissingInputError(
            f"no histogram {name}/{group} in {where} (groups of {name}: {have or 'none'}); "
            f"the QCD estimate needs {DATA} and {', '.join(QCD_SUBTRACTED)}"
        )
    return hists[name][group]


def qcd_histogram(data_ss, simulation_ss: Iterable, scale_factor: float = QCD_SCALE_FACTOR):
    """``plot.py``'s estimate from the same-sign data and simulated histograms."""
    qcd = data_ss.copy()
    values = np.array(data_ss.values(flow=True), dtype=np.float64)
    variances = data_ss.variances(flow=True)
    variances = np.array(values if variances is None else variances, dtype=np.float64)
    for h in simulation_ss:
        values = values - h.values(flow=True)
        variances = variances + h.variances(flow=True)
    inner = values[1:-1]
    inner[inner < 0.0] = 0.0
    view = qcd.view(flow=True)
    view.value = values * scale_factor
    view.variance = variances * scale_factor**2
    return qcd


def qcd_estimate(
    normalised: Mapping,
    variables: Iterable[str] | None = None,
    scale_factor: float = QCD_SCALE_FACTOR,
    where: str = "the input",
) -> dict:
    """``{variable: {group: Hist}}``: the signal region's groups and ``QCD``."""
    out = {}
    for variable in variables or VARIABLES:
        ss, os_ = f"{variable}_ss", f"{variable}_os"
        data = _get(normalised, ss, DATA, where)
        simulation = [_get(normalised, ss, g, where) for g in QCD_SUBTRACTED]
        groups = {g: h.copy() for g, h in sorted(normalised.get(os_, {}).items())}
        if DATA not in groups:
            _get(normalised, os_, DATA, where)
        groups[QCD] = qcd_histogram(data, simulation, scale_factor)
        out[variable] = groups
    return out


def qcd_description(description: Mapping, estimate: Mapping, scale_factor: float, where: str):
    """The exported input's description for the estimate's file: its histograms, the
    ``QCD`` group (made of the data and the subtracted groups' datasets) and how."""
    out = dict(description)
    groups = dict(out.get("groups") or {})
    made_of = [d for g in (DATA, *QCD_SUBTRACTED) for d in groups.get(g, {}).get("datasets", [])]
    groups[QCD] = {"datasets": sorted(set(made_of)), "is_data": False}
    out["groups"] = dict(sorted(groups.items()))
    out["histograms"] = {name: sorted(g) for name, g in sorted(estimate.items())}
    out["qcd"] = {"from": where, "region": "ss", "subtracted": list(QCD_SUBTRACTED),
                  "scale_factor": scale_factor}  # fmt: skip
    return out


def qcd_file(
    histograms: str | os.PathLike,
    out: str | os.PathLike,
    *,
    variables: Iterable[str] | None = None,
    scale_factor: float = QCD_SCALE_FACTOR,
) -> dict:
    """The ``qcd`` command: the estimate of the exported ``histograms``, written to ``out``
    (``{variable}/{group}``, QCD included, and the description); returns the estimate."""
    from swift_rules.export import read_export, write_root

    normalised, description = read_export(histograms)
    estimate = qcd_estimate(normalised, variables, scale_factor, where=str(histograms))
    write_root(out, estimate, qcd_description(description, estimate, scale_factor, str(histograms)))
    return estimate
