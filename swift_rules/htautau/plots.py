"""The stacked plots of ``plot.py``, with matplotlib and mplhep.

One figure per variable, in ``plot.py``'s order, from the QCD step's histograms
(:mod:`swift_rules.htautau.qcd`; the ``plot`` command reads its file with
:func:`swift_rules.export.read_export`): QCD, ttbar, W+jets, Z -> ll, Z -> tautau stacked (bottom
to top) in its colours, ggH x 10 and qqH x 100 as lines, data as points with their
statistical errors; its legend (two columns, its order and texts), axis titles, y range
(1 to 1.4 x the larger of the stack's and the data's maximum) and the labels
"CMS Open Data" and "11.5 fb^-1 (2012, 8 TeV)". Written as ``{variable}.png`` and
``{variable}.pdf``, atomically, without creation dates or software stamps.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from swift_rules.atomic import atomic_path
from swift_rules.htautau.samples import DATA, SIGNAL_SCALES, STACK
from swift_rules.htautau.variables import LABELS

# plot.py's colours.
COLOURS = {
    "ggH": "#BF2229",
    "qqH": "#00A88F",
    "TT": "#9B98CC",  # (155, 152, 204)
    "W": "#DE5A6A",  # (222, 90, 106)
    "QCD": "#FACAFF",  # (250, 202, 255)
    "ZLL": "#64C0E8",  # (100, 192, 232)
    "ZTT": "#F8CE68",  # (248, 206, 104)
}
# plot.py's legend, in its order (filled row by row, two columns).
LEGEND = [
    ("ZTT", "Z#rightarrow#tau#tau"),
    ("ZLL", "Z#rightarrowll"),
    ("W", "W+jets"),
    ("TT", "t#bar{t}"),
    ("QCD", "QCD multijet"),
    ("ggH", "gg#rightarrowH (x{:.0f})".format(SIGNAL_SCALES["ggH"])),
    ("qqH", "qq#rightarrowH (x{:.0f})".format(SIGNAL_SCALES["qqH"])),
    (DATA, "Data"),
]
LUMI_TEXT = "11.5 fb^{-1} (2012, 8 TeV)"
EXPERIMENT_TEXT = "CMS Open Data"
Y_TITLE = "N_{Events}"
SAVE_METADATA = {
    "png": {"Software": None},
    "pdf": {"CreationDate": None, "Creator": None, "Producer": None},
}
DPI = 100  # a 10 x 10 inch figure: 1000 x 1000 pixels

_LATEX = [
    ("t#bar{t}", r"$t\bar{t}$"),
    ("p_{T}", r"$p_{T}$"),
    ("N_{Events}", r"$N_{Events}$"),
    ("^{-1}", r"$^{-1}$"),
    ("#rightarrow", r"$\rightarrow$"),
    ("#Delta", r"$\Delta$"),
    ("#eta", r"$\eta$"),
    ("#phi", r"$\phi$"),
    ("#tau", r"$\tau$"),
]


def mathtext(text: str) -> str:
    """A ROOT TLatex label of plot.py as matplotlib mathtext (``p_{T}`` -> ``$p_{T}$``)."""
    for latex, math in _LATEX:
        text = text.replace(latex, math)
    return re.sub(r"\$\$", "", text)


def _values(h) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(h.values(flow=False), dtype=np.float64)
    variances = h.variances(flow=False)
    return values, np.asarray(values if variances is None else variances, dtype=np.float64)


def plot_variable(variable: str, groups: Mapping, outdir: str | os.PathLike) -> list[Path]:
    """Draw one variable's figure from ``{group: Hist}``; return the PNG and PDF paths."""
    import matplotlib.style
    import mplhep
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    missing = [g for g in [*STACK, *SIGNAL_SCALES, DATA] if g not in groups]
    if missing:
        raise KeyError(f"{variable}: no histogram of {', '.join(missing)} to plot")
    edges = groups[DATA].axes[0].edges
    stack = [_values(groups[g])[0] for g in STACK]
    data, data_var = _values(groups[DATA])
    style = [mplhep.style.CMS, {"savefig.dpi": DPI, "pdf.compression": 6}]
    with matplotlib.style.context(style):
        fig = Figure(figsize=(10, 10))
        fig.subplots_adjust(left=0.16, right=0.95, bottom=0.13, top=0.92)
        ax = fig.subplots()
        mplhep.histplot(
            stack,
            bins=edges,
            ax=ax,
            stack=True,
            histtype="fill",
            color=[COLOURS[g] for g in STACK],
            linewidth=0,
        )
        for g, scale in SIGNAL_SCALES.items():
            mplhep.histplot(
                _values(groups[g])[0] * scale,
                bins=edges,
                ax=ax,
                histtype="step",
                color=COLOURS[g],
                linewidth=3,
            )
        mplhep.histplot(
            data,
            bins=edges,
            yerr=np.sqrt(data_var),
            ax=ax,
            histtype="errorbar",
            xerr=True,
            color="black",
            marker="o",
            markersize=8,
            capsize=2,
        )
        top = max(float(np.sum(stack, axis=0).max(initial=0.0)), float(data.max(initial=0.0)))
        ax.set_ylim(1.0, max(top * 1.4, 1.0 + 1e-9))
        ax.set_xlim(edges[0], edges[-1])
        ax.set_xlabel(mathtext(LABELS.get(variable, variable)), loc="right")
        ax.set_ylabel(mathtext(Y_TITLE), loc="top")
        handles = {g: Patch(facecolor=COLOURS[g], linewidth=0) for g in STACK}
        handles.update({g: Line2D([], [], color=COLOURS[g], linewidth=3) for g in SIGNAL_SCALES})
        handles[DATA] = Line2D([], [], color="black", marker="o", linestyle="-", markersize=8)
        # plot.py's TLegend fills two columns row by row; matplotlib fills column by column.
        rows = [LEGEND[i : i + 2] for i in range(0, len(LEGEND), 2)]
        ordered = [row[0] for row in rows] + [row[1] for row in rows if len(row) > 1]
        ax.legend(
            [handles[g] for g, _ in ordered],
            [mathtext(text) for _, text in ordered],
            ncol=2,
            loc="upper left",
            bbox_to_anchor=(0.4, 0.73, 0.5, 0.15),
            bbox_transform=fig.transFigure,
            mode="expand",
            frameon=False,
            fontsize=19,
            handlelength=1.3,
            handletextpad=0.4,
            columnspacing=0.5,
            labelspacing=0.3,
        )
        fig.text(0.6, 0.935, mathtext(LUMI_TEXT), fontsize=26)
        fig.text(0.16, 0.935, EXPERIMENT_TEXT, fontsize=26, fontweight="bold")
        paths = []
        for fmt in ("png", "pdf"):
            target = Path(outdir) / f"{variable}.{fmt}"
            with atomic_path(target) as tmp:
                fig.savefig(tmp, format=fmt, metadata=SAVE_METADATA[fmt])
            paths.append(target)
    return paths


def make_plots(
    estimate: Mapping,
    outdir: str | os.PathLike,
    variables: Iterable[str] | None = None,
    workers: int = 1,
) -> list[Path]:
    """Every variable's figure (``plot.py``'s order), from ``{variable: {group: Hist}}``,
    drawn in ``workers`` processes."""
    from swift_rules.plots import in_processes

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    names = [v for v in (variables or LABELS) if v in estimate]
    unknown = sorted(set(variables or []) - set(estimate))
    if unknown:
        raise KeyError(f"no histograms of {', '.join(unknown)} in the input")
    return in_processes(plot_variable, [(v, estimate[v], outdir) for v in names], workers)
