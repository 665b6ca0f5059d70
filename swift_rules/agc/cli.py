"""The AGC's commands (``swift-rules agc ...``), added through the entry point
``swift_rules.commands``: its histograms.root, the fit, its plots, HEPData tables."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def cmd_histograms(args) -> int:
    from swift_rules.agc.histograms import write_histograms_root
    from swift_rules.agc.normalise import normalised_histogram, processed_sets
    from swift_rules.results import load_result

    output, meta = load_result(args.merged)
    h = normalised_histogram(output, meta["events"], meta.get("datasets"))
    write_histograms_root(h, args.out, processed=processed_sets(meta))
    left_out = [*meta.get("skipped_files", []), *meta.get("damaged_chunks", {})]
    if left_out:
        log.warning("left out of the normalisation, as unreadable: " + ", ".join(left_out))
    return 0


def cmd_fit(args) -> int:
    from swift_rules.agc.inference import build_workspace, run_fit

    workspace = build_workspace(args.histograms, args.out)
    results = run_fit(workspace, args.out)
    log.info(f"fit: {results.get('poi', {})}")
    return 0


def cmd_plot(args) -> int:
    from swift_rules.agc.plots import make_plots

    for path in make_plots(args.histograms, args.fit, args.out, workers=args.workers):
        print(path)
    return 0


def cmd_hepdata(args) -> int:
    from swift_rules.agc.hepdata import write_hepdata

    print(write_hepdata(args.histograms, args.out))
    return 0


def add_commands(add) -> None:
    sp = add(
        "histograms",
        cmd_histograms,
        "Normalise the merged agc::ttbar output and write the AGC's histograms.root.",
    )
    sp.add_argument("merged", help="merged result of the agc::ttbar stage")
    sp.add_argument("--out", required=True)

    sp = add("fit", cmd_fit, "Build the pyhf workspace and run the cabinetry fit.")
    sp.add_argument("histograms")
    sp.add_argument("--out", required=True, help="output directory")

    sp = add("plot", cmd_plot, "Stacked, pre-/post-fit, pull and correlation plots (PNG, PDF).")
    sp.add_argument("histograms")
    sp.add_argument("--fit", required=True, help="fit output directory")
    sp.add_argument("--out", required=True)
    sp.add_argument("--workers", type=int, default=1, help="processes drawing figures (default: 1)")

    sp = add("hepdata", cmd_hepdata, "The final histograms as HEPData tables.")
    sp.add_argument("histograms")
    sp.add_argument("--out", required=True)
