"""Run every benchmark and print its table (the figures in docs/benchmarks.md)."""

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

failed = []
for name in (
    "stage_throughput",
    "job_overhead",
    "dask_scaling",
    "agc_rdataframe",
    "workflow_overhead",
    "noop_rerun",
    "remote_read",
    "broker",
    "dirac_transport",
):
    sys.argv = [name]
    try:
        runpy.run_path(str(HERE / f"{name}.py"), run_name="__main__")
    except SystemExit as end:  # a script that ends with sys.exit(main())
        if end.code not in (None, 0):
            failed.append(name)
if failed:
    sys.exit(f"failed: {', '.join(failed)}")
