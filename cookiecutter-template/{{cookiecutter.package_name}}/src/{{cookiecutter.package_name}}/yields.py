"""Step 5, an own step of this analysis: each group's yield and data / simulation.

It reads what swift-rules' generic export wrote (histograms.root, normalised) and runs
as a rule of this analysis' own (workflow/rules/analysis.smk), after the generic ones:

    python -m {{ cookiecutter.package_name }}.yields \
        results/{{ cookiecutter.namespace }}/histograms/histograms.root \
        --histogram mass --window 81 101 --out results/{{ cookiecutter.namespace }}/yields.json

Add further steps the same way: a module here, a rule in analysis.smk, its output in
ANALYSIS_TARGETS.
"""

import argparse
import json
from pathlib import Path

import hist
from swift_rules.export import read_export


def yields(histograms_root, histogram: str, window=None) -> dict:
    """Each group's events in `histogram` (within `window` of its axis, if given), the
    data and the simulation's total, and their ratio."""
    hists, description = read_export(histograms_root)
    if histogram not in hists:
        raise SystemExit(f"{histograms_root} has no histogram {histogram!r}: {sorted(hists)}")
    low, high = (hist.loc(window[0]), hist.loc(window[1])) if window else (None, None)
    where = slice(low, high, sum)  # the sum of the bins in the window (all, with overflows)
    groups = {g: float(h[where].value) for g, h in sorted(hists[histogram].items())}
    is_data = {g: description["groups"][g]["is_data"] for g in groups}
    data = sum(v for g, v in groups.items() if is_data[g])
    simulation = sum(v for g, v in groups.items() if not is_data[g])
    return {
        "histogram": histogram,
        "window": list(window) if window else None,
        "luminosity": description["luminosity"],
        "yields": groups,
        "data": data,
        "simulation": simulation,
        "data_over_simulation": data / simulation if simulation else None,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("histograms_root", help="a stage's histograms.root (swift-rules export)")
    parser.add_argument("--histogram", required=True, help="name of the histogram, e.g. mass")
    parser.add_argument("--window", nargs=2, type=float, metavar=("LOW", "HIGH"))
    parser.add_argument("--out", required=True, help="the JSON file to write")
    args = parser.parse_args(argv)
    result = yields(args.histograms_root, args.histogram, args.window)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
