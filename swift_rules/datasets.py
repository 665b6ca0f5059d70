"""Datasets in coffea's fileset format: files, event counts and metadata.

A fileset is what coffea's dataset tools read and write::

    {"DYJetsToLL": {"files": {"root://host//a.root": "Events",
                              "b.root": {"object_path": "Events", "num_entries": 1000}},
                    "metadata": {"is_data": false, "xsec": 3503.7, "process": "DY"}}}

Dataset names are free (coffea's names from DAS queries have slashes); the file paths
of a workflow use :func:`dataset_key` of them. Each dataset's metadata reaches the
stage as ``events.metadata``. The nested layout of the Analysis Grand Challenge's
published fileset (``{process: {variation: {files: [{path, nevts}]}}}``) is read too:
its datasets are ``PROCESS__VARIATION``, with ``process`` and ``variation`` metadata.

Imported when Snakemake parses the rule files: light (no uproot at import) and
Python 3.8 (REANA's engine).
"""

from __future__ import annotations

import glob
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path

from swift_rules.errors import SwiftError
from swift_rules.remote import is_remote

__all__ = [
    "Dataset",
    "FilesetError",
    "InputFile",
    "dataset_key",
    "datasets_from_paths",
    "parse_fileset",
    "read_fileset",
    "write_fileset",
]

DEFAULT_TREE = "Events"
# Keys the toolkit itself reads; any other key is the analysis' own and passes through.
METADATA_KEYS = {
    "is_data": "true for collision data (never scaled), false for simulation",
    "xsec": "cross section in pb (simulation), for xsec x luminosity / N",
    "process": "the group a dataset belongs to in plots (default: the dataset's name)",
    "variation": "the systematic variation the dataset stands for (default: nominal)",
}
SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


class FilesetError(SwiftError, ValueError):
    """A fileset or a dataset's metadata is malformed."""


@dataclass(frozen=True)
class InputFile:
    path: str
    tree: str = DEFAULT_TREE
    entries: int | None = None


@dataclass
class Dataset:
    name: str
    files: list[InputFile]
    metadata: dict[str, object] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return dataset_key(self.name)

    @property
    def is_data(self) -> bool:
        return bool(self.metadata.get("is_data", False))

    @property
    def entries(self) -> int | None:
        """Events in all files, when every file's count is known."""
        counts = [f.entries for f in self.files]
        return None if any(n is None for n in counts) else sum(counts)


def dataset_key(name: str) -> str:
    """The name of a dataset in file paths and rule wildcards: the name itself when it is
    a plain word, else a sanitised form with a hash of the name (stays unique)."""
    if SAFE_KEY.match(name):
        return name
    plain = re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("_.+-") or "dataset"
    return f"{plain}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def check_path(path: object, where: str) -> str:
    """A file path or URL of a fileset: a non-empty string that is not an option."""
    if not isinstance(path, str) or not path.strip():
        raise FilesetError(f"{where}: a file path must be a non-empty string, got {path!r}")
    if path.startswith("-"):
        raise FilesetError(
            f"{where}: file path {path!r} begins with '-' (it would read as an option); "
            "write it as ./{path} if it is really a file"
        )
    return path


