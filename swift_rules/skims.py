"""Skims: the selected events' columns of a stage, cached as Parquet files.

A skim stage returns its selected events as an awkward array under the key ``skim``
of its output. The runner collects them chunk by chunk (``SkimCollector``), puts
them back in file and entry order, and writes one Parquet file per job.

Why Parquet (through awkward and pyarrow) and not a ROOT TTree: it keeps awkward's
types exactly (jagged lists, booleans, small integers), it is read by coffea's
NanoEvents (``format="parquet"``), awkward, pandas, polars and Spark, and its bytes
depend only on its content (uproot writes a fresh UUID and the time into every ROOT
file), so a rerun writes the same file. Collections given as lists of records
(``Jet``) are written NanoAOD-style, as ``Jet_pt``, ``Jet_eta`` ... with the counter
``nJet``, so that ``schema: nanoaod`` reads them back as ``events.Jet``.

The job's record (stage, dataset, events read, source events behind them, sum of
generator weights) travels in the file's key-value metadata (``swift_rules.record``):
a chained stage reads it without unpickling anything.
"""

from __future__ import annotations

import json
from pathlib import Path

from swift_rules.errors import SwiftError

SKIM_KEY = "skim"
PARTS_KEY = "_swift_rules_skim_parts"
RECORD_KEY = b"swift_rules.record"
# Rows per Parquet row group: fixed, so that the file does not depend on the chunking.
ROW_GROUP = 65_536
# The parts of the job record that go into the skim file.
RECORD_FIELDS = ("stage", "variant", "code_fingerprint", "sample", "dataset_metadata",
                 "files", "skipped_files", "events", "source_events", "sum_weights")  # fmt: skip


class SkimError(SwiftError):
    """A skim stage's output or a skim file is not what it must be."""


class SkimCollector:
    """Wraps a skim stage's processor: each chunk's ``skim`` becomes a part keyed by
    (file position, first entry), which coffea's accumulation merges as a dict."""

    def __init__(self, proc, files: list[str]):
        self.proc = proc
        self.position = {f: i for i, f in enumerate(files)}

    def process(self, events):
        out = self.proc.process(events)
        if not isinstance(out, dict) or SKIM_KEY not in out:
            raise SkimError(
                f"stage {type(self.proc).__name__} has skim: true, but its output has no "
                f"{SKIM_KEY!r} key (the selected events as an awkward array)"
            )
        import awkward as ak

        out = dict(out)
        meta = events.metadata
        key = (self.position[meta["filename"]], int(meta["entrystart"]))
        # NanoEvents' columns are read lazily from the open file: read them now, and
        # keep plain data (no behaviours) for the trip back from a Dask worker.
        skim = ak.to_packed(ak.materialize(out.pop(SKIM_KEY)))
        out[PARTS_KEY] = {key: ak.Array(skim.layout, behavior={}, attrs={})}
        return out

    __call__ = process

    def postprocess(self, accumulator):
        return self.proc.postprocess(accumulator)

    @staticmethod
    def finish(output):
        """The output with its parts joined, in file and entry order, as ``skim``."""
        import awkward as ak

        output = dict(output or {})
        parts = output.pop(PARTS_KEY, {})
        arrays = [parts[k] for k in sorted(parts)]
        output[SKIM_KEY] = ak.concatenate(arrays) if arrays else None
        return output


def flatten_columns(array) -> dict:
    """Columns of ``array`` as Parquet can hold them for NanoEvents: numbers and lists of
    numbers as they are; a record becomes ``name_field``; a list of records becomes
    ``name_field`` lists and the counter ``nname``."""
    import awkward as ak
    import numpy as np

    if not array.fields:
        raise SkimError(f"the {SKIM_KEY!r} of a skim stage must be an array of records")
    columns = {}
    for name in array.fields:
        column = array[name]
        layout = ak.type(column).content
        if isinstance(layout, ak.types.RecordType):
            for sub, value in flatten_columns(column).items():
                columns[f"{name}_{sub}"] = value
        elif isinstance(layout, ak.types.ListType) and isinstance(
            layout.content, ak.types.RecordType
        ):
            columns[f"n{name}"] = ak.values_astype(ak.num(column, axis=1), np.uint32)
            for sub in column.fields:
                columns[f"{name}_{sub}"] = column[sub]
        else:
            columns[name] = column
    return columns


def write_skim(path: str | Path, array, record: dict) -> dict:
    """Write a job's skim (atomically), its record in the file's metadata; returns what
    the job's result records of it: the path, rows and columns."""
    import awkward as ak
    import pyarrow as pa
    import pyarrow.parquet as pq

    from swift_rules.atomic import atomic_path

    if array is None:  # no input events: an empty file, which later stages skip
        table = pa.table({})
    else:
        table = ak.to_arrow_table(
            ak.zip(flatten_columns(array), depth_limit=1), extensionarray=False
        )
    kept = {k: record[k] for k in RECORD_FIELDS if k in record}
    metadata = dict(table.schema.metadata or {})
    metadata[RECORD_KEY] = json.dumps(kept, sort_keys=True, default=str).encode()
    table = table.replace_schema_metadata(metadata)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=ROW_GROUP, compression="zstd")
    return {"path": str(path), "rows": table.num_rows, "columns": table.column_names}


def read_record(path: str | Path) -> dict:
    """The record a skim file carries (empty for a Parquet file made elsewhere)."""
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_schema(path).metadata or {}
        return json.loads(metadata[RECORD_KEY]) if RECORD_KEY in metadata else {}
    except (OSError, ValueError) as err:
        raise SkimError(f"{path}: cannot read its skim record ({err})") from err
