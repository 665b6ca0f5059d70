"""The ``swift-rules`` command line: what the rules call, and what users run by hand.

Each command imports what it needs when it runs, so ``--help`` and light
commands answer at once.
"""

from __future__ import annotations

import argparse
import json
import sys

EPILOG = """\
The reference workflow runs all of these for you:  snakemake --profile profiles/local
Docs: docs/ (mkdocs serve), or README.md."""


def _json(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err}): {text!r}") from None


def _registry(args):
    from swift_rules.registry import REGISTRY, load_registrations

    if getattr(args, "config", None):
        from swift_rules.config import load_config

        load_registrations(load_config(args.config), registry=REGISTRY)
    config = {"registries": getattr(args, "registry", None) or []}
    if getattr(args, "register", None):
        config["register"] = args.register
    return load_registrations(config, registry=REGISTRY)


def cmd_stages(args) -> int:
    from swift_rules import device

    registry = _registry(args)
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
    return 0


def cmd_run(args) -> int:
    import os

    from swift_rules.runner import EXECUTOR_ENV, default_workers, run_stage

    # A user's stage modules next to the workflow import as with `python -m`.
    sys.path.insert(0, os.getcwd())
    registry = _registry(args)
    executor = args.executor
    if executor is None:
        executor = _json(os.environ.get(EXECUTOR_ENV) or "{}")
    run_stage(
        args.stage,
        args.sample,
        args.files,
        args.out,
        stage_config=args.settings,
        executor=executor,
        skip_bad_files=args.skip_bad_files or None,
        workers=args.workers or default_workers(),
        registry=registry,
        progress=False if args.no_progress else None,
    )
    return 0


def cmd_merge(args) -> int:
    from swift_rules.results import merge_results

    _, meta = merge_results(args.inputs, args.out)
    print(
        f"[swift-rules] merged {meta['parts']} result(s), {sum(meta['events'].values()):,} "
        f"events, into {args.out}",
        file=sys.stderr,
    )
    return 0


def cmd_info(args) -> int:
    from swift_rules.results import load_result

    _, meta = load_result(args.result)
    print(json.dumps(meta, indent=2, sort_keys=True, default=str))
    return 0


def cmd_validate(args) -> int:
    from swift_rules.config import load_config

    config = load_config(args.config)
    print(f"{args.config}: valid")
    if args.show:
        print(json.dumps(config, indent=2))
    return 0


def cmd_generate(args) -> int:
    from swift_rules.agc import generate

    if args.sample and not args.events:
        raise SystemExit(
            "swift-rules generate: error: --sample needs --events (events in the file)"
        )
    if args.sample:
        from swift_rules.agc.samples import split_sample_name

        process, variation = split_sample_name(args.sample)
        n = generate.generate_file(
            args.out,
            process,
            variation,
            args.events,
            file_index=args.index,
            seed=args.seed,
            compression=args.compression,
        )
        print(f"[swift-rules] wrote {n:,} events of {args.sample} to {args.out}", file=sys.stderr)
        return 0
    from swift_rules.agc.presets import DEFAULT_SIZES

    events, files = DEFAULT_SIZES[args.preset]
    generate.generate_dataset(
        args.out,
        events_per_file=args.events or events,
        files_per_sample=args.files or files,
        seed=args.seed,
        compression=args.compression,
        progress=True,
    )
    return 0


def cmd_fileset(args) -> int:
    from swift_rules.fileset import write_fileset

    write_fileset(args.files, args.out)
    return 0


def cmd_stage_in(args) -> int:
    from swift_rules.remote import stage_in

    size = stage_in(args.url, args.out)
    print(f"[swift-rules] copied {args.url} to {args.out} ({size:,} bytes)", file=sys.stderr)
    return 0


def cmd_histograms(args) -> int:
    from swift_rules.agc.histograms import write_histograms_root
    from swift_rules.agc.normalise import normalised_histogram
    from swift_rules.agc.samples import split_sample_name
    from swift_rules.results import load_result

    output, meta = load_result(args.merged)
    h = normalised_histogram(output, meta["events"])
    write_histograms_root(h, args.out, processed={split_sample_name(s) for s in meta["events"]})
    if meta.get("skipped_files"):
        print(
            "[swift-rules] left out of the normalisation, as unreadable: "
            + ", ".join(meta["skipped_files"]),
            file=sys.stderr,
        )
    return 0


def cmd_fit(args) -> int:
    from swift_rules.agc.inference import build_workspace, run_fit

    workspace = build_workspace(args.histograms, args.out)
    results = run_fit(workspace, args.out)
    poi = results.get("poi", {})
    print(f"[swift-rules] fit: {poi}", file=sys.stderr)
    return 0


def cmd_plot(args) -> int:
    from swift_rules.agc.plots import make_plots

    for path in make_plots(args.histograms, args.fit, args.out, workers=args.workers):
        print(path)
    return 0


def cmd_hepdata(args) -> int:
    from swift_rules.agc.hepdata import write_hepdata

    print(write_hepdata(args.histograms, args.out))
    return 0


def cmd_broker(args) -> int:
    from swift_rules.broker.cli import serve

    return serve(args)


