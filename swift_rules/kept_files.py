"""ROOT files kept open across the chunks a worker reads of each.

coffea opens the file and deserialises its TTree again for every chunk: ~10 ms for a
flat tree of 34 branches, 100-250 ms for a NanoAOD tree of ~1,500 branches, which is
as long as processing the chunk (docs/benchmarks.md). ``Runner`` keeps the last few
files each thread opened, by path and UUID, and hands coffea their deserialised
objects through uproot's ``object_cache``: coffea still opens the file (its header),
finds the TTree there, and reads the chunk through the kept file. A local file's
branches also keep the basket a chunk boundary cuts in two, decompressed for the chunk
before it and reused by the one after (uproot's own ``iterate`` does the same): coffea
decompressed it twice. A kept local file is read in the thread that reads the chunk
(uproot's default source hands each read to a thread of its own). The chunks are
coffea's own, and so are the bytes read: outputs are unchanged.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import uproot
from coffea import processor

from swift_rules.remote import is_remote

KEEP = 2  # files per thread: the one being read, and one a stolen task interleaved


class _Kept(threading.local):
    def __init__(self) -> None:
        self.files: OrderedDict[tuple[str, bytes], uproot.ReadOnlyDirectory] = OrderedDict()


_kept = _Kept()


def kept_file(filename: str, fileuuid: bytes, treename: str, timeout, uproot_options):
    """The file, opened once per thread and kept, its TTree read; None where the file on
    disk is no longer the one coffea chunked (another UUID): coffea then opens it anew."""
    key = (filename, fileuuid)
    files = _kept.files
    if key in files:
        files.move_to_end(key)
        return files[key]
    # No array cache: coffea's per-chunk file dropped each chunk's arrays with the file;
    # a kept file would hold up to 100 MB of arrays no later chunk reads.
    options = {"array_cache": None, **local_reads(filename), **uproot_options, "object_cache": {}}
    try:
        opened = uproot.open({filename: None}, timeout=timeout, **options)
        if opened.file.fUUID != fileuuid:
            opened.close()
            return None
        tree = opened[treename]  # deserialised once, into its object_cache
        # (Remote files: it would cost one more request per branch and chunk.)
        if isinstance(tree, uproot.TTree) and not is_remote(filename):
            for branch in tree.itervalues(recursive=True):
                branch.entries_to_ranges_or_baskets = BoundaryBaskets(branch)
    except Exception as e:  # as coffea words it, so that the run fails as it did
        raise Exception(f"Failed to open file: {filename!r}. The error was: {e!r}.") from e
    files[key] = opened
    while len(files) > KEEP:
        _close(files.popitem(last=False)[1])
    return opened


LOCAL_READS = {"handler": uproot.MultithreadedFileSource, "use_threads": False}


def local_reads(filename: str) -> dict:
    """uproot's options for reading a local file in the calling thread. uproot's default
    source (fsspec's) hands every read to its own event-loop thread and waits for it:
    coffea reads column by column, ~20 reads per chunk, and those hand-overs made reading
    1.5x slower than the same reads done here (docs/benchmarks.md). Plain reads, not a
    memory map: a file cut short while mapped would kill the worker (SIGBUS) instead of
    raising an error that names it. Each thread keeps its own files, so one handle each."""
    return {} if is_remote(filename) else dict(LOCAL_READS)


def _close(opened) -> None:
    # Read-only: nothing to lose. A server gone must not hide the run's own error.
    try:
        opened.close()
    except Exception:
        pass


class BoundaryBaskets:
    """A kept branch's ``entries_to_ranges_or_baskets`` (what ``TBranch.array`` reads):
    the basket that runs past a chunk's last entry is read here, decompressed, and handed
    to uproot as a basket, and kept for the next chunk, which then does not read it."""

    def __init__(self, branch):
        self.branch = branch
        self.ranges = type(branch).entries_to_ranges_or_baskets.__get__(branch)
        self.baskets = {}  # basket number: the one the last chunk cut, decompressed

    def __call__(self, entry_start, entry_stop):
        kept, self.baskets = self.baskets, {}
        out = []
        for num, range_or_basket in self.ranges(entry_start, entry_stop):
            basket = kept.get(num)
            cut = self.branch.basket_entry_start_stop(num)[1] > entry_stop
            if cut and basket is None and isinstance(range_or_basket, tuple):
                basket = self.branch.basket(num)
            if cut and basket is not None:
                self.baskets[num] = basket
            out.append((num, range_or_basket if basket is None else basket))
        return out


def close_kept_files() -> None:
    """Close this thread's kept files (a job's end: in-process runs read in this thread)."""
    while _kept.files:
        _close(_kept.files.popitem()[1])


class Runner(processor.Runner):
    """coffea's Runner, each chunk read through the file kept open for it (above)."""

    @staticmethod
    def _work_function(format, xrootdtimeout, schema, use_dataframes, savemetrics, item,
                       processor_instance, uproot_options, **kwargs):  # fmt: skip
        work = item[0] if isinstance(processor_instance, str) else item  # coffea's "heavy"
        if format == "root" and work.fileuuid:
            options = dict(uproot_options)
            timeout = options.pop("timeout", xrootdtimeout)
            kept = kept_file(work.filename, work.fileuuid, work.treename, timeout, options)
            if kept is not None:
                uproot_options = {**local_reads(work.filename), **uproot_options,
                                  "object_cache": kept.file.object_cache}  # fmt: skip
        return processor.Runner._work_function(
            format, xrootdtimeout, schema, use_dataframes, savemetrics, item,
            processor_instance=processor_instance, uproot_options=uproot_options, **kwargs,
        )  # fmt: skip
