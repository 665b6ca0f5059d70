"""Time of a second, no-change run of a workflow over 1000 input files.

The 1000 inputs are small NanoAOD-format files (hard links of one generated file
per sample, so the set is quick to make); the workflow runs once to make every
output, then ``snakemake`` is timed when there is nothing to do (real run, not a
dry run), as a user would meet it.

    python benchmarks/noop_rerun.py [--files 1000] [--files-per-group 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import yaml
from common import WORK, machine, snakemake, table

from swift_rules.agc.generate import generate_file
from swift_rules.agc.samples import CROSS_SECTIONS_PB, SAMPLE_SETS, sample_name


def make_inputs(directory, n_files: int) -> dict:
    layout: dict = {}
    per_sample = [n_files // len(SAMPLE_SETS)] * len(SAMPLE_SETS)
    per_sample[0] += n_files - sum(per_sample)
    for (process, variation), count in zip(SAMPLE_SETS, per_sample, strict=True):
        name = sample_name(process, variation)
        first = directory / name / f"{name}_0000.root"
        generate_file(first, process, variation, 200)
        files = {}
        for i in range(count):
            path = directory / name / f"{name}_{i:04d}.root"
            if not path.exists():
                os.link(first, path)
            files[str(path)] = "Events"
        metadata = {"is_data": False, "process": process, "variation": variation,
                    "xsec": CROSS_SECTIONS_PB[process]}  # fmt: skip
        layout[name] = {"files": files, "metadata": metadata}  # (coffea's fileset)
    return layout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--files-per-group", type=int, default=10)
    args = parser.parse_args()
    directory = WORK / "noop"
    layout = make_inputs(directory / "data", args.files)
    (directory / "fileset.json").write_text(json.dumps(layout))
    config = {
        "results": str(directory / "results"),
        "data": {"source": "fileset", "fileset": str(directory / "fileset.json"),
                 "files_per_group": args.files_per_group},
        "analysis": {"fit": False, "hepdata": False},
    }  # fmt: skip
    config_path = directory / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))

    t_first = snakemake(config=config_path)
    times = []
    for _ in range(3):
        times.append(snakemake(config=config_path))
    started = time.perf_counter()
    snakemake("--dry-run", config=config_path)
    t_dry = time.perf_counter() - started
    jobs = args.files // args.files_per_group
    table(
        f"No-op rerun, {args.files} input files in groups of {args.files_per_group} "
        f"({jobs} stage jobs) ({machine()})",
        ["what", "wall time [s]"],
        [
            ["first run (makes every output)", f"{t_first:.1f}"],
            ["no-op rerun, median of 3", f"{statistics.median(times):.2f}"],
            ["no-op rerun, best of 3", f"{min(times):.2f}"],
            ["dry run", f"{t_dry:.2f}"],
        ],
    )


if __name__ == "__main__":
    main()
