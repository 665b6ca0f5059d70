"""Our agc::ttbar stage against a port of the ROOT team's RDataFrame AGC, same files, 1 core.

The RDataFrame side is our port (benchmarks/agc_rdataframe_port.py and agc_rdataframe.h)
of root-project/analysis-grand-challenge's analyses/cms-open-data-ttbar (analysis.py,
helpers.h), with our stage's settings (b-tag branch and threshold, binning, systematic
steps, seeded jet-resolution smearing, float64 arithmetic) so that both fill the same
histograms. It runs in .venv-root (ROOT from PyPI) as a subprocess, on one thread.

Rows, each the median of --repeat interleaved passes over the same files: the I/O floor
(uproot reading the branches the stage needs, as stage_throughput.py), our stage
(swift-rules' Runner, in-process, one core, numba kernels compiled beforehand), the RDF port's
event loops (RDF's own clock) and the RDF port's whole run (declaring the helpers, booking
the graphs, which just-in-time compiles them, and RunGraphs). Then every histogram of our
stage is compared bin by bin with the RDF port's (exit status 1 if they disagree).

    python benchmarks/agc_rdataframe.py [--repeat 3] [--files-per-sample N]
        [--root-python .venv-root/bin/python] [--data DIR --preset small]

Without --data, the files are the benchmark preset's (~5.75M events, made by Snakemake
as for the other benchmarks); with --data DIR they are generated straight into DIR.
Without --root-python, .venv-root is built if needed (environment/envs.py root).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from common import REPO, WORK, benchmark_fileset, floor_branches, machine, table
from stage_throughput import io_floor, stage

from swift_rules.agc import kernels, ttbar
from swift_rules.agc.samples import BINS, HIGH, LOW, REGIONS, split_sample_name
from swift_rules.agc.ttbar import TtbarProcessor, sample_variations

PORT = Path(__file__).resolve().with_name("agc_rdataframe_port.py")
HERE = WORK / "agc_rdataframe"
CHUNKSIZE = 100_000  # bench_config.yaml's stages.agc::ttbar.chunksize
# Histograms filled with weights other than 1: their sums may differ by float64 rounding
# (the two sides add the same weights in a different order). Every other histogram holds
# counts, which must agree exactly.
WEIGHTED = ("btag_var_", "scale_var_")
# |a - b| / max(|a|, |b|) allowed for a weighted bin: a sum of n float64 terms in another
# order is off by at most about n * 2**-53 relative, n <= 10**6 here.
WEIGHTED_RTOL = 1e-10


def generated_fileset(data: Path, preset: str) -> dict[str, list[str]]:
    """The files of ``preset`` generated under ``data`` (kept when already there)."""
    from swift_rules.agc.generate import generate_dataset
    from swift_rules.agc.presets import DEFAULT_SIZES

    events, files = DEFAULT_SIZES[preset]
    generate_dataset(data, events_per_file=events, files_per_sample=files, seed=42)
    return {s: sorted(str(p) for p in (data / s).glob("*.root")) for s in events}


def root_python(given: str | None) -> Path:
    if given:
        return Path(given)
    sys.path.insert(0, str(REPO / "environment"))
    import envs

    return envs.ensure("root") / "bin" / "python"


def rdf_job(fileset) -> dict:
    """The RDF port's job: the samples and our stage's settings."""
    proc = TtbarProcessor()
    if kernels.N_LEADING != 4:
        raise RuntimeError("the port varies the b-tag weight of the 4 leading jets, as the AGC")
    samples = []
    for name, files in fileset.items():
        process, variation = split_sample_name(name)
        samples.append({"name": name, "process": process, "variation": variation,
                        "files": [str(f) for f in files]})  # fmt: skip
    return {
        "samples": samples,
        "btag_branch": proc.btag_branch,
        "btag_threshold": proc.btag_threshold,
        "bins": BINS,
        "low": LOW,
        "high": HIGH,
        "jes_factor": ttbar.JES_FACTOR,
        "jer_width": ttbar.JER_WIDTH,
        "btag_step": ttbar.BTAG_WEIGHT_STEP,
        "wjets_step": ttbar.WJETS_SCALE_STEP,
    }


def run_rdf(python: Path, job: dict, tag: str) -> dict:
    """The RDF port's report (see agc_rdataframe_port.py), plus ``process_s``."""
    HERE.mkdir(parents=True, exist_ok=True)
    job_path, report_path = HERE / f"job-{tag}.json", HERE / f"report-{tag}.json"
    job_path.write_text(json.dumps(job))
    report_path.unlink(missing_ok=True)
    # A plain ROOT environment: nothing of the package's venv on its path.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    started = time.perf_counter()
    out = subprocess.run(
        [str(python), "-W", "ignore", str(PORT), str(job_path), str(report_path)],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"the RDF port failed:\n{(out.stdout + out.stderr)[-4000:]}")
    report = json.loads(report_path.read_text())
    report["process_s"] = wall
    return report


