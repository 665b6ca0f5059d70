"""Input files of a stage job: the up-front check, and damage found while reading.

Up front, every file is opened: its tree, entries, branches, completeness (a truncated
local file), and the source events and generator weights behind it. Damage inside a
file (a corrupt basket, a compression header that lies) shows only when the basket is
read, in the middle of processing: ``ChunkGuard`` catches it in the chunk, finds the
branch and entry range at fault, and either stops the job with one line naming them
or, with ``skip_bad_files``, leaves that chunk out and reports it. Only the events of
chunks actually processed are counted, so the normalisation stays right.
"""

from __future__ import annotations

import logging
import lzma
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from swift_rules.errors import SwiftError
from swift_rules.remote import is_remote
from swift_rules.skims import read_record

log = logging.getLogger(__name__)

TREE = "Events"
DONE_KEY = "_swift_rules_events"  # events of the chunks processed, per file
BAD_KEY = "_swift_rules_bad_chunks"  # (file, start, stop) -> what cannot be read
# A stage's notes for its result's record (``{topic: {files or values}}``, sets that
# merge by union), e.g. that it recomputed a branch the file lacks.
NOTES_KEY = "_swift_rules_notes"


class InputError(SwiftError):
    """An input file is unreadable, truncated or lacks a branch the stage needs."""


@dataclass
class Inputs:
    """What the up-front check found: entries per readable file, files skipped, and
    the source events (and generator weights) behind the files."""

    entries: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    source_events: int = 0
    sum_weights: float | None = None
    weights: dict[str, float] = field(default_factory=dict)  # generator weights per file
    uuids: dict[str, bytes] = field(default_factory=dict)  # each ROOT file's fUUID

    @property
    def format(self) -> str:
        return "parquet" if any(p.endswith(".parquet") for p in self.entries) else "root"


def _check_complete(path: str, fh) -> None:
    """A truncated file can still open (its header and tree metadata come first):
    compare the size the header promises with the size on disk."""
    if is_remote(path):
        return
    expected, actual = fh.file.fEND, os.path.getsize(path)
    if actual < expected:
        raise OSError(f"file is truncated: {actual} of {expected} bytes")


def _sum_weights_root(fh, path: str, tree) -> float:
    """The sum of generator weights of a NanoAOD file: ``Runs/genEventSumw`` (which counts
    the events before any skim), else the sum of ``Events/genWeight``."""
    if "Runs" in fh and "genEventSumw" in fh["Runs"].keys():
        return float(fh["Runs"]["genEventSumw"].array(library="np").sum())
    if "genWeight" in tree.keys():
        return float(tree["genWeight"].array(library="np").sum(dtype="float64"))
    raise InputError(
        f"{path}: outputs.normalise_by is sum_weights, but the file has neither "
        "Runs/genEventSumw nor Events/genWeight"
    )


def _options(need) -> list[tuple[str, ...]]:
    """The choices of a list of alternatives, each as a tuple of names."""
    return [(o,) if isinstance(o, str) else tuple(o) for o in need]


def missing_branches(required, keys) -> list[str]:
    """What of ``required`` is not in ``keys``. An entry is a branch name, or a list of
    alternatives (each a name or a tuple of names) of which one must be complete."""
    missing = []
    for need in required:
        if isinstance(need, str):
            if need not in keys:
                missing.append(need)
            continue
        options = _options(need)
        if not any(all(b in keys for b in option) for option in options):
            first, *others = options
            text = ", ".join(b for b in first if b not in keys)
            for option in others:
                text += " (or: " + ", ".join(b for b in option if b not in keys) + ")"
            missing.append(text)
    return missing


def branches_read(required, keys) -> set[str]:
    """The branches of a file that ``required`` reads: each name, the first complete
    choice of each list of alternatives, and the NanoAOD counters (``nJet`` for
    ``Jet_pt``) that give the collections' offsets."""
    read = set()
    for need in required:
        if isinstance(need, str):
            read.add(need)
            continue
        read.update(next((o for o in _options(need) if all(b in keys for b in o)), ()))
    counters = {"n" + name.split("_", 1)[0] for name in read if "_" in name}
    return (read | counters) & set(keys)


def _open_root(path: str, tree_name: str, required, sum_weights: bool):
    import uproot

    with uproot.open(path, timeout=60) as fh:
        if tree_name not in fh:
            raise InputError(f"{path}: has no TTree or RNTuple named {tree_name!r}")
        tree = fh[tree_name]
        n = tree.num_entries
        keys = set(tree.keys())
        _check_complete(path, fh)
        missing = missing_branches(required, keys)
        if missing:
            raise InputError(f"{path}: missing branch(es) {', '.join(missing)}")
        weights = _sum_weights_root(fh, path, tree) if sum_weights else None
        uuid = fh.file.fUUID
    return n, n, weights, uuid


