"""Events/s per core of the agc::ttbar stage against the I/O floor, same files.

The I/O floor: uproot reading and decompressing only the branches the stage
needs (the same ones NanoEvents materialises), one core, in one ``iterate`` with the
reads the stage's Runner makes (in the calling thread). The stage: coffea's
Runner with the in-process executor on one core, numba kernels compiled
beforehand (their on-disk cache makes that a one-off per installation), the
branches read lazily, column by column, as in the workflow: swift-rules' Runner
(each file kept open across its chunks, swift_rules/kept_files.py) and coffea's own
(the file opened again for every chunk). Passes are interleaved; medians are shown,
with where the stage's time goes (timers around the processor's steps; coffea's part
is the rest of the wall time). Then the same reads through each of uproot's local
sources, and the set-up cost per chunk on a real NanoAOD file (~1,500 branches), where
../shared has one.

    python benchmarks/stage_throughput.py [--files-per-sample N] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import uproot
from coffea import processor
from common import REPO, benchmark_fileset, floor_branches, machine, table

from swift_rules.agc.ttbar import TtbarProcessor
from swift_rules.kept_files import LOCAL_READS, Runner, close_kept_files

REAL_NANOAOD = REPO.parent / "shared" / "data" / "nanoaod" / "nano_tt_v12.root"


def io_floor(fileset, branches, options=LOCAL_READS) -> tuple[int, float]:
    """(events, seconds) to read ``branches`` of every file in one ``iterate``."""
    events, started = 0, time.perf_counter()
    for files in fileset.values():
        for path in files:
            with uproot.open(path, **options) as f:
                tree = f["Events"]
                for arrays in tree.iterate(branches, step_size=100_000, library="ak"):
                    events += len(arrays)
    return events, time.perf_counter() - started


class TimedTtbar(TtbarProcessor):
    """The stage with a timer around each of its steps; a chunk's output carries the
    seconds spent, which coffea sums over the chunks with the histograms."""

    def _timed(self, what, fn, *args):
        started = time.perf_counter()
        out = fn(*args)
        self.spent[what] = self.spent.get(what, 0.0) + time.perf_counter() - started
        return out

    def columns(self, events):
        return self._timed("columns", super().columns, events)

    def select(self, *args):
        return self._timed("kernels", super().select, *args)

    def histograms(self, *args):
        return self._timed("histograms", super().histograms, *args)

    def process(self, events):
        self.spent = {}
        out = self._timed("process", super().process, events)
        return {**out, "seconds": self.spent}


def stage(fileset, chunksize=100_000, processor_class=TtbarProcessor, runner_class=Runner):
    """(output, wall time) of the stage over every event of ``fileset`` on one core, read
    as the workflow reads it (lazily, column by column)."""
    from coffea.nanoevents import NanoAODSchema

    NanoAODSchema.warn_missing_crossrefs = False
    runner = runner_class(
        processor.IterativeExecutor(status=False), chunksize=chunksize, schema=NanoAODSchema
    )
    started = time.perf_counter()
    try:
        out = runner(fileset, processor_class(), treename="Events")
    finally:
        close_kept_files()
    return out, time.perf_counter() - started


class JetPt(processor.ProcessorABC):
    """Reads one column: what is left of a chunk's time is its set-up."""

    def process(self, events):
        return {"jets": len(events.Jet.pt.layout.content)}

    def postprocess(self, accumulator):
        return accumulator