def check_metadata(name: str, metadata: object, where: str) -> dict:
    """The metadata of dataset ``name``, with the keys the toolkit reads checked."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise FilesetError(f"{where}: metadata of dataset {name!r} must be a mapping")
    meta = dict(metadata)
    problems = []
    if "is_data" in meta and not isinstance(meta["is_data"], bool):
        problems.append(f"is_data must be true or false, got {meta['is_data']!r}")
    if "xsec" in meta and (
        isinstance(meta["xsec"], bool) or not isinstance(meta["xsec"], Real) or meta["xsec"] <= 0
    ):
        problems.append(f"xsec must be a positive number (pb), got {meta['xsec']!r}")
    for key in ("process", "variation"):
        if key in meta and (not isinstance(meta[key], str) or not meta[key]):
            problems.append(f"{key} must be a non-empty string, got {meta[key]!r}")
    if meta.get("is_data") and "xsec" in meta:
        problems.append("a data set (is_data: true) has no cross section; remove xsec")
    if problems:
        raise FilesetError(f"{where}: dataset {name!r}: " + "; ".join(problems))
    return meta


def _files(name: str, files: object, where: str) -> list[InputFile]:
    here = f"{where}: dataset {name!r}"
    if isinstance(files, (list, tuple)):
        files = dict.fromkeys(files, DEFAULT_TREE)
    if not isinstance(files, Mapping) or not files:
        raise FilesetError(f"{here}: 'files' must map file paths to tree names")
    out = []
    for path, spec in files.items():
        check_path(path, here)
        entries = None
        if isinstance(spec, Mapping):
            tree, entries = spec.get("object_path", DEFAULT_TREE), spec.get("num_entries")
        else:
            tree = spec
        if not isinstance(tree, str) or not tree:
            raise FilesetError(f"{here}: file {path}: tree name must be a string, got {tree!r}")
        if entries is not None and (isinstance(entries, bool) or not isinstance(entries, int)):
            raise FilesetError(f"{here}: file {path}: num_entries must be an integer")
        out.append(InputFile(path, tree, entries))
    return out


def parse_fileset(doc: object, where: str) -> dict[str, Dataset]:
    """Datasets of a fileset document (coffea format, or the nested layout)."""
    if not isinstance(doc, Mapping) or not doc:
        raise FilesetError(f"{where}: a fileset must be a non-empty mapping of datasets")
    if _is_nested_layout(doc):
        return _parse_nested_layout(doc, where)
    datasets = {}
    for name, entry in doc.items():
        if not isinstance(name, str) or not name:
            raise FilesetError(f"{where}: dataset name {name!r} must be a non-empty string")
        if not isinstance(entry, Mapping) or "files" not in entry:
            raise FilesetError(
                f"{where}: dataset {name!r} is not of the form "
                "{files: {path: tree}, metadata: {...}}"
            )
        unknown = set(entry) - {"files", "metadata", "form"}
        if unknown:
            raise FilesetError(f"{where}: dataset {name!r} has unknown key(s) {sorted(unknown)}")
        meta = check_metadata(name, entry.get("metadata"), where)
        datasets[name] = Dataset(name, _files(name, entry["files"], where), meta)
    _check_keys(datasets, where)
    return datasets


def _is_nested_layout(doc: Mapping) -> bool:
    first = next(iter(doc.values()))
    return (
        isinstance(first, Mapping)
        and "files" not in first
        and all(isinstance(v, Mapping) and isinstance(v.get("files"), list) for v in first.values())
    )


def _parse_nested_layout(doc: Mapping, where: str) -> dict[str, Dataset]:
    datasets = {}
    for process, variations in doc.items():
        for variation, entry in variations.items():
            name = f"{process}__{variation}"
            try:
                files = [
                    InputFile(check_path(f["path"], f"{where}: {process}/{variation}"),
                              DEFAULT_TREE, int(f["nevts"]))
                    for f in entry["files"]
                ]  # fmt: skip
            except (KeyError, TypeError) as err:
                raise FilesetError(
                    f"{where}: {process}/{variation} is not of the form "
                    f"{{files: [{{path, nevts}}]}} ({err!r} missing)"
                ) from None
            meta = {"process": process, "variation": variation}
            datasets[name] = Dataset(name, files, meta)
    _check_keys(datasets, where)
    return datasets


def _check_keys(datasets: Mapping[str, Dataset], where: str) -> None:
    seen: dict[str, str] = {}
    for name in datasets:
        other = seen.setdefault(dataset_key(name), name)
        if other != name:
            raise FilesetError(f"{where}: datasets {other!r} and {name!r} share a file name")


def read_fileset(path: str | Path) -> dict[str, Dataset]:
    """The datasets of a fileset file (JSON or YAML)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise FilesetError(f"cannot read fileset {path}: {err}") from err
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            doc = yaml.safe_load(text)
        else:
            doc = json.loads(text)
    except Exception as err:  # json.JSONDecodeError, yaml.YAMLError
        raise FilesetError(f"cannot read fileset {path}: {err}") from err
    return parse_fileset(doc, str(path))


def to_coffea(datasets: Iterable[Dataset]) -> dict:
    """The coffea fileset of ``datasets`` (counts as ``num_entries`` where known)."""
    out = {}
    for ds in datasets:
        files = {}
        for f in ds.files:
            spec = {"object_path": f.tree}
            if f.entries is not None:
                spec["num_entries"] = f.entries
            files[f.path] = spec
        out[ds.name] = {"files": files, "metadata": dict(sorted(ds.metadata.items()))}
    return out


def write_fileset(datasets: Iterable[Dataset], out: str | Path) -> dict:
    """Write ``datasets`` as a coffea fileset JSON (atomically); returns the document."""
    from swift_rules.atomic import write_text

    # Datasets and metadata sorted; files keep their order (it decides the file groups).
    doc = to_coffea(sorted(datasets, key=lambda d: d.name))
    write_text(out, json.dumps(doc, indent=2) + "\n")
    return doc


def count_entries(path: str, tree: str = DEFAULT_TREE) -> int:
    """Entries of ``tree`` in one ROOT file (or rows of a Parquet file)."""
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    import uproot

    try:
        with uproot.open(path) as fh:
            return fh[tree].num_entries
    except Exception as err:  # uproot raises many kinds for damaged or foreign files
        raise FilesetError(f"{path}: cannot count entries of {tree!r}: {err}") from err


def datasets_from_paths(
    patterns: Iterable[str],
    metadata: Mapping[str, Mapping] | None = None,
    tree: str = DEFAULT_TREE,
    name_from: str = "folder",
) -> dict[str, Dataset]:
    """Datasets of local files (paths or glob patterns), one per folder (``name_from``
    ``folder``) or per file stem (``stem``), with their event counts read from each file
    and ``metadata`` (``{dataset: {...}}``) attached."""
    paths = []
    for pattern in patterns:
        check_path(pattern, "swift-rules fileset")
        found = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not found:
            raise FilesetError(f"no file matches {pattern!r}")
        paths.extend(p for p in found if p not in paths)
    metadata = dict(metadata or {})
    datasets: dict[str, Dataset] = {}
    for path in paths:
        if is_remote(path):
            raise FilesetError(f"{path}: `swift-rules fileset` reads local files only")
        name = Path(path).parent.name if name_from == "folder" else Path(path).stem
        ds = datasets.setdefault(name, Dataset(name, [], {}))
        ds.files.append(InputFile(path, tree, count_entries(path, tree)))
    unknown = sorted(set(metadata) - set(datasets))
    if unknown:
        raise FilesetError(
            f"metadata given for dataset(s) {unknown} that no file belongs to; "
            f"datasets: {sorted(datasets)}"
        )
    for name, meta in metadata.items():
        datasets[name].metadata = check_metadata(name, meta, "metadata")
    _check_keys(datasets, "swift-rules fileset")
    return datasets
