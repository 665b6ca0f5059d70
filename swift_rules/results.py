"""Stage results on disk: the processor's output plus a record of how it was made.

A result file is one line naming the format, the record as one line of JSON, then
the output as a pickle; written atomically. The record (``load_meta``, ``swift-rules
info``) is read without unpickling anything. Pickle because partial outputs are merged
many times per run and hist objects pickle fast and exactly; these files are
intermediate products of one software environment (the final products are ROOT,
JSON, PNG/PDF).

Unpickling runs code, so an output is unpickled only from a file that nobody else
could have written: owned by this user (or root) and not writable by group or others
(checked on the open file, so a file swapped in afterwards is not the one read). A
results folder shared with a group stays safe to merge and rerun in.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path

from swift_rules.atomic import write_bytes
from swift_rules.errors import SwiftError

__all__ = ["ResultError", "accumulate", "load_meta", "load_result", "merge_results", "save_result"]

FORMAT_VERSION = 2
MAGIC = b"swift-rules result 2\n"


class ResultError(SwiftError):
    pass


def save_result(path: str | Path, output, meta: dict) -> None:
    record = json.dumps(meta, sort_keys=True, separators=(",", ":"), default=str)
    write_bytes(path, MAGIC + record.encode() + b"\n" + _pickle(output))


def _pickle(output) -> bytes:
    """The output's pickle, the same bytes for equal outputs: without pickle's memo, whose
    back-references follow which objects happen to be shared (equal histograms merged in
    process and from Dask workers share different strings)."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.fast = True  # no memo: every object written in full, where it occurs
    pickler.dump(output)
    return buffer.getvalue()


def _read_header(fh, path) -> dict:
    if fh.readline() != MAGIC:
        raise ResultError(f"{path} is not a swift-rules result (format {FORMAT_VERSION})")
    try:
        return json.loads(fh.readline())
    except ValueError as err:
        raise ResultError(f"{path}: its record is damaged ({err})") from None


def load_meta(path: str | Path) -> dict:
    """The record of a result file, without unpickling anything."""
    try:
        with open(path, "rb") as fh:
            return _read_header(fh, path)
    except OSError as err:
        raise ResultError(f"cannot read stage result {path}: {err}") from err


def check_trusted(fd: int, path) -> None:
    """Refuse to unpickle a file that another user owns or could have written."""
    st = os.fstat(fd)
    if st.st_uid not in (os.geteuid(), 0):
        raise ResultError(
            f"{path} belongs to uid {st.st_uid}, not to you (uid {os.geteuid()}): a result "
            "file is code to whoever loads it, so only your own are read; rerun the job "
            "that makes it"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ResultError(
            f"{path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):o}): "
            "anyone who can write it could run code as you; `chmod go-w` it if its content "
            "is yours, or rerun the job that makes it"
        )


def load_result(path: str | Path) -> tuple[object, dict]:
    try:
        with open(path, "rb") as fh:
            meta = _read_header(fh, path)
            check_trusted(fh.fileno(), path)
            output = pickle.load(fh)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as err:
        raise ResultError(f"cannot read stage result {path}: {err}") from err
    return output, meta


def accumulate(a, b):
    """Add two processor outputs the way coffea's ``accumulate`` does.

    Dicts merge key by key (recursively), everything else uses ``+`` (numbers,
    hist.Hist, sets). Kept here so that merge jobs need not import coffea.
    """
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out = dict(a)
        for key, value in b.items():
            out[key] = accumulate(out.get(key), value)
        return out
    if isinstance(a, set):
        return a | b
    return a + b


def _values(metas: list[dict], key: str) -> list:
    """Distinct values of ``key`` over partial records (a value or a list of them)."""
    found = set()
    for meta in metas:
        value = meta.get(key)
        found.update(value if isinstance(value, list) else [value])
    return sorted(found - {None})


def _sum_counts(metas: list[dict], key: str) -> dict:
    total: dict[str, float] = {}
    for meta in metas:
        for sample, n in (meta.get(key) or {}).items():
            total[sample] = total.get(sample, 0) + n
    return dict(sorted(total.items()))


def merge_meta(metas: list[dict]) -> dict:
    """Combine the records of partial results: events add up, inputs are listed."""
    merged = {
        "stage": metas[0].get("stage") if metas else None,
        "variant": _values(metas, "variant"),
        "code_fingerprint": _values(metas, "code_fingerprint"),
        "events": _sum_counts(metas, "events"),
        "source_events": _sum_counts(metas, "source_events"),
        "files": _values(metas, "files"),
        "skipped_files": _values(metas, "skipped_files"),
        "damaged_chunks": dict(
            sorted(kv for m in metas for kv in (m.get("damaged_chunks") or {}).items())
        ),
        "parts": sum(m.get("parts", 1) for m in metas),
    }
    notes: dict[str, set] = {}
    for meta in metas:
        for topic, values in (meta.get("notes") or {}).items():
            notes.setdefault(topic, set()).update(values)
    if notes:
        merged["notes"] = {k: sorted(v) for k, v in sorted(notes.items())}
    if any("sum_weights" in m for m in metas):
        merged["sum_weights"] = _sum_counts(metas, "sum_weights")
    datasets: dict[str, dict] = {}
    for meta in metas:
        if meta.get("dataset_metadata"):
            datasets[meta["dataset_metadata"]["dataset"]] = meta["dataset_metadata"]
        datasets.update(meta.get("datasets") or {})
    if datasets:
        merged["datasets"] = dict(sorted(datasets.items()))
    return merged


def merge_results(paths: Iterable[str | Path], out: str | Path) -> tuple[object, dict]:
    """Sum partial results in the order given (callers sort it: bit-identical reruns)."""
    output, metas = None, []
    for path in paths:
        part, meta = load_result(path)
        output = accumulate(output, part)
        metas.append(meta)
    if not metas:
        raise ResultError(f"nothing to merge into {out}")
    meta = merge_meta(metas)
    save_result(out, output, meta)
    return output, meta
