"""DIRAC transport costs against a DiracX 0.7.0 test server on loopback.

What profiles/dirac pays per job and per status check, through DiracXTransport:
a submission (input sandbox of one small file: upload to the S3 stand-in, then the
JDL), and the state of N active jobs in one search request, against N single-job
requests (what a plugin without batching would send each status check). The server
is the tests' (tests/dirac_server.py: sqlite databases, moto for S3), so the figures
are the client's and the server's software costs, without network latency.

    python benchmarks/dirac_transport.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, machine, table

sys.path.insert(0, str(REPO / "tests"))

SIZES = (10, 100, 400)
REPEATS = 5


def main() -> None:
    import dirac_server

    from swift_rules.dirac.jdl import job_fields
    from swift_rules.dirac.transport import DiracXTransport

    with tempfile.TemporaryDirectory() as tmp:
        server = dirac_server.start(Path(tmp) / "server")
        try:
            dirac = DiracXTransport(server.url, server.credentials("bench"))
            script = Path(tmp) / "job.sh"
            script.write_text("#!/bin/sh\necho hello\n")
            rows, ids = [], []
            for n in SIZES:
                new, started = n - len(ids), time.perf_counter()
                while len(ids) < n:
                    fields = job_fields(name=f"bench-{len(ids)}", executable="job.sh")
                    ids.append(dirac.submit(fields, {"job.sh": script}))
                per_submit = (time.perf_counter() - started) / new
                active = list(ids)
                batch = _median(lambda: dirac.status(active))  # noqa: B023 (called at once)
                single = _median(lambda: [dirac.status([i]) for i in active], repeats=1)  # noqa: B023
                rows.append([n, f"{1000 * per_submit:.0f}", f"{1000 * batch:.0f}",
                             f"{1000 * single:.0f}", f"{single / batch:.0f}x"])  # fmt: skip
        finally:
            server.stop()
    print(f"Machine: {machine()}")
    table(
        "DiracX transport: submission and status checks (ms)",
        ["active jobs", "submit, per job", "1 search for all", "1 request per job", "ratio"],
        rows,
    )


def _median(fn, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


if __name__ == "__main__":
    main()
