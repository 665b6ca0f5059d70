"""ROOT files kept open across the chunks a worker reads of each.

coffea opens the file and deserialises its TTree again for every chunk: ~10 ms for a
flat tree of 34 branches, 100-250 ms for a NanoAOD tree of ~1,500 branches, which is
as long as processing the chunk (docs/benchmarks.md). ``Runner`` keeps the last few
files each thread opened, by path and UUID, and hands coffea their deserialised
objects through uproot's ``object_cache``: coffea still opens the file (its header),
finds the TTree there, and reads the chunk through the kept file. The chunks and the
reads are coffea's own, so outputs are unchanged.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import uproot
from coffea import processor

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
    options = {"array_cache": None, **uproot_options, "object_cache": {}}
    try:
        opened = uproot.open({filename: None}, timeout=timeout, **options)
        if opened.file.fUUID != fileuuid:
            opened.close()
            return None
        opened[treename]  # deserialised once, into its object_cache
    except Exception as e:  # as coffea words it, so that the run fails as it did
        raise Exception(f"Failed to open file: {filename!r}. The error was: {e!r}.") from e
    files[key] = opened
    while len(files) > KEEP:
        files.popitem(last=False)[1].close()
    return opened


def close_kept_files() -> None:
    """Close this thread's kept files (a job's end: in-process runs read in this thread)."""
    while _kept.files:
        _kept.files.popitem()[1].close()


class Runner(processor.Runner):
    """coffea's Runner, each chunk's TTree taken from the file kept open for it."""

    @staticmethod
    def _work_function(format, xrootdtimeout, schema, use_dataframes, savemetrics, item,
                       processor_instance, uproot_options, **kwargs):  # fmt: skip
        work = item[0] if isinstance(processor_instance, str) else item  # coffea's "heavy"
        if format == "root" and work.fileuuid:
            options = dict(uproot_options)
            timeout = options.pop("timeout", xrootdtimeout)
            kept = kept_file(work.filename, work.fileuuid, work.treename, timeout, options)
            if kept is not None:
                uproot_options = {**uproot_options, "object_cache": kept.file.object_cache}
        return processor.Runner._work_function(
            format, xrootdtimeout, schema, use_dataframes, savemetrics, item,
            processor_instance=processor_instance, uproot_options=uproot_options, **kwargs,
        )  # fmt: skip