def max_rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    scale = np.maximum(np.abs(a), np.abs(b))
    nonzero = scale > 0
    if not nonzero.any():
        return 0.0
    return float(np.max(np.abs(a - b)[nonzero] / scale[nonzero]))


def compare(ours: dict, rdf: dict) -> tuple[list[list], list[str]]:
    """Rows (one per histogram) and problems of our stage's histograms against the port's."""
    rows, problems = [], []
    for sample, h in sorted(ours["hists"].items()):
        process, variation = split_sample_name(sample)
        theirs = rdf["samples"].get(sample)
        if theirs is None:
            problems.append(f"{sample}: no RDF histograms")
            continue
        if theirs["events"] != ours["nevts"][sample]:
            problems.append(f"{sample}: {ours['nevts'][sample]} events, RDF {theirs['events']}")
        for region in REGIONS:
            names = sample_variations(process, variation)
            extra = set(theirs["histograms"][region]) - set(names)
            if extra:
                problems.append(f"{sample} {region}: RDF has more variations: {sorted(extra)}")
            for name in names:
                view = h[:, region, process, name]
                values, variances = view.values(flow=True), view.variances(flow=True)
                other = theirs["histograms"][region].get(name)
                if other is None:
                    problems.append(f"{sample} {region} {name}: missing in RDF")
                    continue
                o_values, o_variances = np.asarray(other["values"]), np.asarray(other["variances"])
                d_values = max_rel_diff(values, o_values)
                d_variances = max_rel_diff(variances, o_variances)
                weighted = name.startswith(WEIGHTED)
                if weighted:
                    ok = max(d_values, d_variances) <= WEIGHTED_RTOL
                else:
                    ok = np.array_equal(values, o_values) and np.array_equal(variances, o_variances)
                n_bins = int(np.sum(values != o_values))
                if not ok:
                    problems.append(
                        f"{sample} {region} {name}: {n_bins} bins differ, max rel. diff "
                        f"{d_values:.3g} (sum of w), {d_variances:.3g} (sum of w^2)"
                    )
                rows.append([sample, region, name, "weights" if weighted else "counts",
                             f"{values.sum():,.6g}", f"{o_values.sum():,.6g}", n_bins,
                             f"{d_values:.2g}", f"{d_variances:.2g}",
                             "ok" if ok else "DIFFERS"])  # fmt: skip
    return rows, problems


