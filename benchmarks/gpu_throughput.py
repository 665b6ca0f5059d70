"""Events/s of the agc::ttbar GPU variant against the CPU variant, same files, same run.

Rows: the CPU variant on one core and on every core (coffea, files read), the GPU
variant (coffea, files read on one core), and the compute alone with the columns
already in memory: the CPU variant on one core, the GPU variant with the columns in
host memory (copy to the device included) and already on the device. Warm-up (numba
and CUDA compilation, first reads) is run before and reported apart. The GPU and CPU
histograms of the full run are compared (counts exactly, weighted sums to 1e-6).

    python benchmarks/gpu_throughput.py [--files-per-sample N] [--cpu-only] [--data DIR]

Needs a usable CUDA device and CuPy; ``--cpu-only`` measures the CPU rows alone. The
files: the benchmark preset (~5.75M events), made by Snakemake as for the other
benchmarks, or with ``--data DIR`` generated straight into DIR (no Snakemake needed;
``--preset small`` for a quick run).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from common import benchmark_fileset, machine, table

from swift_rules.agc.samples import split_sample_name
from swift_rules.agc.ttbar import TtbarProcessor
from swift_rules.device import gpu_status

CHUNKSIZE = 100_000
WEIGHTED = ("btag_var_", "scale_var_")


class ColumnReader(TtbarProcessor):
    """Reads and unpacks the columns of every chunk (host memory), for compute-only rows."""

    def process(self, events):
        process_name, variation = split_sample_name(events.metadata["dataset"])
        return {"chunks": [(events.metadata["dataset"], process_name, variation,
                            len(events), self.columns(events))]}  # fmt: skip


def generated_fileset(data: Path, preset: str) -> dict[str, list[str]]:
    """The files of ``preset`` generated under ``data`` (kept when already there)."""
    from swift_rules.agc.generate import generate_dataset
    from swift_rules.agc.presets import DEFAULT_SIZES

    events, files = DEFAULT_SIZES[preset]
    generate_dataset(data, events_per_file=events, files_per_sample=files, seed=42)
    return {s: sorted(str(p) for p in (data / s).glob("*.root")) for s in events}


def run_coffea(fileset, proc, workers=1, pool=None, chunksize=CHUNKSIZE):
    """(output, wall time) of coffea's Runner over ``fileset``."""
    from coffea import processor
    from coffea.nanoevents import NanoAODSchema

    NanoAODSchema.warn_missing_crossrefs = False
    if workers == 1:
        executor = processor.IterativeExecutor(status=False)
    else:
        executor = processor.FuturesExecutor(status=False, workers=workers, pool=pool)
    runner = processor.Runner(executor, chunksize=chunksize, schema=NanoAODSchema)
    started = time.perf_counter()
    out = runner(fileset, proc, treename="Events")
    return out, time.perf_counter() - started


def compute_only(chunks, histograms) -> float:
    """Wall time of ``histograms`` over every chunk's columns (already read)."""
    started = time.perf_counter()
    for _, process_name, variation, _, columns in chunks:
        histograms(columns, process_name, variation)
    return time.perf_counter() - started


