"""The analysis' commands: the QCD estimate and the plots of ``plot.py``.

The core command line calls :func:`add_commands` with ``add(name, func, help)``, which
returns the sub-command's ``argparse.ArgumentParser``; ``func(args)`` returns the exit code.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def cmd_qcd(args) -> int:
    from swift_rules.htautau.qcd import qcd_file

    estimate = qcd_file(
        args.histograms, args.out, variables=args.variables or None, scale_factor=args.scale_factor
    )
    log.info(f"QCD estimate of {len(estimate)} variables: {args.out}")
    return 0


def cmd_plot(args) -> int:
    from swift_rules.export import read_export
    from swift_rules.htautau.plots import make_plots

    estimate, _ = read_export(args.histograms)
    for path in make_plots(estimate, args.out, args.variables or None, workers=args.workers):
        print(path)
    return 0


def add_commands(add) -> None:
    from swift_rules.htautau.samples import QCD_SCALE_FACTOR

    sp = add(
        "qcd",
        cmd_qcd,
        "The QCD multijet estimate of plot.py: same-sign data minus simulation, x 0.80.",
    )
    sp.add_argument(
        "histograms",
        help="the generic export of htautau::histograms ({variable}_{os,ss}/{group})",
    )
    sp.add_argument("--out", required=True, help="ROOT file: {variable}/{group}, QCD included")
    sp.add_argument("--variables", nargs="*", help="only these variables (default: all 34)")
    sp.add_argument(
        "--scale-factor",
        type=float,
        default=QCD_SCALE_FACTOR,
        help=f"same-sign to opposite-sign factor (default: {QCD_SCALE_FACTOR})",
    )

    sp = add("plot", cmd_plot, "The stacked plots of plot.py (PNG and PDF), one per variable.")
    sp.add_argument("histograms", help="the output of the qcd command")
    sp.add_argument("--out", required=True, help="output directory")
    sp.add_argument("--variables", nargs="*", help="only these variables (default: all 34)")
    sp.add_argument("--workers", type=int, default=1, help="processes drawing figures")