def summarise_original(rows: list[list]) -> None:
    """What the RDF AGC's own arithmetic changes, per variation (not a pass/fail check)."""
    by_variation: dict[str, list] = {}
    for _, _, name, _, _, _, n_bins, d_values, _, verdict in rows:
        key = next((f"{prefix}*" for prefix in WEIGHTED if name.startswith(prefix)), name)
        if name in ("scaleup", "scaledown", "ME_var", "PS_var"):
            key = "ttbar variation samples"
        entry = by_variation.setdefault(key, [0, 0, 0, 0.0])
        entry[0] += 1
        entry[1] += verdict == "ok"
        entry[2] += n_bins
        entry[3] = max(entry[3], float(d_values))
    table(
        "Histograms, our stage vs the port with the RDF AGC's float32 arithmetic and "
        "pT-digit smearing (informational)",
        ["variation", "histograms", "agreeing as above", "bins differing", "max rel. diff sum w"],
        [[k, n, ok, bins, f"{d:.2g}"] for k, (n, ok, bins, d) in by_variation.items()],
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--files-per-sample", type=int, default=None)
    parser.add_argument(
        "--root-python", help="python of a ROOT environment (default: .venv-root, built if need be)"
    )
    parser.add_argument(
        "--data", type=Path, help="generate the files into DIR instead of the benchmark workflow's"
    )
    parser.add_argument("--preset", default="benchmark", help="with --data: the preset")
    parser.add_argument(
        "--original-arithmetic",
        action="store_true",
        help="also run the port with the RDF AGC's float32 arithmetic and pT-digit smearing: "
        "its timing, and what it changes in the histograms",
    )
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")

    fileset = generated_fileset(args.data, args.preset) if args.data else benchmark_fileset()
    if args.files_per_sample:
        fileset = {s: f[: args.files_per_sample] for s, f in fileset.items()}
    python = root_python(args.root_python)
    branches = floor_branches(next(iter(fileset.values()))[0])
    job = rdf_job(fileset)

    # Warm-up: compile/load the numba kernels, fill the page cache for every reader.
    first = next(iter(fileset))
    stage({first: fileset[first][:1]}, CHUNKSIZE)
    io_floor(fileset, branches)

    floor, ours, loops, whole, process = [], [], [], [], []
    loops_original, whole_original = [], []
    n_events = None
    for i in range(args.repeat):
        n_io, t_io = io_floor(fileset, branches)
        floor.append(t_io)
        out, t_ours = stage(fileset, CHUNKSIZE)
        ours.append(t_ours)
        report = run_rdf(python, job, str(i))
        if args.original_arithmetic:
            original = run_rdf(python, {**job, "arithmetic": "original"}, f"original-{i}")
            loops_original.append(original["loops_s"])
            whole_original.append(original["whole_s"])
        loops.append(report["loops_s"])
        whole.append(report["whole_s"])
        process.append(report["process_s"])
        n_events = n_io
        n_ours = sum(out["nevts"].values())
        n_rdf = sum(s["events"] for s in report["samples"].values())
        if not n_io == n_ours == n_rdf:
            raise RuntimeError(f"events: I/O floor {n_io}, ours {n_ours}, RDF {n_rdf}")

    median = statistics.median
    t_io, t_ours = median(floor), median(ours)
    rate_io, rate_ours = n_events / t_io, n_events / t_ours

    def row(what, t):
        rate = n_events / t
        return [what, f"{n_events:,}", f"{t:.2f}", f"{rate:,.0f}", f"{rate / rate_io:.2f}",
                f"{rate_ours / rate:.2f}"]  # fmt: skip

    rows = [
        row("I/O floor (uproot, needed branches)", t_io),
        row("agc::ttbar stage (swift-rules' Runner, 1 core)", t_ours),
        row("RDF port, event loops only (1 thread)", median(loops)),
        row("RDF port, whole: helpers, booking (JIT), RunGraphs", median(whole)),
    ]
    passes = {"floor": floor, "ours": ours, "RDF loops": loops, "RDF whole": whole}
    if args.original_arithmetic:
        rows += [
            row("RDF port, float32 as the RDF AGC: event loops only", median(loops_original)),
            row("RDF port, float32 as the RDF AGC: whole", median(whole_original)),
        ]
        passes.update({"float32 loops": loops_original, "float32 whole": whole_original})
    table(
        f"agc::ttbar stage vs RDataFrame port of the AGC, 1 core, medians of {args.repeat} "
        f"({machine()}; ROOT {report['root']})",
        ["what", "events", "wall time [s]", "events/s", "ratio to I/O floor",
         "ours / this (speed)"],
        rows,
    )  # fmt: skip
    print(
        f"RDF port (last pass): import ROOT {report['import_s']:.2f} s, helpers "
        f"{report['declare_s']:.2f} s, booking (jits the expressions) {report['book_s']:.2f} s, "
        f"RunGraphs {report['run_graphs_s']:.2f} s (of which event loops {report['loops_s']:.2f} "
        f"s wall, {report['loops_cpu_s']:.2f} s CPU; {report['n_loops']} loops); whole "
        f"process {median(process):.2f} s (median)."
    )
    print("per pass [s]:", "; ".join(f"{k} {[round(x, 2) for x in v]}" for k, v in passes.items()))
    print(f"load average (1, 5, 15 min): {', '.join(f'{x:.1f}' for x in os.getloadavg())}")

    rows, problems = compare(out, report)
    table(
        "Histograms, our stage vs the RDF port, bin by bin (flow bins included)",
        ["sample", "region", "variation", "kind", "sum ours", "sum RDF", "bins differing",
         "max rel. diff sum w", "max rel. diff sum w^2", "verdict"],
        rows,
    )  # fmt: skip
    n_counts = sum(1 for r in rows if r[3] == "counts")
    print(f"{len(rows)} histograms compared: {n_counts} of counts (must be equal), "
          f"{len(rows) - n_counts} weighted (relative tolerance {WEIGHTED_RTOL:g}).")  # fmt: skip
    if args.original_arithmetic:
        summarise_original(compare(out, original)[0])
    if problems:
        print("DISAGREEMENT:\n  " + "\n  ".join(problems))
        return 1
    print("All histograms agree.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
