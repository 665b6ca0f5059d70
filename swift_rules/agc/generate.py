"""Deterministic generator of NanoAOD-format events for the AGC CMS ttbar analysis.

The files it writes are real ROOT files (a TTree ``Events`` with NanoAOD branch
names and types, :mod:`swift_rules.agc.nanoaod`) that uproot and coffea's
``NanoAODSchema`` read like CMS NanoAOD. The physics is a fast, vectorised toy, good
enough for the analysis to see what it sees in the real samples: the processes and
the ttbar variations are in :mod:`swift_rules.agc.processes`, the decays and the
detector response in :mod:`swift_rules.agc.events`, the four-vector helpers in
:mod:`swift_rules.agc.kinematics`. This module cuts a file's events into blocks and
chunks and writes them: :func:`generate_file`, :func:`generate_dataset` (and
``python -m swift_rules.agc.generate``), :func:`iter_chunks`, :func:`generate_arrays`.

Determinism: the events of a file depend only on (process, variation, file
index, number of events, seed). They are generated in fixed blocks of
:data:`BLOCK_SIZE` events, each from its own ``PCG64`` stream seeded by
``SeedSequence([seed, crc(process), crc(variation), file_index, block_index])``,
and the blocks are then cut into write chunks of any size: the chunking changes
the baskets, never the contents. (Bit-identical for a given NumPy version and
platform: NumPy does not promise its random distributions or SIMD math to be
bit-stable across versions and CPUs.) ``event`` numbers are ``file_index * 10**9 +
i + 1``, unique within a sample set, so that ``(run, luminosityBlock, event)``
can seed per-event random numbers downstream.

Usage::

    from swift_rules.agc.generate import generate_dataset, DEFAULT_SIZES
    events_per_file, files_per_sample = DEFAULT_SIZES["small"]
    fileset = generate_dataset("data/generated", events_per_file=events_per_file,
                               files_per_sample=files_per_sample)
"""

from __future__ import annotations

import json
import sys
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from swift_rules.agc import samples as _samples
from swift_rules.agc.nanoaod import BRANCH_TYPES, COLLECTIONS
from swift_rules.agc.presets import DEFAULT_SIZES, preset_total  # noqa: F401 (re-exported)
from swift_rules.agc.processes import VARIATIONS, check_sample, simulate
from swift_rules.atomic import atomic_path
from swift_rules.chunks import chunk_len, concat_chunks, rechunk
from swift_rules.rootfile import recreate

__all__ = [
    "BLOCK_SIZE",
    "DEFAULT_SIZES",
    "VARIATIONS",
    "generate_arrays",
    "generate_dataset",
    "generate_file",
    "iter_chunks",
]

# Events per independently seeded generation block. Changing it changes the
# generated events (not their statistics): it is part of the format's identity.
BLOCK_SIZE = 50_000
# Events per uproot ``extend`` call (one basket per branch) unless told otherwise.
WRITE_CHUNK = 100_000
# event = file_index * EVENT_STRIDE + i + 1
EVENT_STRIDE = 10**9
GENERATOR_VERSION = 1
METADATA_KEY = "swift_rules_generator"

# compression name -> (uproot codec class, default level); "zlib:1" picks a level.
_COMPRESSION = {
    "zlib": (uproot.ZLIB, 4),
    "lz4": (uproot.LZ4, 1),
    "zstd": (uproot.ZSTD, 3),
    "lzma": (uproot.LZMA, 8),
    "none": (None, 0),
}

# ---------------------------------------------------------------------------
# Random streams


