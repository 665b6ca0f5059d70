"""Commands that turn stage results into products: ROOT histograms and figures."""

from __future__ import annotations

import logging

from swift_rules.cli import parse_json
from swift_rules.errors import SwiftError

log = logging.getLogger(__name__)


def cmd_export(args) -> int:
    from swift_rules.export import export

    results = [*args.results, *args.input_files]
    if not results:
        raise SwiftError("no result files given")
    description = export(
        results, args.datasets, args.out, stage=args.stage, luminosity=args.luminosity,
        normalise_by=args.normalise_by,
    )  # fmt: skip
    n = sum(len(g) for g in description["histograms"].values())
    log.info(
        f"{args.stage}: {len(description['histograms'])} histogram(s) over "
        f"{len(description['groups'])} group(s), {n} in all, to {args.out}"
    )
    return 0


def cmd_draw(args) -> int:
    from swift_rules.plots import draw_all

    paths = draw_all(
        args.histograms, args.out, formats=args.formats.split(","), include=args.include or ["*"],
        exclude=args.exclude or [], log_y=args.log_y, workers=args.workers,
    )  # fmt: skip
    for path in paths:
        print(path)
    return 0


def add_commands(add) -> None:
    sp = add(
        "export",
        cmd_export,
        "Normalise a stage's per-dataset results and write their histograms, grouped, to ROOT.",
    )
    sp.add_argument("results", nargs="*", help="per-dataset result files (or after --)")
    sp.set_defaults(input_files=[])
    sp.add_argument("--out", required=True, help="ROOT file to write")
    sp.add_argument("--stage", required=True, help="the stage's name (recorded in the file)")
    sp.add_argument(
        "--datasets",
        type=parse_json,
        required=True,
        metavar="JSON",
        help='each result file\'s dataset: {"RESULT": {"name": ..., "is_data": ..., "xsec": '
        '..., "process": ...}}',
    )
    sp.add_argument("--luminosity", type=float, help="/pb; without it nothing is scaled")
    sp.add_argument("--normalise-by", choices=["events", "sum_weights"], default="events")

    sp = add("draw", cmd_draw, "One figure per histogram of an exported ROOT file.")
    sp.add_argument("histograms", help="histograms.root written by swift-rules export")
    sp.add_argument("--out", required=True, help="folder of the figures")
    sp.add_argument("--formats", default="png,pdf", help="comma-separated: png, pdf, svg")
    sp.add_argument("--include", action="append", help="patterns of histograms to draw")
    sp.add_argument("--exclude", action="append", help="patterns of histograms not to draw")
    sp.add_argument("--log-y", action="store_true", help="logarithmic y axis")
    sp.add_argument("--workers", type=int, default=1, help="processes drawing figures")
