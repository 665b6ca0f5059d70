"""HEP-style plots of the AGC: stacked histograms, pre-/post-fit data/MC, pulls, correlations.

Every plot is written twice, as PNG and PDF, atomically, with the file's creation
date and software stamp left out so that a rerun reproduces the files. Figures are
made with ``matplotlib.figure.Figure`` (no pyplot, no display needed) under the
mplhep CMS style.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from swift_rules.agc.histograms import PSEUDODATA, histogram_key, read_histograms_root
from swift_rules.agc.samples import LUMINOSITY_PB, PROCESSES, REGIONS
from swift_rules.atomic import atomic_path

LUMI_FB = LUMINOSITY_PB / 1000.0  # 3.378 fb^-1
COM_TEV = 13
EXPERIMENT_TEXT = "Open Data"

OBSERVABLE_LABELS = {
    "4j1b": r"$H_{T}$ [GeV]",
    "4j2b": r"$m_{bjj}$ [GeV]",
}
PROCESS_LABELS = {
    "ttbar": r"$t\bar{t}$",
    "wjets": r"W+jets",
    "single_top_s_chan": r"single top, s-channel",
    "single_top_t_chan": r"single top, t-channel",
    "single_top_tW": r"tW",
}
PROCESS_COLORS = {
    "ttbar": "#e42536",
    "wjets": "#5790fc",
    "single_top_s_chan": "#964a8b",
    "single_top_t_chan": "#9c9ca1",
    "single_top_tW": "#f89c20",
}
# cabinetry sample names (cabinetry_config.yml) -> processes
SAMPLE_PROCESSES = {
    "ttbar": "ttbar",
    "W+jets": "wjets",
    "single top, s-channel": "single_top_s_chan",
    "single top, t-channel": "single_top_t_chan",
    "tW": "single_top_tW",
}
# stacking order, bottom to top: smallest backgrounds first, signal on top
STACK_ORDER = [
    "single_top_s_chan",
    "single_top_t_chan",
    "single_top_tW",
    "wjets",
    "ttbar",
]

SAVE_METADATA = {
    "png": {"Software": None},
    "pdf": {"CreationDate": None, "Creator": None, "Producer": None},
}
DPI = 150


def _style():
    import matplotlib.style
    import mplhep

    return matplotlib.style.context(
        [mplhep.style.CMS, {"savefig.dpi": DPI, "pdf.compression": 6, "svg.hashsalt": "agc"}]
    )


def _label(ax, **kwargs) -> None:
    import mplhep

    mplhep.cms.label(
        text=EXPERIMENT_TEXT, data=False, lumi=round(LUMI_FB, 3), com=COM_TEV, ax=ax, **kwargs
    )


def _save(fig, outdir: Path, stem: str) -> list[Path]:
    paths = []
    for fmt in ("png", "pdf"):
        target = outdir / f"{stem}.{fmt}"
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=fmt, metadata=SAVE_METADATA[fmt])
        paths.append(target)
    return paths


def _ratio_figure():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 10))
    ax, rax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1), "hspace": 0.05})
    return fig, ax, rax


def _data_mc_panels(
    ax,
    rax,
    edges: np.ndarray,
    stack: Sequence[tuple[str, np.ndarray]],
    total_unc: np.ndarray,
    data: np.ndarray | None,
    unc_label: str,
    xlabel: str,
    title: str,
) -> None:
    """Stacked MC (with an uncertainty band), data points and a data/MC ratio panel."""
    import mplhep

    names = [name for name, _ in stack]
    yields = [y for _, y in stack]
    mplhep.histplot(
        yields,
        bins=edges,
        ax=ax,
        stack=True,
        histtype="fill",
        label=[PROCESS_LABELS.get(n, n) for n in names],
        color=[PROCESS_COLORS.get(n) for n in names],
        edgecolor="black",
        linewidth=0.5,
    )
    total = np.sum(yields, axis=0)
    band = {"step": "post", "facecolor": "none", "edgecolor": "0.3", "hatch": "////", "lw": 0}
    ax.fill_between(
        edges,
        np.append(total - total_unc, 0),
        np.append(total + total_unc, 0),
        **band,
        label=unc_label,
    )
    centers = 0.5 * (edges[1:] + edges[:-1])
    if data is not None:
        data_err = np.sqrt(np.clip(data, 0, None))
        ax.errorbar(
            centers,
            data,
            yerr=data_err,
            fmt="o",
            color="black",
            markersize=5,
            label="Pseudodata",
        )
    ax.set_ylabel("Events / bin")
    ymax = max(np.max(total + total_unc), np.max(data) if data is not None else 0.0)
    ax.set_ylim(0, 1.7 * ymax)
    handles, labels = ax.get_legend_handles_labels()
    legend = ax.legend(
        handles[::-1],
        labels[::-1],
        loc="upper right",
        fontsize="x-small",
        ncols=2,
        title=title,
        title_fontsize="small",
        alignment="left",
    )
    legend.get_title().set_multialignment("left")

    with np.errstate(divide="ignore", invalid="ignore"):
        rel_unc = np.where(total > 0, total_unc / total, 0.0)
        rax.fill_between(edges, np.append(1 - rel_unc, 1), np.append(1 + rel_unc, 1), **band)
        if data is not None:
            ratio = np.where(total > 0, data / total, np.nan)
            ratio_err = np.where(total > 0, np.sqrt(np.clip(data, 0, None)) / total, np.nan)
            rax.errorbar(centers, ratio, yerr=ratio_err, fmt="o", color="black", markersize=5)
    rax.axhline(1.0, color="black", lw=1, ls="--")
    rax.set_ylim(0.5, 1.5)
    rax.set_ylabel("Data / MC")
    rax.set_xlabel(xlabel)
    rax.set_xlim(edges[0], edges[-1])


def plot_stacks(histograms_root: str | os.PathLike, outdir: str | os.PathLike) -> list[Path]:
    """Per region, the stacked MC with MC stat. uncertainty and the pseudodata (full binning)."""
    outdir = Path(outdir)
    hists = read_histograms_root(histograms_root)
    paths: list[Path] = []
    regions = [r for r in REGIONS if any(k.startswith(f"{r}_") for k in hists)]
    for region in regions:
        stack = []
        variances = []
        edges = None
        for process in STACK_ORDER + [p for p in PROCESSES if p not in STACK_ORDER]:
            key = histogram_key(region, process)
            if key in hists:
                values, var, edges = hists[key]
                stack.append((process, values))
                variances.append(var)
        if not stack:
            continue
        data_key = f"{region}_{PSEUDODATA}"
        data = hists[data_key][0] if data_key in hists else None
        with _style():
            fig, ax, rax = _ratio_figure()
            _data_mc_panels(
                ax,
                rax,
                edges,
                stack,
                np.sqrt(np.sum(variances, axis=0)),
                data,
                "MC stat. unc.",
                OBSERVABLE_LABELS.get(region, "observable [GeV]"),
                f"{region} region",
            )
            _label(ax)
            paths += _save(fig, outdir, f"stack_{region}")
    return paths


def _load_fit_dir(fit_dir: Path) -> tuple[dict, dict, dict]:
    workspace = json.loads((fit_dir / "workspace.json").read_text())
    results = json.loads((fit_dir / "fit_results.json").read_text())
    config = yaml.safe_load((fit_dir / "cabinetry_config.yml").read_text())
    return workspace, results, config


def _channel_edges(fit_dir: Path, config: dict) -> dict[str, np.ndarray]:
    templates = read_histograms_root(fit_dir / "fit_templates.root")
    edges = {}
    for region in config["Regions"]:
        path = region.get("RegionPath", region["Name"])
        for key, (_, _, e) in templates.items():
            if key.startswith(f"{path}_"):
                edges[region["Name"]] = e
                break
    return edges


def plot_data_mc(fit_dir: str | os.PathLike, outdir: str | os.PathLike) -> list[Path]:
    """Pre-fit and post-fit data/MC plots of the fit regions (``prefit_*``, ``postfit_*``)."""
    import cabinetry

    from swift_rules.agc.inference import fit_results_from_json

    fit_dir, outdir = Path(fit_dir), Path(outdir)
    workspace, results, config = _load_fit_dir(fit_dir)
    model, data = cabinetry.model_utils.model_and_data(workspace)
    fit_results = fit_results_from_json(results)
    edges = _channel_edges(fit_dir, config)
    paths: list[Path] = []
    poi = results["poi"]
    predictions = {
        "prefit": cabinetry.model_utils.prediction(model),
        "postfit": cabinetry.model_utils.prediction(model, fit_results=fit_results),
    }
    main_data = np.asarray(data[: model.config.nmaindata], dtype=float)
    region_paths = {r["Name"]: r.get("RegionPath", r["Name"]) for r in config["Regions"]}
    for stage, prediction in predictions.items():
        for ich, channel in enumerate(model.config.channels):
            sl = model.config.channel_slices[channel]
            # data are laid out per channel in model.config.channels order
            ch_data = main_data[sl]
            by_process = {
                SAMPLE_PROCESSES.get(s, s): np.asarray(prediction.model_yields[ich][isam])
                for isam, s in enumerate(model.config.samples)
            }
            stack = [(p, by_process[p]) for p in STACK_ORDER if p in by_process]
            stack += [(p, y) for p, y in by_process.items() if p not in STACK_ORDER]
            total_unc = np.asarray(prediction.total_stdev_model_bins[ich][-1])
            region = region_paths.get(channel, channel)
            title = f"{channel}, {'pre-fit' if stage == 'prefit' else 'post-fit'}"
            if stage == "postfit":
                title += (
                    "\n" + r"$\mu_{t\bar{t}}$ = "
                    f"{poi['bestfit']:.3f} $\\pm$ {poi['uncertainty']:.3f}"
                )
            with _style():
                fig, ax, rax = _ratio_figure()
                _data_mc_panels(
                    ax,
                    rax,
                    edges[channel],
                    stack,
                    total_unc,
                    ch_data,
                    "Pre-fit unc." if stage == "prefit" else "Post-fit unc.",
                    OBSERVABLE_LABELS.get(region, "observable [GeV]"),
                    title,
                )
                _label(ax)
                paths += _save(fig, outdir, f"{stage}_{region}")
    return paths


def _constrained_parameters(fit_dir: Path, results: dict) -> list[dict[str, Any]]:
    """Constrained nuisance parameters (no POI, no per-bin MC-stat. gammas), with pulls."""
    import cabinetry

    workspace = json.loads((fit_dir / "workspace.json").read_text())
    model, _ = cabinetry.model_utils.model_and_data(workspace)
    init = np.asarray(model.config.suggested_init(), dtype=float)
    prefit_unc = np.asarray(cabinetry.model_utils.prefit_uncertainties(model), dtype=float)
    labels = list(model.config.par_names)
    out = []
    for i, label in enumerate(labels):
        if label == results["poi"]["name"] or label.startswith("staterror_"):
            continue
        if prefit_unc[i] <= 0:  # unconstrained (free normalisation)
            continue
        par = results["parameters"][i]
        assert par["label"] == label, (par["label"], label)
        out.append(
            {
                "label": label,
                "pull": (par["bestfit"] - init[i]) / prefit_unc[i],
                "pull_unc": par["uncertainty"] / prefit_unc[i],
            }
        )
    return out


def plot_pulls(fit_dir: str | os.PathLike, outdir: str | os.PathLike) -> list[Path]:
    """Nuisance-parameter pulls, (best fit - pre-fit) / pre-fit unc., with post-fit unc."""
    from matplotlib.figure import Figure

    fit_dir, outdir = Path(fit_dir), Path(outdir)
    results = json.loads((fit_dir / "fit_results.json").read_text())
    pars = _constrained_parameters(fit_dir, results)
    n = len(pars)
    with _style():
        fig = Figure(figsize=(14, 2.5 + 0.55 * max(n, 1)))
        ax = fig.subplots()
        y = np.arange(n)[::-1]
        ax.axvspan(-2, 2, color="#fde725", alpha=0.5, lw=0)
        ax.axvspan(-1, 1, color="#35b779", alpha=0.5, lw=0)
        ax.axvline(0, color="black", lw=1, ls="--")
        ax.errorbar(
            [p["pull"] for p in pars],
            y,
            xerr=[p["pull_unc"] for p in pars],
            fmt="o",
            color="black",
            markersize=6,
        )
        ax.set_yticks(y, [p["label"] for p in pars], fontsize="small")
        ax.tick_params(axis="y", which="minor", left=False, right=False)
        ax.set_xlim(-3, 3)
        ax.set_ylim(-0.7, n - 0.3)
        ax.set_xlabel(r"$(\hat{\theta} - \theta_0) / \Delta\theta$")
        _label(ax, loc=0)
        fig.tight_layout()
        return _save(fig, outdir, "pulls")


def plot_correlation_matrix(fit_dir: str | os.PathLike, outdir: str | os.PathLike) -> list[Path]:
    """Correlation matrix of the POI and the constrained nuisance parameters."""
    from matplotlib.figure import Figure

    fit_dir, outdir = Path(fit_dir), Path(outdir)
    results = json.loads((fit_dir / "fit_results.json").read_text())
    labels = results["labels"]
    keep = [i for i, label in enumerate(labels) if not label.startswith("staterror_")]
    corr = np.array(
        [[np.nan if c is None else c for c in row] for row in results["correlation_matrix"]]
    )[np.ix_(keep, keep)]
    names = [labels[i] for i in keep]
    n = len(names)
    with _style():
        fig = Figure(figsize=(4 + 0.75 * n, 3 + 0.7 * n))
        ax = fig.subplots()
        im = ax.imshow(corr, vmin=-1, vmax=1, cmap="RdBu_r")
        fig.colorbar(im, ax=ax, label="correlation")
        ax.set_xticks(np.arange(n), names, rotation=45, ha="right", fontsize="x-small")
        ax.set_yticks(np.arange(n), names, fontsize="x-small")
        ax.tick_params(which="minor", bottom=False, top=False, left=False, right=False)
        for i in range(n):
            for j in range(n):
                value = corr[i, j]
                ax.text(
                    j,
                    i,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="white" if abs(value) > 0.6 else "black",
                )
        _label(ax, loc=0)
        fig.tight_layout()
        return _save(fig, outdir, "correlation_matrix")


def make_plots(
    histograms_root: str | os.PathLike,
    fit_dir: str | os.PathLike,
    outdir: str | os.PathLike,
    workers: int = 1,
) -> list[Path]:
    """All plots, as PNG and PDF in ``outdir``; return their paths.

    ``stack_{region}``: MC stack and pseudodata of ``histograms_root`` (full binning);
    ``prefit_{region}``, ``postfit_{region}``: data/MC of the fit of ``fit_dir``
    (``workspace.json``, ``fit_results.json``, ``cabinetry_config.yml``,
    ``fit_templates.root`` from :mod:`swift_rules.agc.inference`); ``pulls``;
    ``correlation_matrix``. With ``workers`` > 1 these four groups are drawn in that
    many forked processes (matplotlib draws on one core); the files are the same.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    groups = [
        (plot_stacks, histograms_root),
        (plot_data_mc, fit_dir),
        (plot_pulls, fit_dir),
        (plot_correlation_matrix, fit_dir),
    ]
    if workers <= 1:
        return [path for plot, source in groups for path in plot(source, outdir)]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import cabinetry  # noqa: F401  (imported once, here, for every forked child)
    import matplotlib.figure  # noqa: F401
    import mplhep  # noqa: F401

    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(min(workers, len(groups)), mp_context=context) as pool:
        futures = [pool.submit(plot, source, outdir) for plot, source in groups]
        return [path for future in futures for path in future.result()]
