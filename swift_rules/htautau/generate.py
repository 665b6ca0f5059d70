"""Deterministic generator of the H -> tautau analysis' input files, in their format.

The files are what ``skim.cxx`` reads: the reduced NanoAOD of the CMS Open Data outreach
tool, every branch it writes under its name and type, in its order
(:mod:`swift_rules.htautau.inputs`); the events come from the toy of
:mod:`swift_rules.htautau.toy`, which gives each sample its signature.

**Normalisation.** The toy samples are "filtered": only a small slice of each process's
phase space, rich in mu tau_h candidates, is generated. Their metadata ``xsec`` is the
original cross section times that slice's fraction (``filter_efficiency``), chosen so
that the data files, generated for the original's 11.467 /fb, are consistent with the
simulation scaled by xsec x 11467 /pb / N
(:func:`swift_rules.htautau.presets.effective_xsec`). Data events are, one by one,
events of a simulated process in the proportions :data:`DATA_COMPOSITION` or QCD multijet
events (data only).

**Determinism.** The events of a file depend only on (dataset, file index, number of
events, seed): fixed blocks of :data:`BLOCK_SIZE` events, each from its own PCG64 stream
seeded by ``SeedSequence([seed, crc32(dataset), file_index, block_index])``, cut into write
chunks of any size (the chunking changes the baskets, never the contents). ``event =
file_index * 10**9 + i + 1``. (Bit-identical for a given NumPy version and platform.)
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import awkward as ak
import numpy as np
import uproot

from swift_rules.chunks import chunk_len, concat_chunks, rechunk
from swift_rules.htautau.inputs import COLLECTIONS, EVENT_FIELDS, LAYOUT, MET_FIELDS
from swift_rules.htautau.presets import DATA_COMPOSITION
from swift_rules.htautau.samples import SAMPLE_NAMES, SAMPLES
from swift_rules.htautau.toy import Builder, block_rng, choose, filtered_events
from swift_rules.rootfile import recreate

BLOCK_SIZE = 50_000
WRITE_CHUNK = 100_000
EVENT_STRIDE = 10**9
GENERATOR_VERSION = 1
METADATA_KEY = "swift_rules_generator"

RUN_FIRST = {"Run2012B_TauPlusX": 194050, "Run2012C_TauPlusX": 198230}
EVENTS_PER_RUN = 200_000


# ---------------------------------------------------------------------------
# Blocks and chunks. A chunk maps scalar branch names to arrays and each collection
# name to (counts, {field: flat array}).


def _check_dataset(dataset: str) -> None:
    if dataset not in SAMPLES:
        raise ValueError(f"unknown dataset {dataset!r}; known: {SAMPLE_NAMES}")


def _generate_block(dataset: str, n: int, *, file_index: int, block_index: int, seed: int):
    rng = block_rng(seed, dataset, file_index, block_index)
    is_data = bool(SAMPLES[dataset].get("is_data", False))
    builder = Builder(n, rng, is_data)
    if is_data:
        which = choose(rng, n, list(DATA_COMPOSITION.values()))
        for i, process in enumerate(DATA_COMPOSITION):
            events = np.flatnonzero(which == i)
            filtered_events(builder, process, events)
    else:
        filtered_events(builder, dataset, np.arange(n))
    out = builder.finish()
    i = block_index * BLOCK_SIZE + np.arange(n, dtype=np.int64)
    if is_data:
        run = RUN_FIRST[dataset] + 10 * file_index + i // EVENTS_PER_RUN
        lumi = 1 + (i % EVENTS_PER_RUN) // 1000
    else:
        run, lumi = np.ones(n), np.full(n, file_index + 1)
    chunk = {
        "run": run.astype(np.int32),
        "luminosityBlock": lumi.astype(np.uint32),
        "event": np.uint64(file_index) * np.uint64(EVENT_STRIDE) + (i + 1).astype(np.uint64),
    }
    for name in LAYOUT:
        if name in COLLECTIONS:
            if name in out:
                chunk[name] = out[name]
        elif name not in chunk:
            chunk[name] = np.asarray(out["scalars"][name]).astype(
                {**EVENT_FIELDS, **MET_FIELDS}[name]
            )
    return chunk


def iter_chunks(
    dataset: str,
    n_events: int,
    *,
    file_index: int = 0,
    seed: int = 42,
    chunk_size: int | None = None,
) -> Iterator[dict]:
    """The events of one file as chunks of ``chunk_size`` events (the last may be short);
    their concatenation does not depend on ``chunk_size``."""
    _check_dataset(dataset)
    if n_events < 0:
        raise ValueError(f"n_events must be >= 0, got {n_events}")
    if n_events >= EVENT_STRIDE:
        raise ValueError(f"at most {EVENT_STRIDE - 1} events per file, got {n_events}")
    if file_index < 0:
        raise ValueError(f"file_index must be >= 0, got {file_index}")
    chunk_size = int(chunk_size or WRITE_CHUNK)
    blocks = (
        _generate_block(
            dataset, min(BLOCK_SIZE, n_events - i * BLOCK_SIZE), file_index=file_index,
            block_index=i, seed=seed,
        )
        for i in range(-(-n_events // BLOCK_SIZE))
    )  # fmt: skip
    yield from rechunk(blocks, chunk_size)


def _record_type(fields) -> ak.types.Type:
    names = ", ".join(f"{f}: {np.dtype(t).name}" for f, t in fields.items())
    return ak.types.from_datashape(f"var * {{{names}}}", highlevel=False)


def _tree_types(is_data: bool) -> dict:
    types = {}
    for name in LAYOUT:
        if name in COLLECTIONS:
            if not (name == "GenPart" and is_data):
                types[name] = _record_type(COLLECTIONS[name])
        else:
            types[name] = np.dtype({**EVENT_FIELDS, **MET_FIELDS}[name])
    return types


def _to_uproot(chunk) -> dict:
    out = {}
    for name, value in chunk.items():
        if isinstance(value, tuple):
            counts, cols = value
            out[name] = ak.unflatten(ak.zip(cols, depth_limit=1), counts.astype(np.int64))
        else:
            out[name] = value
    return out


def _to_arrays(chunk) -> dict:
    """Flat branch names (``nMuon``, ``Muon_pt``...) of a chunk, as awkward/numpy arrays."""
    out = {}
    for name, value in chunk.items():
        if isinstance(value, tuple):
            counts, cols = value
            out[f"n{name}"] = counts
            for field, flat in cols.items():
                out[f"{name}_{field}"] = ak.unflatten(flat, counts.astype(np.int64))
        else:
            out[name] = value
    return out


def generate_arrays(dataset: str, n_events: int, *, file_index: int = 0, seed: int = 42) -> dict:
    """The branches :func:`generate_file` would write, in memory, keyed by branch name."""
    chunks = list(
        iter_chunks(
            dataset, n_events, file_index=file_index, seed=seed, chunk_size=max(n_events, 1)
        )
    )
    if not chunks:
        chunks = [_generate_block(dataset, 0, file_index=file_index, block_index=0, seed=seed)]
    return _to_arrays(concat_chunks(chunks))


@contextlib.contextmanager
def _unsigned_counters():
    """uproot writes the counters of jagged branches (``nMuon``) as int32; the tool's are
    uint32 (``nMuon/i``). Declare them unsigned before the tree's metadata is written."""
    from uproot.writing import _cascadetree

    original = _cascadetree.Tree.write_anew

    def write_anew(self, sink):
        for datum in self._branch_data:
            if datum.get("kind") == "counter":
                datum["dtype"] = datum["branch_type"] = np.dtype(">u4")
                datum["fTitle"] = f"{datum['fName']}/i"
        return original(self, sink)

    _cascadetree.Tree.write_anew = write_anew
    try:
        yield
    finally:
        _cascadetree.Tree.write_anew = original


