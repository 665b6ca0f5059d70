"""What one stage job costs beyond its processing: cold, and warm-started.

Every HTCondor, Slurm or DIRAC job is a cold ``swift-rules run``: a fresh Python that
imports coffea & co., sets up numba, loads the compiled kernels, checks its inputs,
processes, and writes its result and record. Jobs that Snakemake runs on this machine
are forked from the warm-start server instead (swift_rules/warmstart). Both are timed
here as whole processes, start to result written, on one file of the benchmark set
(500,000 events, one core, ``--workers 1``), against the I/O floor of that file and the
stage's steady state in a long-running process. The cold job's fixed cost is then split
into the parts measured apart in fresh processes. Last, batch jobs as a batch system runs
them (``snakemake --mode remote``, one core): one stage job each, against one batch job
that runs a group of them (``--groups``/``--group-components``), which forks them from a
warm-start server of its own.

    python benchmarks/job_overhead.py [--repeat 5] [--group 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import yaml
from common import CONFIG, REPO, RUN_ENV, benchmark_fileset, floor_branches, machine, table
from stage_throughput import io_floor, stage

SAMPLE = "ttbar__nominal"
SWIFT = str(Path(sys.executable).with_name("swift-rules"))

# In a fresh process, the job's steps in its order and its way: the imports (with the
# collector off, then frozen, as swift_rules.cli does), numba's set-up (its extensions'
# entry points and its target's registries: what loading the first kernel from numba's
# on-disk cache sets up), NanoEvents' first set-up on the file (its first 100 events),
# then the first call of the stage's kernels on them (loaded from the cache).
PARTS = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
t0 = time.perf_counter()
from swift_rules.gcfreeze import frozen_imports
with frozen_imports():
    import coffea.nanoevents, coffea.processor
    import swift_rules.cli, swift_rules.runner
    from swift_rules.agc import ttbar
t1 = time.perf_counter()
import numba.core.entrypoints
from numba.core.registry import cpu_target
numba.core.entrypoints.init_all()
cpu_target.typing_context.refresh()
cpu_target.target_context.refresh()
t2 = time.perf_counter()
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory
NanoAODSchema.warn_missing_crossrefs = False
events = NanoEventsFactory.from_root({sys.argv[1]: "Events"}, schemaclass=NanoAODSchema,
                                     entry_stop=100).events()
proc = ttbar.TtbarProcessor()
columns = proc.columns(events)
t3 = time.perf_counter()
proc.select(columns, ttbar.pt_variations("nominal"))
t4 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "numba": t2 - t1, "nanoevents": t3 - t2,
                  "kernels": t4 - t3}))
"""


def job(path: str, out: Path, env: dict) -> tuple[float, float]:
    """(whole-process wall time, the job's own processing time) of one ``swift-rules run``."""
    record = out.with_suffix(".json")
    cmd = [SWIFT, "run", "agc::ttbar", "--sample", SAMPLE, "--workers", "1", "--no-progress",
           "--out", str(out), "--run-record", str(record), "--", path]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - started
    return wall, json.loads(record.read_text())["wall_time_s"]


