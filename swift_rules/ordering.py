"""Chunk outputs added up in file and entry order, whatever the executor.

coffea adds chunk outputs in the order they come back: one after the other in process,
in a tree of futures on Dask. Floating-point sums depend on their order, so the same
job gave histograms equal only to ~1e-12 between executors. Here each chunk's output is
kept apart, keyed by (file position, first entry), and added up in that order at the
end, the same way on every executor: the same bits in process, on a local Dask cluster,
on HTCondor, Slurm or DIRAC workers. (A different ``chunksize`` still adds other partial
sums.) The cost is holding one output per chunk until the end: a job's few dozen
chunks' histograms.
"""

from __future__ import annotations

from swift_rules.results import accumulate

__all__ = ["InOrder"]

ORDER_KEY = "_swift_rules_chunks"


class InOrder:
    """Wraps a processor: its chunk outputs, keyed by (file position, first entry)."""

    def __init__(self, proc, files: list[str]):
        self.proc = proc
        self.position = {f: i for i, f in enumerate(files)}

    def process(self, events):
        meta = events.metadata
        key = (self.position[meta["filename"]], int(meta["entrystart"]))
        return {ORDER_KEY: {key: self.proc.process(events)}}

    __call__ = process

    def postprocess(self, accumulator):
        return self.proc.postprocess(accumulator)

    @staticmethod
    def finish(output) -> dict:
        """The chunk outputs added up in file and entry order."""
        parts = (output or {}).get(ORDER_KEY, {})
        total = None
        for key in sorted(parts):
            total = accumulate(total, parts[key])
        return total if total is not None else {}
