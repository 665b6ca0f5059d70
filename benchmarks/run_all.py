"""Run every benchmark and print its table (the figures in docs/benchmarks.md)."""

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

for name in (
    "stage_throughput",
    "workflow_overhead",
    "noop_rerun",
    "remote_read",
    "broker",
    "dirac_transport",
):
    sys.argv = [name]
    runpy.run_path(str(HERE / f"{name}.py"), run_name="__main__")
