"""Run a registered stage over the files of one sample with coffea and Dask."""

from __future__ import annotations

import logging
import os
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path

from swift_rules import device, fingerprint
from swift_rules.clusters import dask_client
from swift_rules.errors import SwiftError
from swift_rules.registry import REGISTRY, StageRegistry
from swift_rules.results import save_result

log = logging.getLogger("swift_rules.runner")

TREE = "Events"
# Executor settings of workflow jobs (JSON), set by the rule files: see stages.smk.
EXECUTOR_ENV = "SWIFT_RULES_EXECUTOR"
VERSIONED = ("swift-rules", "coffea", "uproot", "awkward", "hist", "numpy", "numba", "dask")


class InputError(SwiftError):
    """An input file is unreadable, truncated or lacks a branch the stage needs."""


def software_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _check_complete(path: str, fh) -> None:
    """A truncated file can still open (its header and tree metadata come first):
    compare the size the header promises with the size on disk."""
    if "://" in path:
        return
    expected, actual = fh.file.fEND, os.path.getsize(path)
    if actual < expected:
        raise OSError(f"file is truncated: {actual} of {expected} bytes")


def check_inputs(
    files: Sequence[str], required: Sequence[str], skip_bad_files: bool
) -> tuple[dict[str, int], list[str]]:
    """Open every file up front: entries per readable file, and files skipped.

    Unreadable or truncated files are an error naming the file, or skipped when
    ``skip_bad_files``; a missing branch is always an error (it is a setting or
    a dataset problem, not a damaged file).
    """
    import uproot

    entries: dict[str, int] = {}
    skipped: list[str] = []
    for path in files:
        try:
            with uproot.open(path, timeout=60) as fh:
                if TREE not in fh:
                    raise InputError(f"{path}: has no TTree named {TREE!r}")
                tree = fh[TREE]
                n = tree.num_entries
                keys = set(tree.keys())
                _check_complete(path, fh)
        except InputError:
            raise
        except Exception as err:  # uproot raises many kinds for damaged files
            if skip_bad_files:
                log.warning("skipping unreadable file %s: %s", path, err)
                skipped.append(path)
                continue
            why = (
                "is the server up, does the file exist, is data.remote right?"
                if "://" in path
                else "it may be corrupt or truncated."
            )
            raise InputError(
                f"{path}: cannot be read ({type(err).__name__}: {err}); {why} "
                "Set skip_bad_files: true to leave it out"
            ) from err
        missing = [b for b in required if b not in keys]
        if missing:
            raise InputError(f"{path}: missing branch(es) {', '.join(missing)}")
        entries[path] = n
    return entries, skipped


def run_stage(
    stage_name: str,
    sample: str,
    files: Sequence[str],
    out: str | Path,
    *,
    stage_config: Mapping | None = None,
    executor: Mapping | None = None,
    workers: int = 1,
    sample_metadata: Mapping | None = None,
    registry: StageRegistry = REGISTRY,
    progress: bool | None = None,
    skip_bad_files: bool | None = None,
) -> tuple[object, dict]:
    """Process ``files`` of ``sample`` with the chosen variant of ``stage_name``.

    Writes ``out`` atomically with the output and its record, and returns both.
    """
    stage_config = dict(stage_config or {})
    executor = dict(executor or {})
    stage = registry.get(stage_name)
    choice = device.choose(stage, stage_config.get("device"))
    variant = stage.variants[choice.device]
    processor_instance = variant.load()(**stage_config.get("options", {}))
    required = getattr(processor_instance, "required_branches", lambda: [])()
    if skip_bad_files is None:
        skip_bad_files = bool(executor.get("skip_bad_files"))
    entries, skipped = check_inputs(files, required, skip_bad_files)

    started = time.perf_counter()
    try:
        output = _run_coffea(
            processor_instance, sample, entries, stage_config, executor, workers,
            sample_metadata or {}, sys.stderr.isatty() if progress is None else progress,
        )  # fmt: skip
    except Exception as err:
        _raise_read_error(err, entries)
        raise
    wall = time.perf_counter() - started
    n_events = sum(entries.values())
    meta = {
        "stage": stage_name,
        "variant": choice.device,
        "variant_target": variant.target,
        "device_reason": choice.reason,
        "code_fingerprint": fingerprint.code_fingerprint([variant.module]),
        "config": stage_config,
        "executor": executor,
        "workers": workers,
        "sample": sample,
        "files": sorted(entries),
        "entries": entries,
        "skipped_files": skipped,
        "events": {sample: n_events},
        "software": software_versions(),
        "host": platform.node(),
        "wall_time_s": round(wall, 3),
        "events_per_s": round(n_events / wall, 1) if wall > 0 else None,
    }
    save_result(out, output, meta)
    rate = f"{n_events / wall:,.0f} events/s" if wall > 0 else ""
    print(
        f"[swift-rules] {stage_name} ({choice.device}) on {sample}: {n_events:,} events from "
        f"{len(entries)} file(s) in {wall:.2f} s, {rate}"
        + (f"; skipped {len(skipped)} unreadable file(s): {', '.join(skipped)}" if skipped else ""),
        file=sys.stderr,
    )
    return output, meta