def per_chunk_setup(path, runner_class, chunks=20) -> float:
    """Seconds per chunk of ``path`` cut into ``chunks`` chunks, reading one column."""
    with uproot.open(path) as f:
        entries = f["Events"].num_entries
    fileset = {"real": [str(path)]}
    started = time.perf_counter()
    stage(fileset, -(-entries // chunks), JetPt, runner_class=runner_class)
    return (time.perf_counter() - started) / chunks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files-per-sample", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3, help="passes (medians are shown)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    fileset = benchmark_fileset()
    if args.files_per_sample:
        fileset = {s: f[: args.files_per_sample] for s, f in fileset.items()}
    branches = floor_branches(next(iter(fileset.values()))[0])

    # Warm-up: compile/load the numba kernels, fill the page cache for both readers.
    first = next(iter(fileset))
    stage({first: fileset[first][:1]})
    io_floor(fileset, branches)

    floor, ours, parts, reopened = [], [], [], []
    for _ in range(args.repeat):
        n_io, t_io = io_floor(fileset, branches)
        floor.append(t_io)
        out, wall = stage(fileset, processor_class=TimedTtbar)
        ours.append(wall)
        parts.append({**out["seconds"], "wall": wall})
        reopened.append(stage(fileset, runner_class=processor.Runner)[1])
    t_io, t_stage = statistics.median(floor), statistics.median(ours)
    # The breakdown of the median pass.
    spent = parts[ours.index(t_stage)]
    breakdown = {
        "coffea: file opening, NanoEvents, merging": spent["wall"] - spent["process"],
        "reading the columns (lazy arrays to numpy)": spent["columns"],
        "kernels (numba)": spent["kernels"],
        "histogram filling (hist)": spent["histograms"] - spent["kernels"],
    }
    rate_io, rate_stage = n_io / t_io, n_io / t_stage

    def row(what, wall):
        return [what, f"{n_io:,}", f"{wall:.2f}", f"{n_io / wall:,.0f}", f"{t_io / wall:.2f}"]

    t_reopened = statistics.median(reopened)
    rows = [row("I/O floor (uproot, needed branches)", t_io),
            row("agc::ttbar stage (swift-rules' Runner)", t_stage),
            row("the same, coffea's Runner (file reopened per chunk)", t_reopened)]  # fmt: skip
    table(
        f"agc::ttbar stage vs I/O floor, 1 core ({machine()}), median of {args.repeat}",
        ["what", "events", "wall time [s]", "events/s per core", "ratio to I/O floor"],
        rows,
    )
    other = t_stage - sum(breakdown.values())
    table(
        "where the stage's time goes (median pass)",
        ["part", "time [s]", "share of the stage", "of the I/O floor's time"],
        [[k, f"{v:.2f}", f"{v / t_stage:.0%}", f"{v / t_io:.2f}"]
         for k, v in {**breakdown, "rest of process()": other}.items()],
    )  # fmt: skip
    print(f"passes: floor {', '.join(f'{t:.2f}' for t in floor)} s; "
          f"stage {', '.join(f'{t:.2f}' for t in ours)} s; "
          f"coffea's Runner {', '.join(f'{t:.2f}' for t in reopened)} s; "
          f"{rate_stage / rate_io:.2f} of the floor")  # fmt: skip
    reads_by_source(fileset, branches, args.repeat)
    if REAL_NANOAOD.exists():
        real_nanoaod_setup(args.repeat)


SOURCES = {
    "uproot's default (fsspec: each read handed to its event-loop thread)": {},
    "memory map (MemmapSource)": {"handler": uproot.MemmapSource},
    "plain reads in the calling thread (what the Runner uses)": LOCAL_READS,
}
PLAIN = list(SOURCES)[-1]


def column_reads(fileset, branches, options) -> float:
    """Seconds to read ``branches`` of every file in chunks of 100k events, column by
    column as coffea does (one ``TBranch.array`` each)."""
    started = time.perf_counter()
    for files in fileset.values():
        for path in files:
            with uproot.open(path, **options) as f:
                tree = f["Events"]
                for start in range(0, tree.num_entries, 100_000):
                    stop = min(tree.num_entries, start + 100_000)
                    for name in branches:
                        tree[name].array(entry_start=start, entry_stop=stop)
    return time.perf_counter() - started


def reads_by_source(fileset, branches, repeat: int) -> None:
    """The same reads through each of uproot's local sources, interleaved."""
    columns = {name: [] for name in SOURCES}
    iterated = {name: [] for name in SOURCES}
    for _ in range(repeat):
        for name, options in SOURCES.items():
            columns[name].append(column_reads(fileset, branches, options))
            iterated[name].append(io_floor(fileset, branches, options)[1])
    by_column = {k: statistics.median(v) for k, v in columns.items()}
    by_iterate = {k: statistics.median(v) for k, v in iterated.items()}
    best = by_iterate[PLAIN]
    table(
        f"reading the stage's branches, by uproot source, median of {repeat}",
        ["source", "column by column [s]", "one iterate [s]", "column by column / best iterate"],
        [[name, f"{by_column[name]:.2f}", f"{by_iterate[name]:.2f}",
          f"{by_column[name] / best:.2f}"] for name in SOURCES],
    )  # fmt: skip


def real_nanoaod_setup(repeat: int) -> None:
    with uproot.open(REAL_NANOAOD) as f:
        branches = len(f["Events"].keys())
    per_chunk_setup(REAL_NANOAOD, Runner)  # warm-up
    kept, reopened = [], []
    for _ in range(repeat):
        kept.append(per_chunk_setup(REAL_NANOAOD, Runner))
        reopened.append(per_chunk_setup(REAL_NANOAOD, processor.Runner))
    k, r = statistics.median(kept), statistics.median(reopened)
    table(
        f"set-up per chunk, real NanoAOD ({REAL_NANOAOD.name}, {branches:,} branches), "
        f"one column read, median of {repeat}",
        ["Runner", "ms per chunk", "ratio"],
        [["coffea's (file reopened per chunk)", f"{1000 * r:.0f}", "1.00"],
         ["swift-rules' (file kept open)", f"{1000 * k:.0f}", f"{k / r:.2f}"]],
    )  # fmt: skip


if __name__ == "__main__":
    main()
