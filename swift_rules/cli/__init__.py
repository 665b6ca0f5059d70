"""The ``swift-rules`` command line: what the rules call, and what users run by hand.

One module per group of commands, each with ``add_commands(add)``: ``stages`` (run,
merge, inspect), ``data`` (generate, fileset, stage-in), ``outputs`` (export, draw),
and the broker. Analyses add a group of their own (``swift-rules NAME ...``) through
the entry-point group ``swift_rules.commands``; it is imported only when used. Each
command imports what it needs when it runs, so ``--help`` and light commands answer
at once.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
from importlib import metadata

EPILOG = """\
The workflows run all of these for you:  snakemake --profile profiles/local
Docs: docs/ (mkdocs serve), or README.md."""
COMMAND_GROUP = "swift_rules.commands"


def parse_json(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err}): {text!r}") from None


def registrations(sp: argparse.ArgumentParser) -> None:
    """The options that add stage registrations to a command."""
    sp.add_argument(
        "--registry",
        action="append",
        metavar="YAML_OR_PACKAGE",
        help="YAML file with 'register:'/'generators:' sections, or a package whose "
        "registry.yaml to use (repeatable)",
    )
    sp.add_argument(
        "--register",
        type=parse_json,
        metavar="JSON",
        help="registrations as JSON: {name: {cpu: path, gpu: path}}",
    )


def registry_of(args):
    """The registry with the registrations a command's options (and --config) add."""
    from swift_rules.registry import REGISTRY, load_registrations

    if getattr(args, "config", None):
        from swift_rules.config import load_config

        load_registrations(load_config(args.config), registry=REGISTRY)
    config = {"registries": getattr(args, "registry", None) or []}
    if getattr(args, "register", None):
        config["register"] = args.register
    return load_registrations(config, registry=REGISTRY)


def _analysis_groups() -> dict[str, metadata.EntryPoint]:
    from swift_rules.registry import installed_entry_points

    return {ep.name: ep for ep in installed_entry_points(COMMAND_GROUP)}


def _broker(args) -> int:
    from swift_rules.broker.cli import serve

    return serve(args)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; analysis groups are filled in only for ``command`` (all when None)."""
    from swift_rules import __version__
    from swift_rules.cli import data, outputs, runs, stages

    p = argparse.ArgumentParser(
        prog="swift-rules",
        description="Run coffea stages (CPU or GPU variant) over datasets, and the steps "
        "of the analyses built on them.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"swift-rules {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def adder(target, prefix=""):
        def add(name, func, help_text):
            sp = target.add_parser(name, help=help_text, description=help_text)
            sp.set_defaults(func=func, command_name=prefix + name)
            return sp

        return add

    add = adder(sub)
    for group in (stages, data, outputs, runs):
        group.add_commands(add)
    broker = add("broker", _broker, "Dask connection broker: serve broker:// (docs/broker.md).")
    if command in (None, "broker"):  # (its module imports asyncio and ssl: not for a job)
        from swift_rules.broker.cli import add_arguments

        add_arguments(broker)
    core = set(sub.choices)
    if command is not None and command in core:
        return p
    for name, ep in sorted(_analysis_groups().items()):
        text = f"Commands of the {name} analysis ({ep.value})."
        gp = sub.add_parser(name, help=f"the {name} analysis' commands", description=text)
        if command in (None, name):
            gsub = gp.add_subparsers(dest="analysis_command", required=True, metavar="COMMAND")
            ep.load()(adder(gsub, prefix=f"{name} "))
    return p


def main(argv=None) -> int:
    """The ``swift-rules`` command: run in a warm-start child when a local Snakemake run
    offers one (``swift_rules.warmstart``: its client half; the server half runs ``run``),
    else here."""
    argv = sys.argv[1:] if argv is None else list(argv)
    from swift_rules.warmstart.client import delegate

    status = delegate(argv)
    status = run(argv) if status is None else status
    # At exit Python's last garbage collection walks every object that coffea, numba and
    # awkward made: 0.7 s of a stage job, for nothing (the result is written and closed;
    # atexit handlers, logging and the standard streams are still flushed).
    gc.freeze()
    return status


class _Format(logging.Formatter):
    """The lines users read in job logs: ``[swift-rules] ...``, warnings said so."""

    def format(self, record):
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            text = f"{record.levelname.lower()}: {text}"
        return f"[swift-rules] {text}"


def log_to_stderr() -> None:
    """Every module's logger (``swift_rules.*``) prints its INFO lines and up on stderr."""
    logger = logging.getLogger("swift_rules")
    if not any(getattr(h, "swift_rules", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_Format())
        handler.swift_rules = True
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def run(argv: list[str]) -> int:
    """Parse ``argv`` and run the command in this process."""
    log_to_stderr()
    # Files come after `--` (they are data, never options): argparse cannot mix a list
    # of positionals with options, so they are split off here.
    trailing = None
    if "--" in argv:
        at = argv.index("--")
        argv, trailing = argv[:at], argv[at + 1 :]
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if trailing is not None:
        if not hasattr(args, "input_files"):
            parser.error(f"{args.command_name} takes no files after --")
        args.input_files = trailing
    from swift_rules.errors import USER_ERRORS

    try:
        return args.func(args)
    except USER_ERRORS as err:
        print(f"swift-rules {args.command_name}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