def _stable_int(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def _block_rng(seed: int, process: str, variation: str, file_index: int, block_index: int):
    ss = np.random.SeedSequence(
        [int(seed), _stable_int(process), _stable_int(variation), int(file_index), int(block_index)]
    )
    return np.random.Generator(np.random.PCG64(ss))


# ---------------------------------------------------------------------------
# Blocks and chunks. A "chunk" is a dict: scalar name -> array of n, and
# collection name -> (counts, {field: flat array}).


def _generate_block(process, variation, n, *, file_index, block_index, seed):
    rng = _block_rng(seed, process, variation, file_index, block_index)
    out = simulate(process, variation, n, rng)
    start = block_index * BLOCK_SIZE
    chunk = {
        "run": np.ones(n, np.uint32),
        "luminosityBlock": np.full(n, file_index + 1, np.uint32),
        "event": (
            np.uint64(file_index) * np.uint64(EVENT_STRIDE)
            + np.arange(start + 1, start + n + 1, dtype=np.uint64)
        ),
        **out["scalars"],
    }
    for name in COLLECTIONS:
        chunk[name] = out[name]
    return chunk


def iter_chunks(
    process: str,
    variation: str,
    n_events: int,
    *,
    file_index: int = 0,
    seed: int = 42,
    chunk_size: int | None = None,
) -> Iterator[dict]:
    """Yield the events of one file as raw chunks of ``chunk_size`` events (the last may be short).

    Each chunk maps scalar branch names to arrays and ``Jet``/``Electron``/``Muon``
    to ``(counts, {field: flat array})``. The concatenated contents do not depend
    on ``chunk_size``.
    """
    check_sample(process, variation)
    if n_events < 0:
        raise ValueError(f"n_events must be >= 0, got {n_events}")
    if n_events >= EVENT_STRIDE:
        raise ValueError(f"at most {EVENT_STRIDE - 1} events per file, got {n_events}")
    if file_index < 0:
        raise ValueError(f"file_index must be >= 0, got {file_index}")
    chunk_size = int(chunk_size or WRITE_CHUNK)
    n_blocks = -(-n_events // BLOCK_SIZE)
    blocks = (
        _generate_block(
            process, variation, min(BLOCK_SIZE, n_events - i * BLOCK_SIZE),
            file_index=file_index, block_index=i, seed=seed,
        )
        for i in range(n_blocks)
    )  # fmt: skip
    yield from rechunk(blocks, chunk_size)


def _to_uproot(chunk) -> dict:
    out = {}
    for name, value in chunk.items():
        if isinstance(value, tuple):
            counts, cols = value
            out[name] = ak.unflatten(ak.zip(cols, depth_limit=1), counts)
        else:
            out[name] = value
    return out


def _to_awkward(chunk) -> dict[str, ak.Array]:
    """Flat branch-name view of a chunk (``nJet``, ``Jet_pt``, ...) as awkward/numpy arrays."""
    out = {}
    for name, value in chunk.items():
        if isinstance(value, tuple):
            counts, cols = value
            out[f"n{name}"] = counts.astype(np.int32)
            for field, flat in cols.items():
                out[f"{name}_{field}"] = ak.unflatten(flat, counts)
        else:
            out[name] = value
    return out


def generate_arrays(
    process: str, variation: str, n_events: int, *, file_index: int = 0, seed: int = 42
) -> dict:
    """The branches :func:`generate_file` would write, in memory, keyed by branch name."""
    chunks = list(
        iter_chunks(
            process,
            variation,
            n_events,
            file_index=file_index,
            seed=seed,
            chunk_size=max(n_events, 1),
        )
    )
    if not chunks:
        chunks = [
            _generate_block(process, variation, 0, file_index=file_index, block_index=0, seed=seed)
        ]
    return _to_awkward(concat_chunks(chunks))


# ---------------------------------------------------------------------------
# Files


def _metadata_string(process, variation, n_events, file_index, seed) -> str:
    return json.dumps(
        {
            "generator": "swift_rules.agc.generate",
            "version": GENERATOR_VERSION,
            "block_size": BLOCK_SIZE,
            "process": process,
            "variation": variation,
            "n_events": int(n_events),
            "file_index": int(file_index),
            "seed": int(seed),
        },
        sort_keys=True,
    )


def _compression(spec: str):
    """``"zlib"``, ``"lz4"``, ``"zstd"``, ``"lzma"`` or ``"none"``, optionally ``":LEVEL"``."""
    name, _, level = str(spec).lower().partition(":")
    if name not in _COMPRESSION:
        raise ValueError(
            f"unknown compression {spec!r}; known: {sorted(_COMPRESSION)} (optionally NAME:LEVEL)"
        )
    codec, default_level = _COMPRESSION[name]
    if codec is None:
        return None
    try:
        return codec(int(level) if level else default_level)
    except ValueError as err:
        raise ValueError(f"bad compression {spec!r}: {err}") from None


def generate_file(
    path,
    process: str,
    variation: str,
    n_events: int,
    *,
    file_index: int = 0,
    seed: int = 42,
    compression: str = "zlib",
    chunk_size: int | None = None,
) -> int:
    """Write ``n_events`` events of one sample to the ROOT file ``path``; return the number written.

    The file is written atomically (a temporary file beside it, then renamed).
    ``chunk_size`` (events per basket, default :data:`WRITE_CHUNK`) does not
    change the contents.
    """
    check_sample(process, variation)
    codec = _compression(compression)
    written = 0
    with recreate(path, compression=codec) as f:
        f[METADATA_KEY] = _metadata_string(process, variation, n_events, file_index, seed)
        # mktree, not ``f["Events"] = ...``: uproot >= 5.7 would write an RNTuple.
        tree = f.mktree("Events", BRANCH_TYPES, title="Events")
        for chunk in iter_chunks(
            process, variation, n_events, file_index=file_index, seed=seed, chunk_size=chunk_size
        ):
            tree.extend(_to_uproot(chunk))
            written += chunk_len(chunk)
    return written


def _existing_events(path: Path, expected_meta: str) -> int | None:
    """Number of events in an existing, complete file made with the same settings, else None."""
    if not path.is_file():
        return None
    try:
        with uproot.open(path) as f:
            meta = f[METADATA_KEY]
            meta = str(meta)
            if json.loads(meta) != json.loads(expected_meta):
                return None
            return int(f["Events"].num_entries)
    except Exception:
        return None


def _normalise_samples(samples) -> list[tuple[str, str]]:
    if samples is None:
        samples = _samples.SAMPLE_SETS
    out = []
    for s in samples:
        if isinstance(s, str):
            out.append(_samples.split_sample_name(s))
        else:
            process, variation = s
            out.append((process, variation))
    return out


def _per_sample(value, name: str, what: str) -> int:
    if isinstance(value, Mapping):
        if name not in value:
            raise KeyError(f"{what} has no entry for sample {name!r} (keys: {sorted(value)})")
        value = value[name]
    value = int(value)
    if value < 0:
        raise ValueError(f"{what} for {name!r} must be >= 0, got {value}")
    return value


def generate_dataset(
    outdir,
    *,
    events_per_file: dict[str, int] | int,
    files_per_sample: dict[str, int] | int,
    seed: int = 42,
    compression: str = "zlib",
    samples: Iterable | None = None,
    fileset_name: str = "fileset.json",
    progress: bool = False,
) -> dict:
    """Write every sample set's files under ``outdir`` and a fileset JSON; return the fileset.

    Files are ``outdir/{process}__{variation}/{process}__{variation}_{i:04d}.root``;
    the fileset (``outdir/fileset_name``) has the AGC ``nanoaod_inputs.json``
    layout: ``{process: {variation: {"files": [{"path", "nevts"}], "nevts_total"}}}``.
    ``events_per_file`` and ``files_per_sample`` are ints or dicts keyed by
    sample name (``ttbar__nominal``). A file that already exists, was made with
    the same settings and holds the right number of events is not rewritten.
    """
    outdir = Path(outdir)
    sample_sets = _normalise_samples(samples)
    jobs = []
    for process, variation in sample_sets:
        check_sample(process, variation)
        name = _samples.sample_name(process, variation)
        n = _per_sample(events_per_file, name, "events_per_file")
        nfiles = _per_sample(files_per_sample, name, "files_per_sample")
        for i in range(nfiles):
            path = outdir / name / f"{name}_{i:04d}.root"
            jobs.append((process, variation, i, n, path))

    fileset: dict = {}
    for process, variation in sample_sets:
        fileset.setdefault(process, {})[variation] = {"files": [], "nevts_total": 0}

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(j[3] for j in jobs), unit="evt", unit_scale=True, desc="generate")
    t0 = time.perf_counter()
    generated = 0
    for process, variation, i, n, path in jobs:
        meta = _metadata_string(process, variation, n, i, seed)
        if _existing_events(path, meta) != n:
            generate_file(
                path, process, variation, n, file_index=i, seed=seed, compression=compression
            )
            generated += n
        entry = fileset[process][variation]
        entry["files"].append({"path": str(path), "nevts": n})
        entry["nevts_total"] += n
        if bar is not None:
            bar.update(n)
            bar.set_postfix_str(path.name)
    if bar is not None:
        bar.close()
        dt = time.perf_counter() - t0
        if generated:
            print(f"generated {generated} events in {dt:.1f} s ({generated / dt:,.0f} events/s)")

    target = outdir / fileset_name
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(fileset, indent=2) + "\n")
    return fileset


def _main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("outdir")
    parser.add_argument("--size", choices=sorted(DEFAULT_SIZES), default="small")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--compression", default="zlib", help="zlib, lz4, zstd, lzma, none[:LEVEL]")
    args = parser.parse_args(argv)
    events, files = DEFAULT_SIZES[args.size]
    generate_dataset(
        args.outdir,
        events_per_file=events,
        files_per_sample=files,
        seed=args.seed,
        compression=args.compression,
        progress=True,
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main(sys.argv[1:]))
