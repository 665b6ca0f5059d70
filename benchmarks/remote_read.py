"""Events/s of reading over root:// (and http://) on loopback against local files, and
through an XCache proxy cold (empty cache) and warm (second pass), same files, same run.

Two readers per source, one core each: uproot reading the branches the agc::ttbar stage
needs (the I/O floor), and the stage itself (coffea's Runner, in-process). Servers are
Debian's xrootd (a data server, and an XCache in forwarding mode in front of it) on
127.0.0.1, as in tests/test_remote.py. Each figure is the median of --repeat passes;
every cold pass starts from an empty cache. Local files sit in the page cache (so does
the server's copy): this measures the protocol and the proxy, not a disk or a network.

    python benchmarks/remote_read.py [--files 4] [--events 50000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import uproot
from common import floor_branches, machine, table

from swift_rules.agc.generate import generate_dataset
from swift_rules.agc.ttbar import TtbarProcessor
from swift_rules.remote import rewrite
from swift_rules.xrootd_server import XRootDServer

SAMPLE = "ttbar__nominal"


def read_branches(files, branches) -> float:
    started = time.perf_counter()
    for path in files:
        with uproot.open(path, timeout=60) as f:
            for _ in f["Events"].iterate(branches, step_size=100_000, library="ak"):
                pass
    return time.perf_counter() - started


def run_stage(files, branches=None) -> float:
    from coffea import processor
    from coffea.nanoevents import NanoAODSchema

    NanoAODSchema.warn_missing_crossrefs = False
    runner = processor.Runner(
        processor.IterativeExecutor(status=False), chunksize=100_000, schema=NanoAODSchema
    )
    started = time.perf_counter()
    runner({SAMPLE: files}, TtbarProcessor(), treename="Events")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--events", type=int, default=50_000, help="events per file")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    base = Path(tempfile.mkdtemp(prefix="swift-rules-remote-bench-"))
    base.chmod(0o755)  # the server runs unprivileged
    try:
        generate_dataset(
            base / "data", events_per_file=args.events, files_per_sample=args.files,
            samples=[tuple(SAMPLE.split("__"))], seed=1,
        )  # fmt: skip
        local = sorted(str(p) for p in (base / "data" / SAMPLE).glob("*.root"))
        branches = floor_branches(local[0])
        rows = measure(base, local, branches, args.repeat)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    n = args.files * args.events
    local_io, local_stage = rows["local files"]
    table(
        f"Reading {n:,} events ({args.files} files) over root:// on loopback, median of "
        f"{args.repeat} ({machine()}; load average {os.getloadavg()[1]:.1f})",
        ["source", "I/O floor events/s", "vs local", "agc::ttbar stage events/s", "vs local"],
        [
            [name, f"{n / io:,.0f}", f"{local_io / io:.2f}", f"{n / st:,.0f}",
             f"{local_stage / st:.2f}"]
            for name, (io, st) in rows.items()
        ],
    )  # fmt: skip


def measure(base: Path, local, branches, repeat) -> dict[str, tuple[float, float]]:
    """Median wall times (I/O floor, stage) per source."""
    times: dict[str, list[tuple[float, float]]] = {}

    def add(name, io, st):
        times.setdefault(name, []).append((io, st))

    run_stage(local[:1])  # warm-up: numba kernels compiled, files in the page cache
    with XRootDServer(base / "data", base / "origin", http=True) as origin:
        direct = [origin.url(p) for p in local]
        http = [origin.http_url(p) for p in local]
        for i in range(repeat):
            add("local files", read_branches(local, branches), run_stage(local))
            add("root:// (data server)", read_branches(direct, branches), run_stage(direct))
            add("http:// (same server)", read_branches(http, branches), run_stage(http))
            # Each reader starts on an empty cache of its own (cold), then reads again (warm).
            with cache_urls(base, f"io{i}", direct) as urls:
                cold_io, warm_io = read_branches(urls, branches), read_branches(urls, branches)
            with cache_urls(base, f"stage{i}", direct) as urls:
                cold_st, warm_st = run_stage(urls), run_stage(urls)
            add("root:// via XCache, cold", cold_io, cold_st)
            add("root:// via XCache, warm", warm_io, warm_st)
    return {
        name: (statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts))
        for name, ts in times.items()
    }


@contextlib.contextmanager
def cache_urls(base: Path, name: str, urls):
    """The URLs through a new, empty XCache (forwarding mode, config cache_prefix)."""
    with XRootDServer(base / f"cache-{name}", base / f"cache-server-{name}", origin="=") as cache:
        yield [rewrite(u, {"cache_prefix": f"root://{cache.address}"}) for u in urls]


if __name__ == "__main__":
    main()