def _open_parquet(path: str, required, sum_weights: bool):
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    columns = {meta.schema.column(i).path.split(".")[0] for i in range(meta.num_columns)}
    missing = missing_branches(required, columns)
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    record = read_record(path)
    source = sum((record.get("source_events") or {"": meta.num_rows}).values())
    weights = None
    if sum_weights:
        if "sum_weights" not in record:
            raise InputError(
                f"{path}: outputs.normalise_by is sum_weights, but the skim's record has no "
                "sum of generator weights: rerun its stage with this setting"
            )
        weights = sum(record["sum_weights"].values())
    return meta.num_rows, source, weights, None


def check_inputs(
    files: Sequence[str],
    required: Sequence[str],
    skip_bad_files: bool,
    tree: str = TREE,
    sum_weights: bool = False,
) -> Inputs:
    """Open every file up front: entries per readable file, files skipped, source events.

    Unreadable or truncated files are an error naming the file, or skipped when
    ``skip_bad_files``; a missing branch is always an error (it is a setting or
    a dataset problem, not a damaged file).
    """
    found = Inputs(sum_weights=0.0 if sum_weights else None)
    for path in files:
        try:
            if path.endswith(".parquet"):
                n, source, weights, uuid = _open_parquet(path, required, sum_weights)
            else:
                n, source, weights, uuid = _open_root(path, tree, required, sum_weights)
        except InputError:
            raise
        except Exception as err:  # uproot and pyarrow raise many kinds for damaged files
            if skip_bad_files:
                log.warning("skipping unreadable file %s: %s", path, err)
                found.skipped.append(path)
                continue
            why = (
                "is the server up, does the file exist, is data.remote right?"
                if is_remote(path)
                else "it may be corrupt or truncated."
            )
            raise InputError(
                f"{path}: cannot be read ({type(err).__name__}: {err}); {why} "
                "Set skip_bad_files: true to leave it out"
            ) from err
        found.entries[path] = n
        found.source_events += source
        if uuid is not None:
            found.uuids[path] = uuid
        if weights is not None:
            found.weights[path] = weights
            found.sum_weights += weights
    return found


def is_damage(err: BaseException) -> bool:
    """Whether an error raised while reading a chunk is damaged data, not a bug."""
    from uproot.deserialization import DeserializationError

    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, (zlib.error, lzma.LZMAError, DeserializationError, EOFError)):
            return True
        if type(cause).__name__ in ("LZ4BlockError", "ZstdError", "ArrowInvalid"):
            return True
        text = str(cause).lower()
        if "decompress" in text or "wrong number of entries" in text:
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def locate_damage(path: str, tree_name: str, start: int, stop: int) -> str:
    """Which branch of ``path`` cannot be read in entries [start, stop), and where."""
    import uproot

    try:
        with uproot.open(path) as fh:
            tree = fh[tree_name]
            for name in tree.keys(recursive=True):
                branch = tree[name]
                for i in range(branch.num_baskets):
                    lo, hi = branch.basket_entry_start_stop(i)
                    if hi <= start or lo >= stop:
                        continue
                    try:
                        branch.array(entry_start=lo, entry_stop=hi)  # decompress, interpret
                    except Exception as err:
                        kind = type(err).__name__
                        if kind == "error":  # zlib.error
                            kind = f"{type(err).__module__}.{kind}"
                        return (
                            f"branch {name}, entries {lo}-{hi - 1} (basket {i}): "
                            f"{kind}: {str(err).splitlines()[0]}"
                        )
    except Exception as err:  # the file itself went bad since the up-front check
        return f"{type(err).__name__}: {err}"
    return "no single basket fails on its own"


class ChunkGuard:
    """Wraps a processor: counts the events of every chunk processed, per file, and turns
    damaged data in a chunk into a chunk left out, named (file, entries, branch) in the
    output: the runner then fails with that line, or, with skip_bad_files, reports it.
    Returned as data rather than raised, so that it reads the same from a Dask worker."""

    def __init__(self, proc, tree: str):
        self.proc, self.tree = proc, tree

    def process(self, events):
        meta = events.metadata
        path, start, stop = meta["filename"], int(meta["entrystart"]), int(meta["entrystop"])
        try:
            out = self.proc.process(events)
        except Exception as err:
            if not is_damage(err) or path.endswith(".parquet"):
                raise
            where = locate_damage(path, self.tree, start, stop)
            log.warning("%s: entries %d-%d unreadable: %s", path, start, stop - 1, where)
            return {BAD_KEY: {f"{path}: entries {start}-{stop - 1}": where}, DONE_KEY: {path: 0}}
        out = dict(out or {})
        out[DONE_KEY] = {path: len(events)}
        return out

    __call__ = process

    def postprocess(self, accumulator):
        return self.proc.postprocess(accumulator)