def batch_job(config: Path, groups: list[int], env: dict) -> float:
    """Wall time of one batch job's Snakemake that runs the stage jobs of ``groups`` of
    SAMPLE (one file each), as an HTCondor or Slurm job runs it: ``--mode remote``, one
    core, the jobs forced to run."""
    targets = [f"swift_process:namespace=agc,stagename=ttbar,dataset={SAMPLE},group={g:04d}"
               for g in groups]  # fmt: skip
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
           "--configfile", str(config), "--target-jobs", *targets, "--allowed-rules",
           "swift_process", "--cores", "1", "--force", "--mode", "remote", "--nolock",
           "--quiet", "all"]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def batch_config(work: Path) -> Path:
    """The benchmark workflow's config with one file per stage job, results in ``work``."""
    config = yaml.safe_load(CONFIG.read_text())
    config["results"] = str(work / "results")
    config["data"]["files_per_group"] = 1
    path = work / "batch-config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def fresh(code: str, *args: str) -> tuple[float, str]:
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, *args], env=RUN_ENV, check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    return time.perf_counter() - started, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="jobs of each kind (medians)")
    parser.add_argument("--group", type=int, default=4, help="stage jobs in the batch job")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from swift_rules import warmstart

    sample_files = benchmark_fileset()[SAMPLE]
    path = sample_files[0]
    branches = floor_branches(path)
    work = Path(tempfile.mkdtemp(prefix="job-overhead-"))
    cold_env = {k: v for k, v in RUN_ENV.items() if k != warmstart.ENV}
    warm_env = {**cold_env, warmstart.ENV: warmstart.address(os.getpid())}

    stage({SAMPLE: [path]})  # kernels compiled, file in the page cache
    job(path, work / "warm-up.pkl", warm_env)  # starts the warm server, which preloads
    floor, steady, cold, warm, parts, start = [], [], [], [], [], []
    for i in range(args.repeat):  # interleaved, so that drifts of the machine hit all alike
        n, t = io_floor({SAMPLE: [path]}, branches)
        floor.append(t)
        steady.append(stage({SAMPLE: [path]})[1])
        cold.append(job(path, work / f"cold-{i}.pkl", cold_env))
        warm.append(job(path, work / f"warm-{i}.pkl", warm_env))
        start.append(fresh("pass")[0])
        parts.append(json.loads(fresh(PARTS, path)[1]))

    med = statistics.median
    t_floor, t_steady = med(floor), med(steady)
    cold_wall, cold_proc = med(w for w, _ in cold), med(p for _, p in cold)
    warm_wall, warm_proc = med(w for w, _ in warm), med(p for _, p in warm)

    def row(what, wall, processing):
        return [what, f"{wall:.2f}", f"{processing:.2f}", f"{wall - t_steady:.2f}",
                f"{n / wall:,.0f}", f"{t_floor / wall:.2f}"]  # fmt: skip

    table(
        f"one stage job of {n:,} events, 1 core ({machine()}), median of {args.repeat}",
        ["what", "wall time [s]", "job's own processing timer [s]",
         "fixed cost beyond steady-state processing [s]", "events/s", "ratio to I/O floor"],
        [row("I/O floor (uproot, needed branches, in-process)", t_floor, t_floor),
         row("stage, steady state (in-process, kernels loaded)", t_steady, t_steady),
         row("cold `swift-rules run` (a batch job), whole process", cold_wall, cold_proc),
         row("warm-started job (in the workflow), whole process", warm_wall, warm_proc)],
    )  # fmt: skip
    fixed = cold_wall - t_steady
    shares = {
        "Python start (interpreter, site)": med(start),
        "imports (coffea, awkward, uproot, hist, numba, swift_rules)": med(
            p["imports"] for p in parts
        ),
        "numba set-up (extensions' entry points, target registries)": med(
            p["numba"] for p in parts
        ),
        "NanoEvents' first set-up on the file (100 events read)": med(
            p["nanoevents"] for p in parts
        ),
        "stage kernels loaded from numba's cache (first call)": med(p["kernels"] for p in parts),
    }
    rest = "the rest: inputs check, coffea's file preprocessing, result and record written"
    shares[rest] = fixed - sum(shares.values())
    table(
        "where the cold job's fixed cost goes (parts timed apart in fresh processes)",
        ["part", "time [s]", "share of the fixed cost"],
        [[k, f"{v:.2f}", f"{v / fixed:.0%}"] for k, v in shares.items()],
    )

    # Batch jobs: K stage jobs as K batch jobs, or as one batch job that runs the group.
    groups = list(range(min(args.group, len(sample_files))))
    config = batch_config(work)
    batch_job(config, groups, cold_env)  # warm-up: the jobs' Snakemake caches, page cache
    single, grouped = [], []
    for _ in range(args.repeat):
        single.append(sum(batch_job(config, [g], cold_env) for g in groups))
        grouped.append(batch_job(config, groups, cold_env))
    k = len(groups)

    def per_job(what, wall):
        return [what, f"{wall:.2f}", f"{wall / k:.2f}", f"{wall / k - t_steady:.2f}",
                f"{t_floor / (wall / k):.2f}"]  # fmt: skip

    table(
        f"{k} stage jobs of {n:,} events as batch jobs (snakemake --mode remote, 1 core), "
        f"median of {args.repeat}",
        ["what", "wall time [s]", "per stage job [s]",
         "fixed cost per stage job beyond steady-state processing [s]", "ratio to I/O floor"],
        [per_job(f"{k} batch jobs, one stage job each (cold)", med(single)),
         per_job(f"1 batch job running the {k} as a group (warm-started)", med(grouped))],
    )  # fmt: skip


if __name__ == "__main__":
    main()
