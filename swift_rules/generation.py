"""Generated input files: every dataset of a registered generator's preset, and their
coffea fileset.

A generator is a class an analysis registers (``generators:`` in its registry): a dict
``presets`` (name -> description), ``datasets(preset)`` -> ``{name: {"files": n,
"events": per_file, "metadata": {...}}}`` and ``write(path, dataset, index, events, seed,
compression)`` -> events written. Its module stays light (planning imports it); ``write``
imports what it needs. The workflow's rule ``swift_generate`` writes one file per job;
this module writes them all from Python or ``swift-rules generate``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from swift_rules.datasets import Dataset, InputFile, dataset_key, write_fileset
from swift_rules.errors import SwiftError
from swift_rules.registry import REGISTRY, Variant

__all__ = ["generate_datasets", "load_generator"]

log = logging.getLogger(__name__)


def load_generator(name: str, registry=REGISTRY):
    """An instance of generator ``name`` (registered ``ns::name``, or ``module:Class``)."""
    entry = registry.generator(name) if "::" in name else Variant(name, "the caller")
    return entry.load()()


def generate_datasets(generator, preset: str, out: str | Path, *, seed: int = 42,
                      compression: str = "zlib", events_per_file: int | None = None,
                      files_per_dataset: int | None = None) -> dict[str, Dataset]:  # fmt: skip
    """Write every file of ``preset`` under ``out`` (``out/DATASET/DATASET_NNNN.root``, the
    same names as the workflow's) and ``out/fileset.json``; returns the datasets."""
    if isinstance(generator, str):
        generator = load_generator(generator)
    presets = getattr(generator, "presets", {})
    if preset not in presets:
        raise SwiftError(f"generator {type(generator).__name__} has no preset {preset!r}; "
                         f"its presets: {', '.join(presets)}")  # fmt: skip
    datasets = {}
    for name, spec in generator.datasets(preset).items():
        key, events = dataset_key(name), events_per_file or spec["events"]
        files = []
        for i in range(files_per_dataset or spec["files"]):
            path = Path(out) / key / f"{key}_{i:04d}.root"
            n = generator.write(path, name, i, events, seed, compression)
            files.append(InputFile(str(path), "Events", n))
        log.info("%s: %d file(s) of %s events", name, len(files), f"{events:,}")
        datasets[name] = Dataset(name, files, dict(spec.get("metadata") or {}))
    write_fileset(datasets.values(), Path(out) / "fileset.json")
    return datasets