_COMPRESSION = {
    "zlib": (uproot.ZLIB, 4),
    "lz4": (uproot.LZ4, 1),
    "zstd": (uproot.ZSTD, 3),
    "lzma": (uproot.LZMA, 8),
    "none": (None, 0),
}


def _compression(spec: str):
    """``zlib``, ``lz4``, ``zstd``, ``lzma`` or ``none``, optionally ``NAME:LEVEL``."""
    name, _, level = str(spec).lower().partition(":")
    if name not in _COMPRESSION:
        raise ValueError(f"unknown compression {spec!r}; known: {sorted(_COMPRESSION)}")
    codec, default = _COMPRESSION[name]
    return None if codec is None else codec(int(level) if level else default)


def _metadata_string(dataset, n_events, file_index, seed) -> str:
    return json.dumps(
        {
            "generator": "swift_rules.htautau.generate",
            "version": GENERATOR_VERSION,
            "block_size": BLOCK_SIZE,
            "dataset": dataset,
            "n_events": int(n_events),
            "file_index": int(file_index),
            "seed": int(seed),
        },
        sort_keys=True,
    )


def generate_file(
    path,
    dataset: str,
    n_events: int,
    *,
    file_index: int = 0,
    seed: int = 42,
    compression: str = "zlib",
    chunk_size: int | None = None,
) -> int:
    """Write ``n_events`` events of ``dataset`` to the ROOT file ``path`` (atomically);
    return the number written."""
    _check_dataset(dataset)
    chunks = iter_chunks(dataset, n_events, file_index=file_index, seed=seed, chunk_size=chunk_size)
    meta = _metadata_string(dataset, n_events, file_index, seed)
    is_data = bool(SAMPLES[dataset].get("is_data", False))
    return _write(path, chunks, is_data=is_data, compression=compression, metadata=meta)