def build_parser() -> argparse.ArgumentParser:
    from swift_rules import __version__

    p = argparse.ArgumentParser(
        prog="swift-rules",
        description="Run coffea stages (CPU or GPU variant) and the AGC ttbar analysis steps.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"swift-rules {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, func, help_text):
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.set_defaults(func=func)
        return sp

    def registrations(sp):
        sp.add_argument(
            "--registry",
            action="append",
            metavar="YAML",
            help="YAML file with a 'register:' section (repeatable)",
        )
        sp.add_argument(
            "--register",
            type=_json,
            metavar="JSON",
            help="registrations as JSON: {name: {cpu: path, gpu: path}}",
        )

    sp = add(
        "stages",
        cmd_stages,
        "List registered stages, their variants, and the device each would use here.",
    )
    sp.add_argument("--config", help="workflow config whose registrations and devices to use")
    registrations(sp)

    sp = add("run", cmd_run, "Run one stage over files of one sample; write a result file.")
    sp.add_argument("stage", help="stage name, e.g. agc::ttbar")
    sp.add_argument("--sample", required=True, help="sample name PROCESS__VARIATION")
    sp.add_argument("--files", nargs="+", required=True, help="input ROOT files or URLs")
    sp.add_argument("--out", required=True, help="result file to write (.pkl)")
    sp.add_argument(
        "--settings",
        type=_json,
        default={},
        metavar="JSON",
        help='stage settings: {"device": "auto", "chunksize": 100000, "options": {...}}',
    )
    sp.add_argument(
        "--executor",
        type=_json,
        default=None,
        metavar="JSON",
        help='executor: {"type": "local"} or {"type": "address", "address": "tcp://..."} '
        "(default: $SWIFT_RULES_EXECUTOR, set by the workflow's rules, else local)",
    )
    sp.add_argument(
        "--skip-bad-files",
        action="store_true",
        help="leave unreadable files out (reported, and not counted) instead of failing",
    )
    sp.add_argument("--workers", type=int, default=None, help="Dask workers (default: all cores)")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")
    registrations(sp)

    sp = add("merge", cmd_merge, "Sum result files (in the order given) into one.")
    sp.add_argument("inputs", nargs="+")
    sp.add_argument("--out", required=True)

    sp = add(
        "info", cmd_info, "Print the record of a result file (stage, variant, inputs, timing)."
    )
    sp.add_argument("result")

    sp = add("validate", cmd_validate, "Check a workflow config against the schema.")
    sp.add_argument("config")
    sp.add_argument("--show", action="store_true", help="print the config with defaults filled in")

    sp = add(
        "generate", cmd_generate, "Generate NanoAOD-format AGC samples (a dataset, or one file)."
    )
    sp.add_argument("--out", required=True, help="dataset directory, or the file with --sample")
    sp.add_argument("--preset", default="small", choices=["tiny", "small", "benchmark"])
    sp.add_argument("--events", type=int, help="events per file (overrides the preset)")
    sp.add_argument("--files", type=int, help="files per sample (overrides the preset)")
    sp.add_argument("--sample", help="write one file of this sample (PROCESS__VARIATION)")
    sp.add_argument("--index", type=int, default=0, help="file index within the sample")
    sp.add_argument("--seed", type=int, default=42)
    sp.add_argument("--compression", default="zlib", choices=["zlib", "lz4"])

    sp = add("fileset", cmd_fileset, "Write an AGC-layout fileset JSON for local files.")
    sp.add_argument("files", nargs="+", help="files laid out as DIR/PROCESS__VARIATION/*.root")
    sp.add_argument("--out", required=True)

    sp = add("stage-in", cmd_stage_in, "Copy a remote input (root://, https://) to a local file.")
    sp.add_argument("url")
    sp.add_argument("--out", required=True)

    sp = add(
        "histograms",
        cmd_histograms,
        "AGC: normalise the merged ttbar output, write histograms.root.",
    )
    sp.add_argument("merged", help="merged result of the agc::ttbar stage")
    sp.add_argument("--out", required=True)

    sp = add("fit", cmd_fit, "AGC: build the pyhf workspace and run the cabinetry fit.")
    sp.add_argument("histograms")
    sp.add_argument("--out", required=True, help="output directory")

    sp = add(
        "plot", cmd_plot, "AGC: stacked, pre-/post-fit, pull and correlation plots (PNG, PDF)."
    )
    sp.add_argument("histograms")
    sp.add_argument("--fit", required=True, help="fit output directory")
    sp.add_argument("--out", required=True)
    sp.add_argument("--workers", type=int, default=1, help="processes drawing figures (default: 1)")

    sp = add("hepdata", cmd_hepdata, "AGC: the final histograms as HEPData tables.")
    sp.add_argument("histograms")
    sp.add_argument("--out", required=True)

    sp = add("broker", cmd_broker, "Dask connection broker: serve broker:// (docs/broker.md).")
    from swift_rules.broker.cli import add_arguments

    add_arguments(sp)
    return p


def main(argv=None) -> int:
    """The ``swift-rules`` command: run in a warm-start child when a local Snakemake run
    offers one (``swift_rules.warmstart``), else here."""
    argv = sys.argv[1:] if argv is None else list(argv)
    from swift_rules import warmstart

    status = warmstart.delegate(argv)
    return run(argv) if status is None else status


def run(argv: list[str]) -> int:
    """Parse ``argv`` and run the command in this process."""
    args = build_parser().parse_args(argv)
    from swift_rules.errors import USER_ERRORS

    try:
        return args.func(args)
    except USER_ERRORS as err:
        print(f"swift-rules {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
