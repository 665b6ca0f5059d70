"""Run a registered stage over the files of one dataset with coffea and Dask.

Inputs are ROOT files (NanoAOD or any flat tree) or the Parquet skims of another
stage. A skim stage's selected events (its output's ``skim``) are written as one
Parquet file per job, with their record in the file's metadata, so that a chained
stage reads them exactly as it reads NanoAOD, and knows how many source events
stand behind them without unpickling anything.
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path

from swift_rules import device, fingerprint
from swift_rules.atomic import write_text
from swift_rules.backends import dask_client
from swift_rules.errors import SwiftError
from swift_rules.inputs import (
    BAD_KEY,
    DONE_KEY,
    NOTES_KEY,
    TREE,
    ChunkGuard,
    InputError,
    Inputs,
    check_inputs,
)  # fmt: skip
from swift_rules.ordering import InOrder
from swift_rules.redact import redact
from swift_rules.registry import REGISTRY, StageRegistry
from swift_rules.remote import is_remote
from swift_rules.results import save_result
from swift_rules.skims import SKIM_KEY, SkimCollector, write_skim

__all__ = ["InputError", "run_stage"]

log = logging.getLogger(__name__)

# How this process started, for the run record: the warm-start server sets it in the
# child that it forks for a job (swift_rules/warmstart/server.py).
warm_started = False
VERSIONED = ("swift-rules", "coffea", "uproot", "awkward", "hist", "numpy", "numba", "dask")


def software_versions() -> dict[str, str]:
    return dict(_versions())


@functools.cache  # of what this process imports: a warm-start server looks them up once
def _versions() -> tuple[tuple[str, str], ...]:
    versions = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return tuple(versions.items())


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
    tree: str = TREE,
    sum_weights: bool = False,
    skim_out: str | Path | None = None,
    run_record: str | Path | None = None,
) -> tuple[object, dict]:
    """Process ``files`` of dataset ``sample`` with the chosen variant of ``stage_name``.

    Writes ``out`` atomically with the output and its record (and, for a skim stage,
    the skim to ``skim_out``, by default ``out`` with the suffix ``.parquet``), and
    returns both. The record holds what decides the output, so that the same job run
    anywhere writes the same bytes; how and where it ran (executor, host, times) goes to
    ``run_record`` (JSON) when given.
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
    inputs = check_inputs(files, required, skip_bad_files, tree=tree, sum_weights=sum_weights)
    skim = bool(stage_config.get("skim"))

    began = _now()
    started = time.perf_counter()
    try:
        output = _run_coffea(
            processor_instance, sample, inputs, stage_config, executor, workers,
            dict(sample_metadata or {}), sys.stderr.isatty() if progress is None else progress,
            tree, skim,
        )  # fmt: skip
    except Exception as err:
        _raise_read_error(err, inputs.entries)
        _raise_user_error(err)
        raise
    wall = time.perf_counter() - started
    done, damaged = _account(output, inputs)
    if damaged and not skip_bad_files:
        where, why = next(iter(damaged.items()))
        raise InputError(
            f"{where} cannot be read: {why}. The file is damaged; set skip_bad_files: true "
            "to leave out its unreadable chunks (they are reported, and not counted)"
        )
    n_events = sum(done.values())
    meta = {
        "stage": stage_name,
        "variant": choice.device,
        "variant_target": variant.target,
        "code_fingerprint": fingerprint.code_fingerprint([variant.module]),
        "config": stage_config,
        "sample": sample,
        "dataset_metadata": {"dataset": sample, **dict(sample_metadata or {})},
        "files": sorted(inputs.entries),
        "entries": done,
        "skipped_files": inputs.skipped,
        "damaged_chunks": damaged,
        "events": {sample: n_events},
        "source_events": {sample: inputs.source_events},
        "software": software_versions(),
    }
    if inputs.sum_weights is not None:
        meta["sum_weights"] = {sample: inputs.sum_weights}
    notes = output.pop(NOTES_KEY, None) if isinstance(output, dict) else None
    if notes:
        meta["notes"] = {k: sorted(v) for k, v in sorted(notes.items())}
    meta = json.loads(json.dumps(meta, sort_keys=True, default=str))  # as read back
    if skim:
        skim_out = Path(skim_out) if skim_out else Path(out).with_suffix(".parquet")
        meta["skim"] = write_skim(skim_out, output.pop(SKIM_KEY, None), meta)
    save_result(out, output, meta)
    if run_record:
        # How and where it ran: not in the result, whose bytes must not depend on it.
        record = {
            "stage": stage_name, "sample": sample, "variant": choice.device,
            "device_reason": choice.reason,
            "executor": redact(executor),  # records are shared; tokens are not
            "workers": workers, "host": platform.node(), "warm_started": warm_started,
            "started": began, "finished": _now(),
            "wall_time_s": round(wall, 3),
            "events_per_s": round(n_events / wall, 1) if wall > 0 else None,
            "result": str(out),
        }  # fmt: skip
        write_text(run_record, json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")
    rate = f"{n_events / wall:,.0f} events/s" if wall > 0 else ""
    skipped = inputs.skipped
    log.info(
        f"{stage_name} ({choice.device}) on {sample}: {n_events:,} events from "
        f"{len(inputs.entries)} file(s) in {wall:.2f} s, {rate}"
        + (f"; {meta['skim']['rows']:,} selected events to {skim_out}" if skim else "")
        + (f"; skipped {len(skipped)} unreadable file(s): {', '.join(skipped)}" if skipped else "")
    )
    for where, why in damaged.items():
        log.warning(f"left out, unreadable: {where}: {why}")
    return output, meta


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _account(output, inputs: Inputs) -> tuple[dict[str, int], dict[str, str]]:
    """Events processed per file (damaged chunks left out) and the chunks left out; the
    source events and generator weights of the inputs follow what was processed."""
    done = output.pop(DONE_KEY, {}) if isinstance(output, dict) else {}
    damaged = dict(sorted((output.pop(BAD_KEY, {}) if isinstance(output, dict) else {}).items()))
    entries = {f: done.get(f, 0) for f in inputs.entries}
    if damaged:
        # A ROOT file's source events are the events processed from it; a damaged
        # chunk's generator weights are unknown: they are taken as the file's average.
        for path, n in inputs.entries.items():
            if path.endswith(".parquet") or n == 0:
                continue
            inputs.source_events -= n - entries[path]
            if inputs.sum_weights is not None:
                inputs.sum_weights -= inputs.weights[path] * (n - entries[path]) / n
    return entries, damaged


def _raise_read_error(err: BaseException, files) -> None:
    """A remote read that fails mid-run (server gone, file removed) reaches us wrapped
    by coffea; name the file and the I/O error instead of a traceback."""
    cause: BaseException | None = err
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__ or cause.__context__
    remote = [f for f in files if is_remote(f)]
    if cause is None or not remote:
        return
    named = [f for f in remote if f in str(err)] or remote
    _drop_xrootd_handles()
    raise InputError(
        f"{', '.join(named)}: reading failed during the run ({type(cause).__name__}: {cause}); "
        "outputs already written are kept: rerun when the file or server is back"
    ) from err


def _raise_user_error(err: BaseException) -> None:
    """An error of ours raised inside a chunk (a skim stage without a skim...) reaches us
    wrapped by coffea: raise it as it was, one clear line."""
    cause: BaseException | None = err
    while cause is not None and not isinstance(cause, SwiftError):
        cause = cause.__cause__ or cause.__context__
    if cause is not None:
        raise cause from None


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
            log.info(
                f"{self.label}: {self.done:,}/{self.total:,} events "
                f"({100 * self.done / max(self.total, 1):.0f}%), {rate:,.0f} events/s, "
                f"about {eta:.0f} s left"
            )
        return out

    def postprocess(self, accumulator):
        return self.proc.postprocess(accumulator)


def _schema(stage_config: Mapping, file_format: str):
    from coffea.nanoevents import BaseSchema, NanoAODSchema

    name = stage_config.get("schema", "auto")
    if name == "auto":
        name = "base" if file_format == "parquet" else "nanoaod"
    return {"nanoaod": NanoAODSchema, "base": BaseSchema}[name]


def _run_coffea(proc, sample, inputs: Inputs, stage_config, executor, workers,
                sample_meta, progress, tree=TREE, skim=False):  # fmt: skip
    from coffea import processor
    from coffea.nanoevents import NanoAODSchema

    from swift_rules.kept_files import Runner, close_kept_files

    files = {f: n for f, n in inputs.entries.items() if n > 0}
    if not files:
        return {}
    chunksize = int(stage_config.get("chunksize", 100_000))
    fileset = {sample: {"files": dict.fromkeys(files, tree), "metadata": sample_meta}}
    # Not coffea's preload (all branches in one read per chunk, ~14% faster): it reads
    # before the stage's ChunkGuard runs, so a damaged basket could no longer be named
    # (file, branch, entries) nor its chunk skipped (docs/benchmarks.md).
    # Skimmed NanoAOD files often lack cross-reference branches; that is normal.
    NanoAODSchema.warn_missing_crossrefs = False
    if skim:
        proc = SkimCollector(proc, list(files))
    proc = InOrder(ChunkGuard(proc, tree), list(files))
    with dask_client(executor, workers) as client:
        if client is None:
            # No retries (as with Dask): a retry after a failed remote read meets a
            # closed file handle and hides the I/O error that _raise_read_error names.
            ex = processor.IterativeExecutor(status=progress, retries=0)
            if not progress:
                proc = ProgressLog(proc, sum(files.values()), sample)
        else:
            ex = processor.DaskExecutor(client=client, status=progress, retries=0)
            log.info(f"Dask scheduler: {client.scheduler.address}")
            link = _dashboard_link(client)
            if link:  # the notebook's progress display links to it (swift_rules.notebook)
                log.info(f"Dask dashboard: {link}")
        file_format = inputs.format
        runner = Runner(
            ex, chunksize=chunksize, schema=_schema(stage_config, file_format), format=file_format,
            metadata_cache=_file_metadata(sample, inputs, tree, sample_meta),
        )  # fmt: skip
        try:
            output = runner(fileset, proc, treename=tree)
        finally:
            close_kept_files()
    output = InOrder.finish(output)
    return SkimCollector.finish(output) if skim else output


def _file_metadata(sample: str, inputs: Inputs, tree: str, sample_meta: Mapping) -> dict:
    """What coffea's preprocessing would read from each ROOT file (entries, UUID), known
    from the up-front check: so coffea does not open every file once more (a round of
    Dask tasks, and with remote files one more open over the network each) to chunk it.
    coffea takes a cached entry as the file's whole metadata: the sample's is in it."""
    from coffea.processor.executor import FileMeta

    return {
        FileMeta(sample, path, tree): {**sample_meta, "numentries": n, "uuid": inputs.uuids[path]}
        for path, n in inputs.entries.items()
        if n > 0 and path in inputs.uuids
    }


def _dashboard_link(client) -> str | None:
    """The scheduler's dashboard (None where it has none: bokeh is not installed)."""
    try:
        return client.dashboard_link or None
    except Exception:
        return None


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
