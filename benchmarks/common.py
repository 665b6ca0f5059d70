"""Shared pieces of the benchmarks: the generated data set and table printing."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "benchmarks" / "bench_config.yaml"
WORK = REPO / "benchmarks" / "work"
# The environment for the workflow runs, as it was before anything here started a Dask
# LocalCluster: starting one sets MALLOC_TRIM_THRESHOLD_, OMP_NUM_THREADS,
# PYTHONHASHSEED... in this process's environment (meant for its workers), and Snakemake
# and its jobs would inherit them (the trim threshold alone makes the workflow ~20% slower).
# The venv's bin folder comes first, so that jobs find `swift-rules` without activation.
# The jobs' environment, as a user's shell has it: Python writes and reuses bytecode.
# (PYTHONDONTWRITEBYTECODE, set in some containers and CI images, makes every job
# compile swift_rules' modules again: ~0.1 s of a cold job here.)
RUN_ENV = {
    **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
}


def snakemake(*args: str, config: Path = CONFIG, cores: int | None = None, quiet=True) -> float:
    """Run the reference workflow with the benchmark config; return its wall time."""
    exe = Path(sys.executable).with_name("snakemake")
    cmd = [str(exe), "--profile", "profiles/local", "--configfile", str(config)]
    cmd += ["--cores", str(cores or os.cpu_count()), *args]
    started = time.perf_counter()
    out = subprocess.run(cmd, cwd=REPO, env=RUN_ENV, capture_output=quiet, text=True)
    wall = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{(out.stderr or '')[-4000:]}")
    return wall


def benchmark_fileset() -> dict[str, list[str]]:
    """Generate (once; Snakemake skips existing files) and list the benchmark files."""
    snakemake("data/benchmark/fileset.json")
    layout = json.loads((REPO / "data/benchmark/fileset.json").read_text())
    if all(isinstance(entry.get("files"), dict) for entry in layout.values()):
        # coffea's fileset: {dataset: {"files": {path: {...}}, "metadata": {...}}}
        return {name: [str(REPO / p) for p in entry["files"]] for name, entry in layout.items()}
    return {  # the AGC's nanoaod_inputs.json: {process: {variation: {"files": [{"path"}]}}}
        f"{process}__{variation}": [str(REPO / f["path"]) for f in entry["files"]]
        for process, variations in layout.items()
        for variation, entry in variations.items()
    }


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def table(title: str, header: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |"
            for r in cells]  # fmt: skip
    text = "\n".join([f"### {title}", "", line, sep, *body, ""])
    print(text, flush=True)
    return text


def floor_branches(path: str) -> list[str]:
    """The branches the stage reads from ``path`` (what the workflow preloads): its
    required branches, each choice of alternatives resolved against the file, and the
    counters NanoEvents takes the offsets from."""
    import uproot

    from swift_rules.agc.ttbar import TtbarProcessor
    from swift_rules.inputs import branches_read

    with uproot.open(path) as f:
        keys = f["Events"].keys()
    return sorted(branches_read(TtbarProcessor().required_branches(), keys))
