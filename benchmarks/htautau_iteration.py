"""Iteration speed on the H->tautau workflow: cached skims against rerunning everything,
and the original analysis on RDataFrame on the same files and cores.

    python benchmarks/htautau_iteration.py [--preset benchmark] [--cores N] [--repeat 3]

1. The generated inputs (preset `benchmark`: about 5.5 million events) are made once,
   outside the timings.
2. **Full run**: from no results to every output (skims, histograms, export, figures, the
   QCD estimate, plot.py's plots).
3. **Histogram edit**: a cut of the histogram stage changes (`mt_1_max`); the rerun reads
   only the skims. Goal: at least 10 times faster than the full run.
4. **No-op rerun**: nothing changed.
5. **RDataFrame**: the original's skim.cxx and histograms.py (tests/reference/htautau, in
   .venv-root, ROOT from PyPI) on the same files, with ImplicitMT on the same cores.

Medians of --repeat runs. The table goes to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml
from common import REPO, RUN_ENV, WORK, machine, table

SNAKEFILE = REPO / "workflow" / "htautau" / "Snakefile"
HERE = WORK / "htautau"


def snakemake(workdir: Path, cores: int, *args: str) -> float:
    exe = Path(sys.executable).with_name("snakemake")
    cmd = [str(exe), "--snakefile", str(SNAKEFILE), "--profile", str(REPO / "profiles/local"),
           "--directory", str(workdir), "--cores", str(cores), *args]  # fmt: skip
    started = time.perf_counter()
    out = subprocess.run(cmd, env=RUN_ENV, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-4000:]}")
    return wall


def write_config(workdir: Path, preset: str, mt_1_max: float | None = None) -> None:
    config = yaml.safe_load((REPO / "config" / "htautau.yaml").read_text())
    config["data"]["generated"]["preset"] = preset
    if mt_1_max is not None:
        config["stages"]["htautau::histograms"]["options"] = {"mt_1_max": mt_1_max}
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    (workdir / "config" / "htautau.yaml").write_text(yaml.safe_dump(config))


def input_events(workdir: Path) -> tuple[int, dict]:
    fileset = json.loads((workdir / "data/generated-htautau/fileset.json").read_text())
    total = sum(f["num_entries"] for ds in fileset.values() for f in ds["files"].values())
    return total, fileset


def rdataframe(workdir: Path, fileset: dict, cores: int) -> tuple[float, float]:
    """(whole process, event loops) seconds of the original analysis on RDataFrame."""
    sys.path.insert(0, str(REPO / "environment"))
    import envs

    from swift_rules.htautau.samples import SAMPLES

    python = envs.ensure("root") / "bin" / "python"
    work = workdir / "rdataframe"
    shutil.rmtree(work, ignore_errors=True)
    job = {
        "workdir": str(work),
        "samples": [
            {"name": name, "files": [str(workdir / f) for f in spec["files"]],
             "xsec": spec["metadata"].get("xsec", 0.0),
             "nevents": sum(f["num_entries"] for f in spec["files"].values())}
            for name, spec in fileset.items()
        ],
        "labels": [[name, label] for name, s in SAMPLES.items() for label in s["labels"]],
        "implicit_mt": cores > 1,
    }  # fmt: skip
    work.mkdir(parents=True)
    (work / "job.json").write_text(json.dumps(job))
    env = {**RUN_ENV, "ROOT_MAX_THREADS": str(cores)}
    started = time.perf_counter()
    run = [str(python), str(REPO / "tests/reference/htautau/run.py"), str(work / "job.json")]
    out = subprocess.run(run, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"RDataFrame reference failed:\n{out.stderr[-4000:]}")
    report = json.loads((work / "report.json").read_text())
    loops = sum(s["seconds"] for s in report["skims"].values()) + report["histograms_s"]
    return wall, loops


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="benchmark")
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-rdataframe", action="store_true")
    args = parser.parse_args(argv)

    HERE.mkdir(parents=True, exist_ok=True)
    write_config(HERE, args.preset)
    snakemake(HERE, args.cores, "data/generated-htautau/fileset.json")  # once, not timed
    events, fileset = input_events(HERE)

    full, edit, noop = [], [], []
    for i in range(args.repeat):
        shutil.rmtree(HERE / "results-htautau", ignore_errors=True)
        write_config(HERE, args.preset)
        full.append(snakemake(HERE, args.cores))
        write_config(HERE, args.preset, mt_1_max=30.0 + 0.5 * (i + 1))  # a new cut each time
        edit.append(snakemake(HERE, args.cores))
        noop.append(snakemake(HERE, args.cores))
    rows = []
    f, e, n = (statistics.median(x) for x in (full, edit, noop))
    rows.append(["full run (skim, histograms, export, figures, QCD, plots)", f"{f:.1f}",
                 f"{events / f:,.0f}", "1.00"])  # fmt: skip
    rows.append(["rerun after a cut of the histogram stage (reads the skims)", f"{e:.1f}", "",
                 f"{f / e:.1f}x faster"])  # fmt: skip
    rows.append(["no-op rerun", f"{n:.1f}", "", f"{f / n:.1f}x faster"])
    if not args.no_rdataframe:
        wall, loops = rdataframe(HERE, fileset, args.cores)
        rows.append(["RDataFrame original (skim.cxx + histograms.py), whole process",
                     f"{wall:.1f}", f"{events / wall:,.0f}",
                     f"ours {wall / f:.2f}x its speed"])  # fmt: skip
        rows.append(["RDataFrame original, event loops only", f"{loops:.1f}",
                     f"{events / loops:,.0f}", f"ours {loops / f:.2f}x its speed"])  # fmt: skip
    table(
        f"H->tautau iteration: {events:,} input events, {args.cores} cores, medians of "
        f"{args.repeat} ({machine()})",
        ["what", "wall s", "input events/s", "ratio"],
        rows,
    )
    print("per repeat: full", [round(x, 1) for x in full], "edit", [round(x, 1) for x in edit],
          "no-op", [round(x, 1) for x in noop])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
