"""Events/s per core of the agc::ttbar stage against the I/O floor, same files.

The I/O floor: uproot reading and decompressing only the branches the stage
needs (the same ones NanoEvents materialises), one core. The stage: coffea's
Runner with the in-process executor on one core, numba kernels compiled
beforehand (their on-disk cache makes that a one-off per installation).

    python benchmarks/stage_throughput.py [--files-per-sample N]
"""

from __future__ import annotations

import argparse
import time
import warnings

import uproot
from common import benchmark_fileset, floor_branches, machine, table

from swift_rules.agc.ttbar import TtbarProcessor


def io_floor(fileset, branches) -> tuple[int, float]:
    events, started = 0, time.perf_counter()
    for files in fileset.values():
        for path in files:
            with uproot.open(path) as f:
                tree = f["Events"]
                for arrays in tree.iterate(branches, step_size=100_000, library="ak"):
                    events += len(arrays)
    return events, time.perf_counter() - started


def stage(fileset, chunksize=100_000) -> float:
    """Wall time of the stage over every event of ``fileset`` on one core."""
    from coffea import processor
    from coffea.nanoevents import NanoAODSchema

    NanoAODSchema.warn_missing_crossrefs = False
    runner = processor.Runner(
        processor.IterativeExecutor(status=False), chunksize=chunksize, schema=NanoAODSchema
    )
    started = time.perf_counter()
    runner(fileset, TtbarProcessor(), treename="Events")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files-per-sample", type=int, default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    fileset = benchmark_fileset()
    if args.files_per_sample:
        fileset = {s: f[: args.files_per_sample] for s, f in fileset.items()}
    branches = floor_branches(next(iter(fileset.values()))[0])

    # Warm-up: compile/load the numba kernels, fill the page cache for both readers.
    first = next(iter(fileset))
    stage({first: fileset[first][:1]})
    io_floor({first: fileset[first][:1]}, branches)

    n_io, t_io = io_floor(fileset, branches)
    t_stage = stage(fileset)
    n_stage = n_io  # same files, every event
    rate_io, rate_stage = n_io / t_io, n_stage / t_stage
    table(
        f"agc::ttbar stage vs I/O floor, 1 core ({machine()})",
        ["what", "events", "wall time [s]", "events/s per core", "ratio to I/O floor"],
        [
            ["I/O floor (uproot, needed branches)", f"{n_io:,}", f"{t_io:.2f}",
             f"{rate_io:,.0f}", "1.00"],
            ["agc::ttbar stage (coffea Runner)", f"{n_stage:,}", f"{t_stage:.2f}",
             f"{rate_stage:,.0f}", f"{rate_stage / rate_io:.2f}"],
        ],
    )  # fmt: skip


if __name__ == "__main__":
    main()
