"""Wall time of the reference workflow against the bare stage, same files, same cores.

Bare stage: the Runner the stage jobs use (coffea's, files kept open:
swift_rules/kept_files.py) over every file of the benchmark set, as swift-rules runs it
on N cores: in this process for one, else its Dask LocalCluster of N single-threaded
workers (``executor.type: local``), cluster start-up included. Workflow: the
Snakemake reference workflow from the same (already generated) files with
``--cores N``: per-group stage jobs, merges, histograms.root; then the whole
workflow including the fit, plots and HEPData tables.

    python benchmarks/workflow_overhead.py [--cores N] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
import warnings

from common import CONFIG, REPO, WORK, benchmark_fileset, machine, snakemake, table

RESULTS = REPO / "results-benchmark"


def bare_stage(fileset, workers: int) -> float:
    """The stage over ``fileset`` as swift-rules runs it on ``workers`` cores (one: in
    this process; more: its LocalCluster, start-up included), without Snakemake."""
    from coffea import processor
    from coffea.nanoevents import NanoAODSchema

    from swift_rules.agc.ttbar import TtbarProcessor
    from swift_rules.backends import dask_client
    from swift_rules.kept_files import Runner, close_kept_files

    NanoAODSchema.warn_missing_crossrefs = False
    started = time.perf_counter()
    with dask_client({"type": "local"}, workers) as client:
        if client is None:
            executor = processor.IterativeExecutor(status=False)
        else:
            executor = processor.DaskExecutor(client=client, status=False)
        runner = Runner(executor, chunksize=100_000, schema=NanoAODSchema)
        runner(fileset, TtbarProcessor(), treename="Events")
        close_kept_files()
    return time.perf_counter() - started


def clean_outputs() -> None:
    # Keep the generated inputs and their logs; drop everything the analysis made.
    for name in ("agc", "fit", "plots", "hepdata", "histograms.root", "provenance.json"):
        path = RESULTS / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--repeat", type=int, default=3, help="repeats (medians are shown)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    fileset = benchmark_fileset()
    n_events = 0
    import uproot

    for files in fileset.values():
        for path in files:
            with uproot.open(path) as f:
                n_events += f["Events"].num_entries

    # Warm the page cache and the numba cache once, outside every measurement.
    bare_stage({k: v[:1] for k, v in list(fileset.items())[:1]}, 1)
    cold = WORK / "cold_jobs.yaml"
    cold.parent.mkdir(parents=True, exist_ok=True)
    cold.write_text("executor:\n  warm_start: false\n")
    # Interleaved repeats, medians: other load on the machine hits all three alike.
    bare, cold_runs, warm_runs = [], [], []
    for _ in range(args.repeat):
        bare.append(bare_stage(fileset, args.cores))
        # Without warm start (every job imports coffea & co. itself), then as by default.
        clean_outputs()
        cold_runs.append(snakemake("results-benchmark/histograms.root", "--configfile",
                                   str(CONFIG), str(cold), cores=args.cores))  # fmt: skip
        clean_outputs()
        warm_runs.append(snakemake("results-benchmark/histograms.root", cores=args.cores))
    t_bare, t_cold, t_hist = (statistics.median(t) for t in (bare, cold_runs, warm_runs))
    print(f"bare {bare}\nno warm start {cold_runs}\nworkflow {warm_runs}", flush=True)
    # Each repeat's workflow against the bare stage run just before it: the spread of
    # these says how much to trust the ratio of medians.
    pairs = ", ".join(f"{w / b:.2f}" for w, b in zip(warm_runs, bare, strict=True))
    print(f"workflow / bare stage, per repeat: {pairs}", flush=True)
    t_rest = snakemake(cores=args.cores)
    t_noop = snakemake(cores=args.cores)
    table(
        f"Reference workflow vs bare stage, {n_events:,} events, {args.cores} cores, "
        f"median of {args.repeat} ({machine()})",
        ["what", "wall time [s]", "events/s", "ratio to bare stage"],
        [
            ["bare stage (Runner; a LocalCluster for more than 1 core)", f"{t_bare:.1f}",
             f"{n_events / t_bare:,.0f}", "1.00"],
            ["workflow up to histograms.root, no warm start", f"{t_cold:.1f}",
             f"{n_events / t_cold:,.0f}", f"{t_cold / t_bare:.2f}"],
            ["workflow up to histograms.root", f"{t_hist:.1f}", f"{n_events / t_hist:,.0f}",
             f"{t_hist / t_bare:.2f}"],
            ["+ fit, plots, HEPData (after histograms)", f"{t_rest:.1f}", "", ""],
            ["whole workflow", f"{t_hist + t_rest:.1f}", f"{n_events / (t_hist + t_rest):,.0f}",
             f"{(t_hist + t_rest) / t_bare:.2f}"],
            ["no-op rerun", f"{t_noop:.1f}", "", ""],
        ],
    )  # fmt: skip


if __name__ == "__main__":
    main()
