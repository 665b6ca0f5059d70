"""Generated events as chunks of columns, for the data generators analyses register.

A chunk maps a scalar branch name to a 1-D array, and a collection name (``Jet``) to
``(counts, {field: flat array})``. A generator makes its events in blocks of a fixed size,
each from its own seeded random stream, and :func:`rechunk` cuts them into chunks of any
size for writing: the file's contents never depend on the chunking (only its baskets do).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

__all__ = ["chunk_len", "concat_chunks", "rechunk", "slice_chunk"]


def chunk_len(chunk: dict) -> int:
    """Events in a chunk."""
    value = next(iter(chunk.values()))
    return len(value[0] if isinstance(value, tuple) else value)


def slice_chunk(chunk: dict, start: int, stop: int) -> dict:
    """Events [start, stop) of a chunk."""
    out = {}
    for name, value in chunk.items():
        if isinstance(value, tuple):
            counts, cols = value
            offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
            lo, hi = offsets[start], offsets[stop]
            out[name] = (counts[start:stop], {c: v[lo:hi] for c, v in cols.items()})
        else:
            out[name] = value[start:stop]
    return out


def concat_chunks(chunks: list[dict]) -> dict:
    """The chunks' events one after the other."""
    if len(chunks) == 1:
        return chunks[0]
    out = {}
    for name, value in chunks[0].items():
        if isinstance(value, tuple):
            counts = np.concatenate([c[name][0] for c in chunks])
            cols = {f: np.concatenate([c[name][1][f] for c in chunks]) for f in value[1]}
            out[name] = (counts, cols)
        else:
            out[name] = np.concatenate([c[name] for c in chunks])
    return out


def rechunk(blocks: Iterable[dict], chunk_size: int) -> Iterator[dict]:
    """The events of ``blocks``, in order, as chunks of ``chunk_size`` (the last may be
    short)."""
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be > 0, got {chunk_size}")
    pending: list[dict] = []
    pending_n = 0
    for block in blocks:
        pending.append(block)
        pending_n += chunk_len(block)
        while pending_n >= chunk_size:
            merged = concat_chunks(pending)
            yield slice_chunk(merged, 0, chunk_size)
            rest = slice_chunk(merged, chunk_size, pending_n)
            pending_n -= chunk_size
            pending = [rest] if pending_n else []
    if pending_n:
        yield concat_chunks(pending)
