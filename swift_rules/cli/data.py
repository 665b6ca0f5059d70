"""Commands that make the inputs: generated files, filesets, local copies of remote files."""

from __future__ import annotations

import logging

from swift_rules.cli import parse_json, registrations, registry_of
from swift_rules.errors import SwiftError

log = logging.getLogger(__name__)


def cmd_generate(args) -> int:
    from pathlib import Path

    from swift_rules.generation import generate_datasets, load_generator

    generator = load_generator(args.generator, registry_of(args))
    if args.list:
        for name, text in getattr(generator, "presets", {}).items():
            print(f"{name}: {text}")
        return 0
    if args.dataset:
        if not args.events:
            raise SwiftError("--dataset needs --events (events in the file)")
        n = generator.write(args.out, args.dataset, args.index, args.events, args.seed,
                            args.compression)  # fmt: skip
        log.info(f"wrote {n:,} events of {args.dataset} to {args.out}")
        return 0
    datasets = generate_datasets(
        generator, args.preset, args.out, seed=args.seed, compression=args.compression,
        events_per_file=args.events, files_per_dataset=args.files,
    )  # fmt: skip
    total = sum(ds.entries or 0 for ds in datasets.values())
    log.info(f"{len(datasets)} dataset(s), {total:,} events; fileset: "
             f"{Path(args.out) / 'fileset.json'}")  # fmt: skip
    return 0


def cmd_fileset(args) -> int:
    from swift_rules.datasets import datasets_from_paths, write_fileset

    patterns = [*args.paths, *args.input_files]
    if not patterns:
        raise SwiftError("no files or patterns given")
    metadata = args.metadata
    if isinstance(metadata, str):
        metadata = _read_metadata(metadata)
    datasets = datasets_from_paths(patterns, metadata, tree=args.tree, name_from=args.name_from)
    write_fileset(datasets.values(), args.out)
    total = sum(ds.entries or 0 for ds in datasets.values())
    n_files = sum(len(d.files) for d in datasets.values())
    log.info(f"{len(datasets)} dataset(s), {n_files} file(s), {total:,} events: {args.out}")
    return 0


def _read_metadata(path: str) -> dict:
    import yaml

    try:
        with open(path) as fh:
            return yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError) as err:
        raise SwiftError(f"cannot read metadata file {path}: {err}") from err


def _metadata_arg(text: str):
    """Dataset metadata: inline JSON, or the path of a JSON/YAML file."""
    return parse_json(text) if text.lstrip().startswith("{") else text


def cmd_stage_in(args) -> int:
    from swift_rules.remote import stage_in

    size = stage_in(args.url, args.out)
    log.info(f"copied {args.url} to {args.out} ({size:,} bytes)")
    return 0


def add_commands(add) -> None:
    sp = add(
        "generate",
        cmd_generate,
        "Generate input files with a registered generator: all datasets of a preset "
        "(and their fileset.json) into a folder, or one file with --dataset.",
    )
    sp.add_argument("generator", help="registered generator (ns::name) or module:Class")
    sp.add_argument("--out", help="dataset folder, or the file with --dataset")
    sp.add_argument("--preset", default="small", help="size preset (--list shows them)")
    sp.add_argument("--list", action="store_true", help="list the generator's presets")
    sp.add_argument("--events", type=int, help="events per file (overrides the preset)")
    sp.add_argument("--files", type=int, help="files per dataset (overrides the preset)")
    sp.add_argument("--dataset", help="write one file of this dataset")
    sp.add_argument("--index", type=int, default=0, help="file index within the dataset")
    sp.add_argument("--seed", type=int, default=42)
    sp.add_argument("--compression", default="zlib", help="zlib, lz4, zstd, lzma, none[:LEVEL]")
    registrations(sp)

    sp = add(
        "fileset",
        cmd_fileset,
        "Write a coffea fileset (JSON) for local files, one dataset per folder, with event "
        "counts read from each file.",
    )
    sp.add_argument("paths", nargs="*", help="files or glob patterns ('data/*/*.root')")
    sp.set_defaults(input_files=[])  # or after `--`
    sp.add_argument("--out", required=True)
    sp.add_argument(
        "--metadata",
        type=_metadata_arg,
        default={},
        metavar="JSON_OR_FILE",
        help='metadata per dataset: {"DATASET": {"is_data": false, "xsec": 831.8, '
        '"process": "top"}}, inline or as a JSON/YAML file',
    )
    sp.add_argument("--tree", default="Events", help="tree whose entries to count")
    sp.add_argument(
        "--name-from",
        choices=["folder", "stem"],
        default="folder",
        help="dataset name: the file's folder (default) or its name without suffix",
    )

    sp = add("stage-in", cmd_stage_in, "Copy a remote input (root://, https://) to a local file.")
    sp.add_argument("url")
    sp.add_argument("--out", required=True)
