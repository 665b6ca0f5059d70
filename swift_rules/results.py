"""Stage results on disk: the processor's output plus a record of how it was made.

A result file is a pickle of ``{"output": ..., "meta": {...}}``, written
atomically. Pickle because partial outputs are merged many times per run and hist
objects pickle fast and exactly; these files are intermediate products of one
software environment (the final products are ROOT, JSON, PNG/PDF).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Mapping
from pathlib import Path

from swift_rules.atomic import write_bytes
from swift_rules.errors import SwiftError

FORMAT_VERSION = 1


class ResultError(SwiftError):
    pass


def save_result(path: str | Path, output, meta: dict) -> None:
    payload = {"format": FORMAT_VERSION, "output": output, "meta": meta}
    write_bytes(path, pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))


def load_result(path: str | Path) -> tuple[object, dict]:
    try:
        with open(path, "rb") as fh:
            payload = pickle.load(fh)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as err:
        raise ResultError(f"cannot read stage result {path}: {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise ResultError(f"{path} is not a swift-rules result (format {FORMAT_VERSION})")
    return payload["output"], payload["meta"]


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


def merge_meta(metas: list[dict]) -> dict:
    """Combine the records of partial results: events add up, inputs are listed."""
    events: dict[str, int] = {}
    for meta in metas:
        for sample, n in meta.get("events", {}).items():
            events[sample] = events.get(sample, 0) + n
    return {
        "stage": metas[0].get("stage") if metas else None,
        "variant": _values(metas, "variant"),
        "code_fingerprint": _values(metas, "code_fingerprint"),
        "events": dict(sorted(events.items())),
        "files": _values(metas, "files"),
        "skipped_files": _values(metas, "skipped_files"),
        "parts": sum(m.get("parts", 1) for m in metas),
    }


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
