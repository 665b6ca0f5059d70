"""The AGC's fit templates: ``histograms.root`` cut and rebinned as the AGC v2 does.

Both regions' histograms are cut to 110-550 GeV and merged two bins into one
(``h[110j::hist.rebin(2)]``: 11 bins of 40 GeV), with 1e-6 added to every bin (the
AGC's guard against empty bins). cabinetry reads its templates from the file
:func:`write_fit_templates` writes (``fit_templates.root`` in a fit directory, see
:mod:`swift_rules.agc.workspace`). Only this binning; the checks of the templates
are in :mod:`swift_rules.agc.template_checks`.
"""

from __future__ import annotations

import os

import hist

from swift_rules.agc.histograms import PSEUDODATA, MissingHistogramError, load_hists
from swift_rules.rootfile import recreate

# Fit binning: lower edge of the fit range and the number of bins merged into one.
FIT_LOW = 110.0
FIT_REBIN = 2
# Added to every bin of every fit template, as the AGC does.
EMPTY_BIN_GUARD = 1e-6


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
    with recreate(path) as f:
        for key, h in hists.items():
            f[key] = rebin_for_fit(h)
    return list(hists)