def parity(cpu_out, gpu_out) -> str:
    """Whether the GPU histograms equal the CPU ones: counts exactly, weights to 1e-6."""
    worst = 0.0
    for sample, hc in cpu_out["hists"].items():
        hg = gpu_out["hists"][sample]
        vc, vg = hc.view(flow=True), hg.view(flow=True)
        for i, name in enumerate(hc.axes["variation"]):
            a, b = vc[..., i], vg[..., i]
            if not name.startswith(WEIGHTED):
                if not (
                    np.array_equal(a.value, b.value) and np.array_equal(a.variance, b.variance)
                ):
                    return f"NO: counts differ in {sample} {name}"
                continue
            for x, y in ((a.value, b.value), (a.variance, b.variance)):
                rel = np.abs(x - y) / np.where(x != 0, np.abs(x), 1.0)
                worst = max(worst, float(rel.max()))
    verdict = "yes" if worst <= 1e-6 else "NO"
    return f"{verdict} (counts identical; weighted sums, largest relative difference {worst:.1e})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files-per-sample", type=int, default=None)
    parser.add_argument("--cpu-only", action="store_true", help="measure the CPU rows only")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--data", type=Path, help="generate the files here, without Snakemake")
    parser.add_argument("--preset", default="benchmark", help="generated preset, with --data")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    usable, why = gpu_status()
    if not usable and not args.cpu_only:
        sys.exit(
            f"gpu_throughput: no usable CUDA device here ({why}). Run it on a GPU machine "
            "(docs/gpu.md), or with --cpu-only to measure the CPU variant alone."
        )
    with_gpu = not args.cpu_only
    fileset = generated_fileset(args.data, args.preset) if args.data else benchmark_fileset()
    if args.files_per_sample:
        fileset = {s: f[: args.files_per_sample] for s, f in fileset.items()}
    first = next(iter(fileset))
    warm_set = {first: fileset[first][:1]}
    cpu = TtbarProcessor()
    if with_gpu:
        from swift_rules.agc.ttbar_gpu import TtbarProcessorGPU

        gpu = TtbarProcessorGPU()

    # Warm-up, timed apart: numba kernels (load or compile), CUDA kernels (compile), reads.
    warm = [["CPU variant, 1 core", f"{run_coffea(warm_set, cpu)[1]:.2f}"]]
    from loky import get_reusable_executor

    os.environ["PYTHONWARNINGS"] = "ignore"  # NanoAODSchema's, in the worker processes
    pool = get_reusable_executor(max_workers=args.workers)  # workers stay warm between runs
    warm_time = run_coffea(warm_set, cpu, args.workers, pool, chunksize=CHUNKSIZE // 10)[1]
    warm.append([f"CPU variant, {args.workers} processes", f"{warm_time:.2f}"])
    if with_gpu:
        warm.append(["GPU variant", f"{run_coffea(warm_set, gpu)[1]:.2f}"])

    cpu_out, t_cpu1 = run_coffea(fileset, cpu)
    n_events = sum(cpu_out["nevts"].values())
    _, t_cpun = run_coffea(fileset, cpu, args.workers, pool)
    rows = [("CPU variant, 1 core, files read", t_cpu1),
            (f"CPU variant, {args.workers} processes, files read", t_cpun)]  # fmt: skip
    if with_gpu:
        gpu_out, t_gpu = run_coffea(fileset, gpu)
        rows.append(("GPU variant, files read on 1 core", t_gpu))

    chunks = run_coffea(fileset, ColumnReader())[0]["chunks"]
    compute_cpu = compute_only(chunks, cpu.histograms)
    rows.append(("compute only, CPU variant, 1 core", compute_cpu))
    if with_gpu:
        rows.append(("compute only, GPU, columns in host memory (copy included)",
                     compute_only(chunks, gpu.histograms)))  # fmt: skip
        on_device = [(*c[:4], gpu.to_device(c[4])) for c in chunks]
        rows.append(("compute only, GPU, columns on the device",
                     compute_only(on_device, gpu.device_histograms)))  # fmt: skip

    card = why if with_gpu else "no GPU measured (--cpu-only)"
    table(
        f"agc::ttbar GPU vs CPU variant, {n_events:,} events, chunks of {CHUNKSIZE:,} "
        f"({datetime.date.today()}; {machine()}; {card})",
        ["what", "wall time [s]", "events/s", "vs CPU 1 core, files read", "vs CPU compute 1 core"],
        [[what, f"{t:.2f}", f"{n_events / t:,.0f}", f"{t_cpu1 / t:.1f}x",
          f"{compute_cpu / t:.1f}x" if what.startswith("compute") else ""]
         for what, t in rows],
    )  # fmt: skip
    table("Warm-up, excluded above (first file, first use)", ["what", "wall time [s]"], warm)
    if with_gpu:
        print(f"GPU histograms equal the CPU ones: {parity(cpu_out, gpu_out)}")


if __name__ == "__main__":
    main()
