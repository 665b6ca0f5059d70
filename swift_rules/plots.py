"""Generic figures of an exported stage (``swift-rules draw``): one per 1D histogram.

Simulation stacked by group (the largest on top), data overlaid as points with a
data/simulation ratio panel, the simulation's statistical uncertainty as a band.
Written as PNG/PDF/SVG without creation dates or software stamps, so a rerun writes
the same files. 2D and 3D histograms are in histograms.root but are not drawn.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from swift_rules.atomic import atomic_path
from swift_rules.export import read_export

SAVE_METADATA = {
    "png": {"Software": None},
    "pdf": {"CreationDate": None, "Creator": None, "Producer": None},
    "svg": {"Date": None, "Creator": None},
}
DPI = 120
# Okabe-Ito and the CMS 10-colour scheme: distinguishable, also for colour-blind readers.
COLOURS = ["#3f90da", "#ffa90e", "#bd1f01", "#94a4a2", "#832db6", "#a96b59", "#e76300",
           "#b9ac70", "#717581", "#92dadd"]  # fmt: skip


def selected(names: Sequence[str], include: Sequence[str], exclude: Sequence[str]) -> list[str]:
    return [
        n for n in names
        if any(fnmatch.fnmatchcase(n, p) for p in include)
        and not any(fnmatch.fnmatchcase(n, p) for p in exclude)
    ]  # fmt: skip


def figure_name(name: str) -> str:
    """A file name for histogram ``name`` (``a/b`` -> ``a__b``)."""
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name.replace("/", "__"))


def _is_category(axis) -> bool:
    import hist

    return isinstance(axis, (hist.axis.StrCategory, hist.axis.IntCategory))


def _values(h):
    values, variances = h.values(flow=False), h.variances(flow=False)
    return values, (variances if variances is not None else values)


def draw(name: str, groups: dict, description: dict, outdir: Path, formats, log_y=False):
    """One figure of histogram ``name``; returns the paths written (none if not 1D)."""
    import matplotlib.style
    import mplhep
    from matplotlib.figure import Figure

    if any(len(h.axes) != 1 for h in groups.values()):
        return []
    info = description["groups"]
    mc = sorted(
        (g for g in groups if not info[g]["is_data"]), key=lambda g: _values(groups[g])[0].sum()
    )
    data = [g for g in groups if info[g]["is_data"]]
    axis = next(iter(groups.values())).axes[0]
    categories = (
        [str(c) for c in axis] if not hasattr(axis, "edges") or _is_category(axis) else None
    )
    edges = np.arange(len(categories) + 1.0) if categories else axis.edges
    label = axis.label or name
    with matplotlib.style.context(
        [mplhep.style.CMS, {"savefig.dpi": DPI, "svg.hashsalt": "swift"}]
    ):
        fig = Figure(figsize=(9, 9) if data else (9, 7), layout="constrained")
        if data:
            ratios = {"height_ratios": (3, 1), "hspace": 0.06}
            ax, rax = fig.subplots(2, 1, sharex=True, gridspec_kw=ratios)
        else:
            ax, rax = fig.subplots(), None
        total = np.zeros(len(edges) - 1)
        total_var = np.zeros(len(edges) - 1)
        if mc:
            yields = [_values(groups[g])[0] for g in mc]
            mplhep.histplot(yields, bins=edges, ax=ax, stack=True, histtype="fill", label=mc,
                            color=[COLOURS[i % len(COLOURS)] for i in range(len(mc))],
                            edgecolor="black", linewidth=0.4)  # fmt: skip
            for g in mc:
                v, var = _values(groups[g])
                total, total_var = total + v, total_var + var
            unc = np.sqrt(total_var)
            ax.stairs(total + unc, edges, baseline=total - unc, fill=True, alpha=0.3,
                      color="gray", hatch="///", label="MC stat. unc.")  # fmt: skip
        if data:
            counts = sum(_values(groups[g])[0] for g in data)
            centres = 0.5 * (edges[1:] + edges[:-1])
            ax.errorbar(centres, counts, yerr=np.sqrt(counts), fmt="ko", markersize=4, label="data")
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(total > 0, counts / total, np.nan)
                rel = np.where(total > 0, np.sqrt(total_var) / total, np.nan)
                err = np.where(total > 0, np.sqrt(counts) / total, np.nan)
            rax.stairs(1 + rel, edges, baseline=1 - rel, fill=True, alpha=0.3, color="gray")
            rax.errorbar(centres, ratio, yerr=err, fmt="ko", markersize=4)
            rax.axhline(1.0, color="black", linewidth=0.8)
            rax.set_ylim(0.5, 1.5)
            rax.set_ylabel("data / MC")
            rax.set_xlabel(label)
        else:
            ax.set_xlabel(label)
        ax.set_ylabel("events" if description.get("luminosity") else "entries")
        heights = [total + np.sqrt(total_var), *(_values(groups[g])[0] for g in data)]
        top = max(max(h.max(initial=0) for h in heights), 1e-9)
        if log_y:
            ax.set_yscale("log")
            ax.set_ylim(top=top * 1e3)
        else:
            ax.set_ylim(0, top * 1.5)  # room for the legend
        ax.set_xlim(edges[0], edges[-1])
        if categories:  # a cutflow: one labelled bin per category
            (rax or ax).set_xticks(0.5 + np.arange(len(categories)), categories, rotation=30,
                                   ha="right")  # fmt: skip
            (rax or ax).minorticks_off()
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles[::-1], labels[::-1], ncol=2, fontsize="x-small", loc="upper right")
        # The luminosity only: the toolkit knows no experiment and no collision energy.
        lumi = description.get("luminosity")
        right = f"{lumi / 1000:.4g} fb$^{{-1}}$" if lumi else ""
        mplhep.label.exp_label(exp="", llabel=name, rlabel=right, data=bool(data), ax=ax)
        paths = []
        for fmt in formats:
            target = outdir / f"{figure_name(name)}.{fmt}"
            with atomic_path(target) as tmp:
                fig.savefig(tmp, format=fmt, metadata=SAVE_METADATA[fmt])
            paths.append(target)
    return paths


def draw_all(histograms_root: str | os.PathLike, outdir: str | os.PathLike, *,
             formats=("png", "pdf"), include=("*",), exclude=(), log_y=False,
             workers: int = 1) -> list[Path]:  # fmt: skip
    """Every selected 1D histogram of an exported file, one figure each, into ``outdir``."""
    hists, description = read_export(histograms_root)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    names = selected(sorted(hists), include, exclude)
    jobs = [(n, hists[n], description, outdir, tuple(formats), log_y) for n in names]
    return in_processes(draw, jobs, workers)


def in_processes(draw_one, jobs: list[tuple], workers: int) -> list[Path]:
    """``draw_one(*job)`` for every job (each returning the paths it wrote), in that many
    forked processes: matplotlib draws on one core. The files are the same either way."""
    if workers <= 1 or len(jobs) < 2:
        return [p for job in jobs for p in draw_one(*job)]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import matplotlib.figure  # noqa: F401  (imported once, for every forked child)
    import mplhep  # noqa: F401

    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context) as pool:
        futures = [pool.submit(draw_one, *job) for job in jobs]
        return [p for future in futures for p in future.result()]