def _write(path, chunks, *, is_data: bool, compression: str, metadata: str | None) -> int:
    codec = _compression(compression)
    written = 0
    with recreate(path, compression=codec) as f:
        if metadata is not None:
            f[METADATA_KEY] = metadata
        with _unsigned_counters():  # mktree, not f["Events"] = ...: that is an RNTuple
            tree = f.mktree("Events", _tree_types(is_data), title="Events")
        for chunk in chunks:
            tree.extend(_to_uproot(chunk))
            written += chunk_len(chunk)
    return written


def _default(field: str, dtype: str):
    return -1 if field in ("genPartIdx", "jetIdx") else np.zeros((), dtype=dtype)[()]


def write_events(path, events: list[dict], *, is_data: bool = False) -> int:
    """Write hand-made events in the input format (unit tests, edge cases).

    Each event is a dict of scalar branches (``run``, ``HLT_...``, ``PV_npvs``, ``MET_pt``,
    ...) and collections (``"Muon": [{"pt": 30.0, "eta": 0.5, ...}, ...]``); what is
    left out is 0 or False, -1 for ``genPartIdx`` and ``jetIdx``, ``event`` its position + 1.
    """
    chunk: dict = {}
    for name in LAYOUT:
        if name in COLLECTIONS:
            if name == "GenPart" and is_data:
                continue
            objects = [obj for e in events for obj in e.get(name, [])]
            counts = np.array([len(e.get(name, [])) for e in events], dtype=np.uint32)
            cols = {
                f: np.array([o.get(f, _default(f, t)) for o in objects], dtype=t)
                for f, t in COLLECTIONS[name].items()
            }
            chunk[name] = (counts, cols)
        else:
            dtype = {**EVENT_FIELDS, **MET_FIELDS}[name]
            default = [i + 1 for i in range(len(events))] if name == "event" else None
            chunk[name] = np.array(
                [e.get(name, default[i] if default else _default(name, dtype))
                 for i, e in enumerate(events)],
                dtype=dtype,
            )  # fmt: skip
    return _write(path, [chunk], is_data=is_data, compression="zlib", metadata=None)


def generate_dataset(
    outdir, preset: str = "tiny", *, seed: int = 42, compression: str = "zlib", datasets=None
) -> dict:
    """Write the files of a preset (:class:`~swift_rules.htautau.generator.HttGenerator`)
    under ``outdir/DATASET/DATASET_NNNN.root``; return their coffea fileset, with each
    dataset's metadata and ``nevents``."""
    from pathlib import Path

    from swift_rules.htautau.presets import datasets as preset_datasets

    outdir = Path(outdir)
    fileset = {}
    for name, spec in preset_datasets(preset).items():
        if datasets is not None and name not in datasets:
            continue
        files = {}
        for i in range(spec["files"]):
            path = outdir / name / f"{name}_{i:04d}.root"
            generate_file(
                path, name, spec["events"], file_index=i, seed=seed, compression=compression
            )
            files[str(path)] = "Events"
        meta = {**spec["metadata"], "nevents": spec["files"] * spec["events"]}
        fileset[name] = {"files": files, "metadata": meta}
    return fileset


def _main(argv=None) -> int:
    import argparse

    from swift_rules.atomic import write_text
    from swift_rules.htautau.presets import PRESETS

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("outdir")
    parser.add_argument("--preset", choices=PRESETS, default="tiny")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--compression", default="zlib")
    args = parser.parse_args(argv)
    fileset = generate_dataset(
        args.outdir, args.preset, seed=args.seed, compression=args.compression
    )
    write_text(f"{args.outdir}/fileset.json", json.dumps(fileset, indent=2) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())