def _raise_read_error(err: BaseException, files) -> None:
    """A remote read that fails mid-run (server gone, file removed) reaches us wrapped
    by coffea; name the file and the I/O error instead of a traceback."""
    cause: BaseException | None = err
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__ or cause.__context__
    remote = [f for f in files if "://" in f]
    if cause is None or not remote:
        return
    named = [f for f in remote if f in str(err)] or remote
    _drop_xrootd_handles()
    raise InputError(
        f"{', '.join(named)}: reading failed during the run ({type(cause).__name__}: {cause}); "
        "outputs already written are kept: rerun when the file or server is back"
    ) from err


def _drop_xrootd_handles() -> None:
    """fsspec-xrootd (0.5.5) closes its cached file handles at exit and prints a traceback
    when a close fails (the server is gone). The job fails anyway: forget the handles."""
    try:
        from fsspec_xrootd import XRootDFileSystem

        for fs in list(XRootDFileSystem._cache.values()):
            fs._readonly_filehandle_cache._cache.clear()
    except (ImportError, AttributeError):
        pass


class ProgressLog:
    """Wraps a processor for in-process runs: a line on stderr every ``interval`` s.

    Stage jobs write to a log file, where a progress bar cannot draw; these lines
    let a user ``tail -f`` a long job. (Dask runs: see the scheduler's dashboard.)
    """

    def __init__(self, proc, total: int, label: str, interval: float = 10.0):
        self.proc, self.total, self.label, self.interval = proc, total, label, interval
        self.done = 0
        self.started = self.last = time.perf_counter()

    def __call__(self, events):
        out = self.proc.process(events)
        self.done += len(events)
        now = time.perf_counter()
        if now - self.last >= self.interval:
            self.last = now
            rate = self.done / (now - self.started)
            eta = (self.total - self.done) / rate if rate else float("nan")
            print(
                f"[swift-rules] {self.label}: {self.done:,}/{self.total:,} events "
                f"({100 * self.done / max(self.total, 1):.0f}%), {rate:,.0f} events/s, "
                f"about {eta:.0f} s left",
                file=sys.stderr,
                flush=True,
            )
        return out

    def postprocess(self, accumulator):
        return self.proc.postprocess(accumulator)


def _run_coffea(proc, sample, files: dict[str, int], stage_config, executor, workers,
                sample_meta, progress):  # fmt: skip
    from coffea import processor
    from coffea.nanoevents import NanoAODSchema

    if not files:
        return {}
    chunksize = int(stage_config.get("chunksize", 100_000))
    fileset = {sample: {"files": {f: TREE for f in files}, "metadata": dict(sample_meta)}}
    # Skimmed NanoAOD files often lack cross-reference branches; that is normal.
    NanoAODSchema.warn_missing_crossrefs = False
    with dask_client(executor, workers) as client:
        if client is None:
            # No retries (as with Dask): a retry after a failed remote read meets a
            # closed file handle and hides the I/O error that _raise_read_error names.
            ex = processor.IterativeExecutor(status=progress, retries=0)
            if not progress:
                proc = ProgressLog(proc, sum(files.values()), sample)
        else:
            ex = processor.DaskExecutor(client=client, status=progress, retries=0)
            print(f"[swift-rules] Dask scheduler: {client.scheduler.address}", file=sys.stderr)
        runner = processor.Runner(ex, chunksize=chunksize, schema=NanoAODSchema)
        return runner(fileset, proc, treename=TREE)


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
