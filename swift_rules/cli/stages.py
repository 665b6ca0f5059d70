"""Commands around stages: list them, run one over files, merge and inspect results."""

from __future__ import annotations

import json
import logging
import os
import sys

from swift_rules.cli import parse_json, registrations, registry_of

log = logging.getLogger(__name__)


def cmd_stages(args) -> int:
    from swift_rules import device

    registry = registry_of(args)
    settings = {}
    if args.config:
        from swift_rules.config import load_config

        settings = load_config(args.config)["stages"]
    usable, why = device.gpu_status()
    print(f"GPU here: {'yes' if usable else 'no'} ({why})\n")
    for name in registry.names():
        stage = registry.get(name)
        print(name)
        for dev, variant in sorted(stage.variants.items()):
            print(f"  {dev}: {variant.target}  (from {variant.source})")
        try:
            choice = device.choose(stage, settings.get(name, {}).get("device"))
            print(f"  would run: {choice.device} ({choice.reason})")
        except device.DeviceError as err:
            print(f"  would run: nothing: {err}")
    generators = registry.generator_names()
    if generators:
        print("\ngenerators:")
        for name in generators:
            entry = registry.generator(name)
            print(f"  {name}: {entry.target}  (from {entry.source})")
    return 0


def cmd_run(args) -> int:
    from swift_rules.executors import EXECUTOR_ENV
    from swift_rules.runner import default_workers, run_stage

    # A user's stage modules next to the workflow import as with `python -m`.
    sys.path.insert(0, os.getcwd())
    if args.files and args.input_files:
        raise SystemExit("swift-rules run: error: give the files with --files or after --")
    files = args.files or args.input_files
    if not files:
        raise SystemExit("swift-rules run: error: no input files (after --, or --files)")
    registry = registry_of(args)
    executor = args.executor
    if executor is None:
        executor = parse_json(os.environ.get(EXECUTOR_ENV) or "{}")
    _import_frozen()
    run_stage(
        args.stage,
        args.sample,
        files,
        args.out,
        stage_config=args.settings,
        executor=executor,
        skip_bad_files=args.skip_bad_files or None,
        workers=args.workers or default_workers(),
        sample_metadata=args.metadata,
        registry=registry,
        progress=False if args.no_progress else None,
        tree=args.tree,
        sum_weights=args.sum_weights,
        skim_out=args.skim_out,
        run_record=args.run_record,
    )
    return 0


def _import_frozen() -> None:
    """Import what a stage job runs on, then freeze it (``frozen_imports``). A job is one
    short process, and what it imports lives until it exits; a warm-started job, forked
    after its server's preload, has all of this imported and frozen already."""
    from swift_rules.gcfreeze import frozen_imports

    with frozen_imports():
        import coffea.nanoevents  # (what run_stage runs on)
        import coffea.processor  # noqa: F401


def cmd_merge(args) -> int:
    from swift_rules.results import merge_results

    _, meta = merge_results(args.inputs, args.out)
    log.info(
        f"merged {meta['parts']} result(s), {sum(meta['events'].values()):,} events, "
        f"into {args.out}"
    )
    return 0


def cmd_info(args) -> int:
    from swift_rules.results import load_meta

    text = json.dumps(load_meta(args.result), indent=2, sort_keys=True, default=str) + "\n"
    if args.out:
        from swift_rules.atomic import write_text

        write_text(args.out, text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_validate(args) -> int:
    from swift_rules import device
    from swift_rules.config import load_config
    from swift_rules.options import check_options
    from swift_rules.redact import redact
    from swift_rules.registry import REGISTRY, load_registrations

    config = load_config(args.config)
    registry = load_registrations(config, registry=REGISTRY)
    for stage, settings in config["stages"].items():
        entry = registry.get(stage)
        for d in device.possible_devices(entry, settings["device"]):
            check_options(stage, entry.variants[d].target, settings["options"])
    print(f"{args.config}: valid")
    if args.show:
        print(json.dumps(redact(config), indent=2))
    return 0


def add_commands(add) -> None:
    sp = add(
        "stages",
        cmd_stages,
        "List registered stages and generators, and the device each stage would use here.",
    )
    sp.add_argument("--config", help="workflow config whose registrations and devices to use")
    registrations(sp)

    sp = add(
        "run",
        cmd_run,
        "Run one stage over files of one dataset; write a result file. The files come "
        "last, after --: swift-rules run STAGE --sample NAME --out OUT -- FILE...",
    )
    sp.add_argument("stage", help="stage name, e.g. mine::dimuon")
    sp.set_defaults(input_files=[])  # the files after `--` (swift_rules.cli.run)
    sp.add_argument("--sample", required=True, help="the dataset's name")
    sp.add_argument("--files", nargs="+", help="input files or URLs (or give them after --)")
    sp.add_argument("--out", required=True, help="result file to write (.pkl)")
    sp.add_argument(
        "--skim-out",
        help="skim stages: Parquet file of the selected events (default: --out "
        "with the suffix .parquet)",
    )
    sp.add_argument(
        "--run-record",
        help="write how and where the job ran (executor, host, times) to this JSON file; the "
        "result holds only what decides the output",
    )
    sp.add_argument(
        "--metadata",
        type=parse_json,
        default={},
        metavar="JSON",
        help='the dataset\'s metadata, seen by the stage as events.metadata: {"is_data": false, '
        '"xsec": 1.0, ...}',
    )
    sp.add_argument(
        "--settings",
        type=parse_json,
        default={},
        metavar="JSON",
        help='stage settings: {"device": "auto", "chunksize": 100000, "options": {...}}',
    )
    sp.add_argument(
        "--executor",
        type=parse_json,
        default=None,
        metavar="JSON",
        help='executor: {"type": "local"} or {"type": "address", "address": "tcp://..."} '
        "(default: $SWIFT_RULES_EXECUTOR, set by the workflow's rules, else local)",
    )
    sp.add_argument("--tree", default="Events", help="tree of the ROOT input files")
    sp.add_argument(
        "--skip-bad-files",
        action="store_true",
        help="leave unreadable files out (reported, and not counted) instead of failing",
    )
    sp.add_argument(
        "--sum-weights", action="store_true", help="record the inputs' sum of generator weights"
    )
    sp.add_argument("--workers", type=int, default=None, help="Dask workers (default: all cores)")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")
    registrations(sp)

    sp = add("merge", cmd_merge, "Sum result files (in the order given) into one.")
    sp.add_argument("inputs", nargs="+")
    sp.add_argument("--out", required=True)

    sp = add(
        "info",
        cmd_info,
        "Print the record of a result file (stage, variant, inputs, timing); nothing is unpickled.",
    )
    sp.add_argument("result")
    sp.add_argument("--out", help="write the record (JSON) to this file instead")

    sp = add(
        "validate",
        cmd_validate,
        "Check a workflow config against the schema, and its stages' options against the "
        "stages' signatures.",
    )
    sp.add_argument("config")
    sp.add_argument("--show", action="store_true", help="print the config with defaults filled in")
